"""The intake service: citizens' requests from every channel, their tracking and feedback."""
from services.common.service import ServiceDefinition

from .callback import CallbackForm, RatingForm
from .handlers import listeners, service_tasks
from .notify import send_notifications
from .retention import IntakePersonalData


def _blueprints():
    from . import api, callback_views, filing, open311, openapi, publicity, stats, views
    return [views.bp, api.bp, open311.bp, publicity.bp, stats.bp, filing.bp, openapi.bp, callback_views.bp]


definition = ServiceDefinition(
    name="intake", title="诉求受理", service_tasks=service_tasks, listeners=listeners,
    blueprints=_blueprints, home_endpoint="citizen.submit",
    personal_data=IntakePersonalData(),  # retention: services/intake/retention.py
    # 回访 (services/intake/callback.py): the citizen's online rating and the operator's call.
    forms={"rate": RatingForm, "callback": CallbackForm},
    periodic=(send_notifications,),
)
