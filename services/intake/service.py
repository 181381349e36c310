"""The intake service: citizens' requests from every channel, their tracking and feedback."""
from services.common.service import ServiceDefinition

from .handlers import listeners, service_tasks
from .retention import IntakePersonalData


def _blueprints():
    from . import api, filing, open311, openapi, publicity, stats, views
    return [views.bp, api.bp, open311.bp, publicity.bp, stats.bp, filing.bp, openapi.bp]


definition = ServiceDefinition(
    name="intake", title="诉求受理", service_tasks=service_tasks, listeners=listeners,
    blueprints=_blueprints, home_endpoint="citizen.submit",
    personal_data=IntakePersonalData(),  # retention: services/intake/retention.py
)
