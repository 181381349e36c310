"""The mediation service (on-site center 综治中心, 调解优先、应调尽调): a dispute that a
dispatcher sends to mediation arrives as ``dispatch.mediation_requested``; a mediator records
how it ended and bpmn/mediation.bpmn tells dispatch and intake (``mediation.case_mediated``).
See docs/mediation.md."""
from services.common.service import Listeners, ServiceDefinition
from services.common.workflow.handlers import HandlerRegistry

from . import cases
from .forms import FORMS

listeners = Listeners()
listeners.on("dispatch.mediation_requested")(cases.refuse_second_request)


def _blueprints():
    from . import views
    return [views.bp]


definition = ServiceDefinition(
    name="mediation", title="矛盾调解", service_tasks=HandlerRegistry(), listeners=listeners,
    forms=FORMS, blueprints=_blueprints, home_endpoint="mediation.desk",
    summary_keys=("description", "name", "reason", "category", "location"),
)
