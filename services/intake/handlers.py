"""What intake listens to on the bus (besides the messages its diagram catches): the case's
status for the citizen's status page, and progress reports back to the 12345 hotline for the
cases that came from it (a status row in the same transaction; services/intake/hotline.py).
Requests merged into another case follow that case: its reply, reopening and closing reach
every reporter's own instance of bpmn/intake.bpmn, so each is asked for a rating separately
(services/intake/callback.py). Service tasks: ``notify_citizen`` and ``record_rating``."""
from __future__ import annotations

from sqlalchemy import select

from services.common.service import Listeners
from services.common.workflow.handlers import HandlerRegistry

from . import callback, notify
from .hotline import report_status
from .models import CitizenRequest

listeners = Listeners()
service_tasks = HandlerRegistry()
service_tasks.service_task("notify_citizen")(notify.notify_citizen_task)
service_tasks.service_task("record_rating")(callback.record_rating_task)

STATUS_BY_EVENT = {
    "dispatch.case_assigned": "assigned",
    "dispatch.case_handled": "handled",
    "dispatch.case_rejected": "rejected",
    "dispatch.case_merged": "merged",
}
# A reporter who rated the reply closed the case for themselves: a later reply (another
# reporter was not satisfied) is shown to them but does not reopen it for them.
KEEP_STATUS = ("closed",)


@listeners.on(*STATUS_BY_EVENT)
def track_status(service, uow, envelope):
    status = STATUS_BY_EVENT[envelope["type"]]
    body = envelope["body"]
    note = {"assigned": "已交办" + (body.get("department_name") or body.get("department", "")),
            "handled": body.get("reply", ""), "rejected": body.get("reason", ""),
            "merged": f"并入案件{body.get('into', '')}"}[status]
    request = uow.session.get(CitizenRequest, envelope["case_no"])
    if request is not None:
        if request.status not in KEEP_STATUS:
            request.status = status
        if status == "merged":
            request.merged_into = body["into"]
        report_status(service, uow, request, status, note, envelope.get("occurred_at"))
    if status == "handled":
        callback.reply_received(uow.session, envelope["case_no"])
        _answer_merged_requests(service, uow, envelope)


def _answer_merged_requests(service, uow, envelope):
    """Every reporter of a merged case gets the reply (and is asked for satisfaction separately)."""
    reply = envelope["body"].get("reply", "")
    for case_no in callback.relay_to_merged(service, uow, envelope):
        merged = uow.session.get(CitizenRequest, case_no)
        if merged.status not in KEEP_STATUS:
            merged.status = "handled"
        report_status(service, uow, merged, "handled", reply, envelope.get("occurred_at"))


@listeners.on("dispatch.case_reopened")
def track_reopened(service, uow, envelope):
    """The department has the case again: whoever still had the old reply to rate waits for
    the new one (their rating task is withdrawn by the diagram)."""
    for request in _reporters(uow, envelope["case_no"]):
        if request.status == "handled":
            request.status = "reopened"
    callback.relay_to_merged(service, uow, envelope)


@listeners.on("dispatch.case_closed")
def track_closed(service, uow, envelope):
    for request in _reporters(uow, envelope["case_no"]):
        request.status = "closed"
    callback.relay_to_merged(service, uow, envelope)


def _reporters(uow, case_no):
    return uow.session.scalars(select(CitizenRequest).where(
        (CitizenRequest.case_no == case_no) | (CitizenRequest.merged_into == case_no))).all()
