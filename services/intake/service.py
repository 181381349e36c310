"""The intake service: citizens' requests from every channel, their tracking and feedback."""
from services.common.service import ServiceDefinition

from .handlers import listeners, service_tasks


def _blueprints():
    from . import api, filing, open311, publicity, stats, views
    return [views.bp, api.bp, open311.bp, publicity.bp, stats.bp, filing.bp]


definition = ServiceDefinition(
    name="intake", title="诉求受理", service_tasks=service_tasks, listeners=listeners,
    blueprints=_blueprints, home_endpoint="citizen.submit",
)
