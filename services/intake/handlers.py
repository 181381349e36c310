"""What intake listens to on the bus (besides the messages its diagram catches)."""
from __future__ import annotations

from services.common.service import Listeners
from services.common.workflow.handlers import HandlerRegistry

from .models import CitizenRequest

listeners = Listeners()
service_tasks = HandlerRegistry()


@listeners.on("dispatch.case_assigned")
def mark_assigned(service, uow, envelope):
    request = uow.session.get(CitizenRequest, envelope["case_no"])
    if request is not None:
        request.status = "assigned"


@listeners.on("dispatch.case_handled")
def mark_handled(service, uow, envelope):
    request = uow.session.get(CitizenRequest, envelope["case_no"])
    if request is not None:
        request.status = "handled"
