"""代为反映: staff file a request on a citizen's behalf — the 12345 hotline or phone operator
(受理员) for calls and walk-ins, the grid worker (网格员) for what they found or were told in
their grid. The same validation and case record as the citizen's own form (``submit_request``);
the channel says who filed it, and a grid worker files only in their own district. Audited.
"""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user
from marshmallow import ValidationError

from services.common import audit
from services.common.reference import CHANNELS, district_code
from services.common.web.auth import roles_required

from .requests import RequestSchema, submit_request

bp = Blueprint("filing", __name__, url_prefix="/staff")

FILING_ROLES = ("intake_operator", "grid_worker")  # and admin
# Channels each role files through; the first is the default.
ROLE_CHANNELS = {"intake_operator": ("phone", "hotline_12345", "walk_in"), "grid_worker": ("grid",),
                 "admin": ("phone", "hotline_12345", "walk_in", "grid")}
FIELDS = ("district", "name", "phone", "description", "category", "location")
_JUST_FILED = "just_filed"
# Channels anyone may use unsigned; the others say a member of staff took the request.
CITIZEN_CHANNELS = ("web",)


def channel_error(user, channel: str, district: str):
    """Why ``user`` may not file through ``channel`` in ``district`` over the API (None: may)."""
    if channel in CITIZEN_CHANNELS:
        return None
    if not user.is_authenticated or channel not in ROLE_CHANNELS.get(user.role, ()):
        return "该渠道仅限受理员、网格员登录后使用"
    if user.role == "grid_worker" and district_code(district) != user.district:
        return "网格员只能代为反映本辖区的诉求"
    return None


def audited_filing(user, channel: str):
    """``then`` for ``submit_once``: a staff filing is audited in the case's transaction."""
    if channel in CITIZEN_CHANNELS:
        return None
    return lambda uow, created: audit.record(uow, user, "intake.file", created.case_no, channel=channel)


def _service():
    return current_app.extensions["fzt"]


def _fixed_district():
    """A grid worker's own district (they cannot file elsewhere); None for everyone else."""
    return current_user.district if current_user.role == "grid_worker" else None


@bp.route("/file", methods=["GET", "POST"])
@roles_required(*FILING_ROLES)
def file_request():
    channels = ROLE_CHANNELS[current_user.role]
    errors, values = {}, {"channel": channels[0], "district": _fixed_district() or ""}
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in (*FIELDS, "channel")}
        if _fixed_district():
            values["district"] = _fixed_district()
        if values["channel"] not in channels:
            errors["channel"] = ["请选择受理渠道"]
        try:
            data = RequestSchema().load({**{k: v for k, v in values.items() if v.strip()}})
        except ValidationError as err:
            errors = {**err.messages, **errors}
        if not errors:
            service = _service()
            with service.uow() as uow:
                created = submit_request(service, data, uow)
                audit.record(uow, current_user, "intake.file", created.case_no, channel=data["channel"])
                uow.commit()
            session[_JUST_FILED] = [created.case_no, created.tracking_code]
            return redirect(url_for("filing.file_request"))
    just_filed = session.pop(_JUST_FILED, None) if request.method == "GET" else None
    return render_template("intake/file.html", errors=errors, values=values, just_filed=just_filed,
                           channels=[(c, CHANNELS[c]) for c in channels], fixed_district=_fixed_district()), (
        400 if errors else 200)
