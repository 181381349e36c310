"""Dispatch JSON API (v1) for staff: session login or a bearer token from ``fzt token``.

``GET /cases?status=<task>&district=`` lists work; ``GET /cases/<no>`` reads one case;
``POST /cases/<no>/<act>`` takes one act (assign, pool, chief, mediate, reject, designate,
claim, instruct, accept, return, reply, extend, decide_extension, note, merge) with a small JSON
body.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user, login_required
from marshmallow import Schema, ValidationError, fields, validate

from services.common.reference import district_code
from services.common.workflow.runtime import Conflict

from . import cases

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _text(required_message, limit):
    return fields.String(required=True, validate=validate.Length(min=1, max=limit),
                         error_messages={"required": required_message, "null": required_message,
                                         "invalid": "请填写文字"})


class _Body(Schema):
    error_messages = {"unknown": "不支持的字段"}


class _Department(_Body):
    department = _text("请指定承办部门", 50)
    co_departments = fields.List(fields.String(validate=validate.Length(max=50)), load_default=list,
                                 validate=validate.Length(max=10))


class _Empty(_Body):
    pass


class _Note(_Body):
    note = fields.String(load_default="", validate=validate.Length(max=500))


class _Reason(_Body):
    reason = _text("请填写理由", 500)


class _Instruction(_Department):
    instruction = _text("请填写批示意见", 1000)


class _Reply(_Body):
    reply = _text("请填写办理结果", 2000)


class _Extension(_Reason):
    days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=cases.MAX_EXTENSION_DAYS),
                          error_messages={"required": "请填写延长的工作日数", "invalid": "请填写整数"})


class _Decision(_Body):
    approved = fields.Boolean(required=True, error_messages={"required": "请说明是否同意"})
    note = fields.String(load_default="", validate=validate.Length(max=500))


class _Into(_Body):
    into = _text("请填写要并入的案件编号", 40)


class _Note_Text(_Body):
    text = _text("请填写办理记录", 1000)


_SINCE = fields.AwareDateTime()


def _aware_datetime(value):
    """An ISO 8601 time with its offset, or None (a time without one is ambiguous)."""
    try:
        return _SINCE.deserialize(value)
    except ValidationError:
        return None


# act -> (schema, command(service, user, case_no, **body))
ACTS = {
    "assign": (_Department, cases.assign),
    "designate": (_Department, cases.designate),
    "pool": (_Empty, cases.send_to_pool),
    "chief": (_Note, cases.send_to_chief),
    "reject": (_Reason, cases.reject),
    "mediate": (_Note, lambda service, user, case_no, note: cases.send_to_mediation(service, user, case_no, note)),
    "extend": (_Extension, lambda service, user, case_no, days, reason:
               cases.request_extension(service, user, case_no, days, reason)),
    "decide_extension": (_Decision, cases.decide_extension),
    "note": (_Note_Text, cases.add_note),
    "merge": (_Into, cases.merge),
    "claim": (_Empty, cases.claim),
    "instruct": (_Instruction, cases.instruct),
    "accept": (_Empty, cases.accept),
    "return": (_Reason, lambda service, user, case_no, reason: cases.return_case(service, user, case_no, reason)),
    "reply": (_Reply, lambda service, user, case_no, reply: cases.reply(service, user, case_no, reply)),
}


@bp.get("/cases")
@login_required
def list_cases():
    status = request.args.get("status", cases.ASSIGN)
    if status not in cases.TASK_ROLES:
        return jsonify(error="invalid_status", message=f"status 须为 {', '.join(cases.TASK_ROLES)} 之一"), 400
    if current_user.role not in ("admin", cases.TASK_ROLES[status]):
        return jsonify(error="forbidden", message="您无权查看该工作列表"), 403
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
    since = None
    if request.args.get("since"):
        since = _aware_datetime(request.args["since"])
        if since is None:
            return jsonify(error="invalid_since",
                           message="since 须为带时区的 ISO 8601 时间，如 2026-11-26T08:00:00+08:00"), 400
    department = current_user.department if status in (cases.ACCEPT, cases.RESOLVE) \
        and current_user.role == "handler" else None
    items, total = cases.queue(current_app.extensions["fzt"], status, district=district, department=department,
                               since=since)
    # ``total`` counts up to cases.COUNT_CAP + 1; ``total_capped``: there are more than COUNT_CAP.
    return jsonify(total=total, total_capped=total > cases.COUNT_CAP, cases=[cases.item_json(i) for i in items])


@bp.get("/cases/<case_no>")
@login_required
def get_case(case_no):
    record = cases.case_record(current_app.extensions["fzt"], case_no)
    if record is None or not cases.may_read(current_user, record):
        return jsonify(error="not_found", message="未找到该案件或无权查看"), 404
    data = record["data"]
    return jsonify(
        case_no=case_no, status=record["instance"].status,
        waiting=[{"status": i.task_name, "step": i.title, "department": i.department} for i in record["items"]],
        **{k: data.get(k) for k in ("district", "description", "category", "channel", "location",
                                    "suggested_department", "department", "co_departments", "key_case",
                                    "fallback", "return_count", "first_owner", "chief_instruction", "reply")},
        timeline=[{"at": e.at.isoformat(), "title": e.title, "detail": e.detail, "actor": e.actor}
                  for e in record["timeline"]],
    )


@bp.post("/cases/<case_no>/<act>")
@login_required
def act_on_case(case_no, act):
    if act not in ACTS:
        return jsonify(error="not_found", message="未知的操作"), 404
    schema, command = ACTS[act]
    payload = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(payload, dict):
        return jsonify(error="invalid_json", message="请求体必须是 JSON 对象"), 400
    try:
        body = schema().load(payload)
    except ValidationError as err:
        return jsonify(error="validation_failed", fields=err.messages), 400
    try:
        command(current_app.extensions["fzt"], current_user, case_no, **body)
    except cases.Invalid as err:
        return jsonify(error="validation_failed", message=str(err),
                       fields={err.field: [str(err)]} if err.field else {}), 400
    except cases.NoSuchTask as err:
        return jsonify(error="not_found", message=str(err)), 404
    except cases.NotAllowed as err:
        return jsonify(error="forbidden", message=str(err)), 403
    except Conflict as err:
        return jsonify(error="conflict", message=str(err)), 409
    return jsonify(case_no=case_no, act=act, status="ok")
