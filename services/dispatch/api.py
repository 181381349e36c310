"""Dispatch JSON API (v1) for staff: session login or a bearer token from ``fzt token``."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user

from services.common.reference import district_code
from services.common.web.auth import roles_required
from services.common.workflow.runtime import Conflict

from . import cases

bp = Blueprint("api", __name__, url_prefix="/api/v1")
STATUSES = {cases.ASSIGN: "待交办", cases.HANDLE: "办理中"}


@bp.get("/cases")
@roles_required("dispatcher", "handler")
def list_cases():
    status = request.args.get("status", cases.ASSIGN)
    if status not in STATUSES:
        return jsonify(error="invalid_status", message=f"status 须为 {', '.join(STATUSES)} 之一"), 400
    district = None
    if request.args.get("district"):
        district = district_code(request.args["district"])
        if district is None:
            return jsonify(error="unknown_district", message="未知的县区"), 400
    scope = cases.district_scope(current_user)
    if current_user.role == "dispatcher" and scope:
        if district and district != scope:
            return jsonify(error="forbidden", message="该县区不在您的权限范围内"), 403
        district = scope
    department = current_user.department if current_user.role == "handler" else None
    items, total = cases.queue(current_app.extensions["fzt"], status, district=district,
                               department=department)
    return jsonify(total=total, cases=[cases.item_json(i) for i in items])


@bp.post("/cases/<case_no>/assign")
@roles_required("dispatcher")
def assign_case(case_no):
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("department"), str):
        return jsonify(error="validation_failed", fields={"department": ["请指定承办部门"]}), 400
    try:
        cases.assign(current_app.extensions["fzt"], current_user, case_no, payload["department"])
    except ValueError as err:
        return jsonify(error="validation_failed", fields={"department": [str(err)]}), 400
    except cases.NoSuchTask as err:
        return jsonify(error="not_found", message=str(err)), 404
    except cases.NotAllowed as err:
        return jsonify(error="forbidden", message=str(err)), 403
    except Conflict as err:
        return jsonify(error="conflict", message=str(err)), 409
    return jsonify(case_no=case_no, status=cases.HANDLE, department=payload["department"])

