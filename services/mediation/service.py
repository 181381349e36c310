"""The mediation service (on-site center). Its flows arrive with the mediation issue; for now
it serves its health check and the reception desk's start page."""
from flask import Blueprint, render_template

from services.common.service import Listeners, ServiceDefinition
from services.common.web.auth import roles_required
from services.common.workflow.handlers import HandlerRegistry

bp = Blueprint("mediation", __name__)


@bp.get("/desk")
@roles_required("mediator")
def desk():
    return render_template("mediation/desk.html")


definition = ServiceDefinition(
    name="mediation", title="矛盾调解", service_tasks=HandlerRegistry(), listeners=Listeners(),
    blueprints=lambda: [bp], home_endpoint="mediation.desk",
)
