"""What intake listens to on the bus (besides the messages its diagram catches): the case's
status for the citizen's status page, and progress reports back to the 12345 hotline for the
cases that came from it (a status row in the same transaction; services/intake/hotline.py).
Requests merged into another case follow that case: its reply reaches every reporter."""
from __future__ import annotations

from sqlalchemy import select

from services.common.models import TimelineEntry
from services.common.service import Listeners
from services.common.workflow.handlers import HandlerRegistry

from .hotline import report_status
from .models import CitizenRequest

listeners = Listeners()
service_tasks = HandlerRegistry()

STATUS_BY_EVENT = {
    "dispatch.case_assigned": "assigned",
    "dispatch.case_handled": "handled",
    "dispatch.case_rejected": "rejected",
    "dispatch.case_merged": "merged",
}


@listeners.on(*STATUS_BY_EVENT)
def track_status(service, uow, envelope):
    status = STATUS_BY_EVENT[envelope["type"]]
    body = envelope["body"]
    note = {"assigned": "已交办" + (body.get("department_name") or body.get("department", "")),
            "handled": body.get("reply", ""), "rejected": body.get("reason", ""),
            "merged": f"并入案件{body.get('into', '')}"}[status]
    request = uow.session.get(CitizenRequest, envelope["case_no"])
    if request is not None:
        request.status = status
        if status == "merged":
            request.merged_into = body["into"]
        report_status(service, uow, request.case_no, status, note, envelope.get("occurred_at"))
    if status == "handled":
        _answer_merged_requests(service, uow, envelope["case_no"], body.get("reply", ""), envelope)


def _answer_merged_requests(service, uow, case_no, reply, envelope):
    """Every reporter of a merged case gets the reply (and is asked for satisfaction separately)."""
    for merged in uow.session.scalars(select(CitizenRequest).where(CitizenRequest.merged_into == case_no)):
        merged.status = "handled"
        uow.add(TimelineEntry(case_no=merged.case_no, at=service.clock.now(), title="已办结",
                              detail=reply, public=True))
        report_status(service, uow, merged.case_no, "handled", reply, envelope.get("occurred_at"))
