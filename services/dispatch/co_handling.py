"""Co-handling departments (协办) of open cases, kept in ``co_handlers`` for the department
inbox (``cases.co_handled``; docs/uploads.md, "协办案件").

Who co-handles is case data (``co_departments``, set by assign, fallback designation and the
chief's 批示, kept through the later steps and a reopening); each work item's summary copies
it. The table follows the work items: the runtime calls ``follow`` whenever it changes a
case's work items (services/common/workflow/runtime.py, ``_refresh_work_items``), in the same
transaction. So a row exists exactly while the case waits in one of the lead department's
steps, and goes when the case leaves them (returned to the dispatcher, replied, closed,
cancelled) or its co-handlers change.
"""
from __future__ import annotations

from sqlalchemy import delete

from .models import CoHandler

# The lead department's steps (BPMN ids): the case is "in hand" and its helpers list it.
CO_HANDLED_TASKS = ("accept", "resolve", "approve_extension")


def _by_department(items) -> dict:
    """{department: the work item it co-handles} for a case's work items; the lead is never
    its own co-handler (a department that claimed a case it helped on leads it now)."""
    found = {}
    for item in sorted(items, key=lambda i: i.created_at):  # one such item at a time; else the oldest
        if item.task_name in CO_HANDLED_TASKS:
            for department in item.summary.get("co_departments") or ():
                if department != item.department:
                    found.setdefault(department, item)
    return found


def follow(uow, case_no, before, after) -> None:
    """The runtime's ``work_items_changed`` hook: the case's rows become those of ``after``."""
    wanted = _by_department(after)
    if not wanted and not _by_department(before):
        return  # no rows before, none after: most steps of most cases write nothing here
    uow.session.execute(delete(CoHandler).where(CoHandler.case_no == case_no))
    uow.session.add_all(CoHandler(case_no=case_no, department=department, work_item_id=item.id,
                                  created_at=item.created_at) for department, item in wanted.items())
