"""Dispatch commands and queries: queues, assigning, handling, the case record.

Views and the API call these; scope (which district / department may act) is checked here
so both entry points enforce the same rules.
"""
from __future__ import annotations

from sqlalchemy import func, select

from services.common.models import TimelineEntry, WorkflowInstance, WorkItem
from services.common.reference import DEPARTMENTS

ASSIGN, HANDLE = "assign", "handle"


class NotAllowed(PermissionError):
    pass


class NoSuchTask(LookupError):
    pass


def district_scope(user):
    """None means every district (admin, city-level dispatcher)."""
    return None if user.role == "admin" else user.district


def queue(service, task_name, district=None, department=None, limit=200):
    with service.uow() as uow:
        query = select(WorkItem).where(WorkItem.task_name == task_name)
        if district:
            query = query.where(WorkItem.district == district)
        if department:
            query = query.where(WorkItem.department == department)
        items = uow.session.scalars(query.order_by(WorkItem.created_at).limit(limit)).all()
        total = uow.session.scalar(select(func.count()).select_from(query.subquery()))
    return items, total


def _task_for(uow, case_no, task_name):
    item = uow.session.scalars(select(WorkItem).where(
        WorkItem.case_no == case_no, WorkItem.task_name == task_name)).first()
    if item is None:
        raise NoSuchTask(f"案件 {case_no} 当前没有待办的“{task_name}”环节")
    return item


def assign(service, user, case_no, department, expected_version=None):
    if department not in DEPARTMENTS:
        raise ValueError("未知的承办部门")
    with service.uow() as uow:
        item = _task_for(uow, case_no, ASSIGN)
        scope = district_scope(user)
        if scope and item.district != scope:
            raise NotAllowed("该案件不属于您负责的县区")
        service.runtime.complete(uow, item.id, {"department": department,
                                                "department_name": DEPARTMENTS[department]},
                                 actor=user.display_name, expected_version=expected_version)
        uow.commit()


def finish_handling(service, user, case_no, reply):
    with service.uow() as uow:
        item = _task_for(uow, case_no, HANDLE)
        if user.role != "admin" and item.department != user.department:
            raise NotAllowed("该案件未交办给您的部门")
        service.runtime.complete(uow, item.id, {"reply": reply, "timeline_detail": reply},
                                 actor=user.display_name)
        uow.commit()


def case_record(service, case_no):
    with service.uow() as uow:
        instance = uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == case_no, WorkflowInstance.process_id == "dispatch")).first()
        if instance is None:
            return None
        items = uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no)).all()
        timeline = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.case_no == case_no)
                                       .order_by(TimelineEntry.at, TimelineEntry.id)).all()
        data = service.runtime.data_of(uow.session, instance)
    return {"instance": instance, "items": items, "timeline": timeline, "data": data}


def item_json(item):
    return {"case_no": item.case_no, "status": item.task_name, "step": item.title,
            "district": item.district, "department": item.department,
            "created_at": item.created_at.isoformat(), **item.summary}
