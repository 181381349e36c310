"""Mediation commands and queries: the mediator's desk, the 调解 act, the case record.

The act completes the user task ``mediate`` of bpmn/mediation.bpmn; what follows (telling
dispatch and intake how it ended) is the diagram's business. Who may act is checked here,
once: the role (mediator, or admin) plus the data scope (a mediator's district).
"""
from __future__ import annotations

from sqlalchemy import func, select

from services.common.models import TimelineEntry, WorkflowInstance, WorkItem
from services.common.workflow.runtime import TaskNotFound

from . import handling
from .forms import OUTCOMES

MEDIATE = "mediate"
# User task (BPMN id) -> the role that works it; the admin may act everywhere.
TASK_ROLES = {MEDIATE: "mediator"}
TASK_NAMES = {MEDIATE: "待调解"}


class NotAllowed(PermissionError):
    pass


class NoSuchTask(LookupError):
    pass


class Invalid(ValueError):
    """Input that the act cannot take (unknown outcome, missing result, …)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class AlreadyMediating(RuntimeError):
    """A second mediation request for a case whose mediation is still open."""


def district_scope(user):
    """None means every district (admin, a city-level mediator)."""
    return None if user.role == "admin" else (user.district or None)


def _in_scope(user, district) -> bool:
    scope = district_scope(user)
    return scope is None or district == scope


def may_work(user, item) -> bool:
    """Whether ``user`` may complete the work item (role and district)."""
    if user.role == "admin":
        return True
    return user.role == TASK_ROLES.get(item.task_name) and _in_scope(user, item.district)


READERS = ("mediator", "reception", "leader")  # and admin; only mediators mediate (TASK_ROLES)


def may_read(user, record) -> bool:
    """Mediators, the center's reception and leaders read their district's cases (without a
    district: all); admins all."""
    if user.role == "admin":
        return True
    return user.role in READERS and _in_scope(user, record["data"].get("district"))


# -- the desk --------------------------------------------------------------------------

def is_overdue(item, now) -> bool:
    """The diagram's deadline on the task (its timer, ``WorkItem.due_at``) has passed."""
    return item.due_at is not None and now >= item.due_at


def desk(service, district=None, limit=200):
    """Open 调解 work, oldest first: (items, total, how many are past their deadline)."""
    now = service.clock.now()
    with service.uow() as uow:
        query = select(WorkItem).where(WorkItem.task_name == MEDIATE)
        if district:
            query = query.where(WorkItem.district == district)
        items = uow.session.scalars(query.order_by(WorkItem.created_at).limit(limit)).all()
        total = uow.session.scalar(select(func.count()).select_from(query.subquery()))
        overdue = uow.session.scalar(select(func.count()).select_from(
            query.where(WorkItem.due_at <= now).subquery()))
    return items, total, overdue


def open_count(service, district=None) -> int:
    """Open 调解 work (for the navigation badge)."""
    with service.uow() as uow:
        query = select(func.count()).select_from(WorkItem).where(WorkItem.task_name == MEDIATE)
        if district:
            query = query.where(WorkItem.district == district)
        return uow.session.scalar(query)


# -- acting ----------------------------------------------------------------------------

def _text(value, what, field, limit=2000, required=True):
    value = (value or "").strip()
    if required and not value:
        raise Invalid(f"请填写{what}", field)
    if len(value) > limit:
        raise Invalid(f"{what}不超过{limit}个字", field)
    return value


def mediate(service, user, case_no, outcome, result, agreement="", expected_version=None):
    """调解: record how the mediation ended; the diagram tells dispatch (and the citizen)."""
    if outcome not in OUTCOMES:
        raise Invalid("请选择调解结果", "outcome")
    result = _text(result, "调解情况", "result")
    agreement = _text(agreement, "协议内容", "agreement", required=False) if outcome == "agreement" else ""
    note = f"{OUTCOMES[outcome]}：{result}"
    if agreement:
        note += f"（协议：{agreement}）"
    data = {"outcome": outcome, "result": result, "agreement": agreement}
    with service.uow() as uow:
        item = uow.session.scalars(select(WorkItem).where(
            WorkItem.case_no == case_no, WorkItem.task_name == MEDIATE)).first()
        if item is None:
            raise NoSuchTask(f"案件 {case_no} 当前不在“{TASK_NAMES[MEDIATE]}”环节，可能已被他人处理")
        if not may_work(user, item) or not handling.may_mediate(user, handling.of(uow.session, case_no)):
            raise NotAllowed("您无权调解该案件")
        try:
            service.runtime.complete(uow, item.id, data, actor=user.display_name,
                                     expected_version=expected_version, note=note)
        except TaskNotFound:  # completed by someone else between our read and our write
            raise NoSuchTask(f"案件 {case_no} 已被他人处理，请刷新") from None
        uow.commit()


# -- reading ---------------------------------------------------------------------------

def case_record(service, case_no):
    """The case's latest mediation (a case may come back for a second one), its open work
    and the timeline of every mediation of the case; None if it never came to mediation."""
    with service.uow() as uow:
        instance = uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == case_no, WorkflowInstance.process_id == "mediation")
            .order_by(WorkflowInstance.created_at.desc(), WorkflowInstance.id.desc())).first()
        if instance is None:
            return None
        items = uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no)).all()
        timeline = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.case_no == case_no)
                                       .order_by(TimelineEntry.at, TimelineEntry.id)).all()
        snapshot = service.runtime.snapshot(uow.session, instance)
        handled_by = handling.of(uow.session, case_no)  # its mediator, confidential or not
    return {"instance": instance, "items": items, "timeline": timeline, "handling": handled_by, **snapshot}


# -- the bus ---------------------------------------------------------------------------

def refuse_second_request(service, uow, envelope):
    """Listener for dispatch.mediation_requested: a case already waiting for mediation must
    not get a second 调解 task; refusing makes the message retried, then dead-lettered."""
    case_no = envelope["case_no"]
    open_item = uow.session.scalars(select(WorkItem.id).where(
        WorkItem.case_no == case_no, WorkItem.task_name == MEDIATE)).first()
    if open_item is not None:
        raise AlreadyMediating(f"mediation: case {case_no} is already being mediated")
