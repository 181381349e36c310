"""The dispatch service: routing each case to the department that must solve it."""
from services.common.service import ServiceDefinition
from services.common.workflow.handlers import HandlerRegistry

from .co_handling import follow as follow_co_handlers
from .files import listeners
from .duplicates import register_case
from .forms import FORMS
from .retention import DispatchPersonalData


def _blueprints():
    from . import api, openapi, views
    return [views.bp, api.bp, openapi.bp]


definition = ServiceDefinition(
    name="dispatch", title="分拨办理", service_tasks=HandlerRegistry(), listeners=listeners,
    forms=FORMS, blueprints=_blueprints, home_endpoint="dispatch.start",
    personal_data=DispatchPersonalData(),  # retention: services/dispatch/retention.py
    work_items_changed=follow_co_handlers,  # the 协办 list's table (services/dispatch/co_handling.py)
    summary_keys=("description", "category", "suggested_department", "channel", "submitted_at",
                  "location", "department_name", "co_departments", "key_case", "fallback",
                  "return_count", "returns", "first_owner_name", "chief_instruction", "chief_request",
                  "extension_days", "extension_reason", "extension_note", "extensions", "resolve_due",
                  "mediation", "reopen_count", "citizen_comment"),
)
# 疑似重复: each new case is compared with the open ones as dispatch registers it.
definition.listeners.on("intake.case_submitted")(register_case)
