"""What intake listens to on the bus (besides the messages its diagram catches): the case's
status for the citizen's status page, and progress reports back to the 12345 hotline for the
cases that came from it (a status row in the same transaction; services/intake/hotline.py)."""
from __future__ import annotations

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
}


@listeners.on(*STATUS_BY_EVENT)
def track_status(service, uow, envelope):
    status = STATUS_BY_EVENT[envelope["type"]]
    request = uow.session.get(CitizenRequest, envelope["case_no"])
    if request is None:
        return
    request.status = status
    body = envelope["body"]
    note = {"assigned": "已交办" + (body.get("department_name") or body.get("department", "")),
            "handled": body.get("reply", ""), "rejected": body.get("reason", "")}[status]
    report_status(service, uow, envelope["case_no"], status, note, envelope.get("occurred_at"))
