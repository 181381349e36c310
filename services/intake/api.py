"""Intake's JSON API (v1): submit a request, look up its status with the tracking code.

A request is a JSON object, or ``multipart/form-data`` with the same fields plus up to four
files in ``photos`` (docs/uploads.md): photos are checked by content like the web form's."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from marshmallow import ValidationError

from services.common.uploads import UploadRejected
from services.common.web.app import csrf_exempt
from services.common.web.ratelimit import LOOKUP, SUBMIT, limited, replayed

from . import idempotency
from .filing import audited_filing, channel_error
from .privacy import mask_personal
from .requests import RequestSchema, find_request, public_timeline
from .views import STATUS_NAMES, checked_photos, stored_photos

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.post("/requests")
@csrf_exempt
@limited(SUBMIT, replay=lambda: idempotency.seen(current_app.extensions["fzt"], idempotency.API,
                                                request.headers.get(idempotency.HEADER)))
def create_request():
    """A new request; with an ``Idempotency-Key`` header a retry answers the first case again
    (same 201 body, header ``Idempotent-Replayed: true``) instead of making a second one."""
    key = request.headers.get(idempotency.HEADER)
    if key is not None and not idempotency.valid_key(key):
        return jsonify(error="invalid_idempotency_key", message=idempotency.KEY_ERROR), 400
    multipart = request.mimetype == "multipart/form-data"
    payload = request.form.to_dict() if multipart else request.get_json(silent=True)
    if payload is None:
        return jsonify(error="invalid_json", message="请求体必须是 JSON 对象（带照片时用 multipart/form-data）"), 400
    errors = {name: ["不支持的字段"] for name in request.files if name != "photos"} if multipart else {}
    try:
        data = RequestSchema().load(payload)
        if refused := channel_error(current_user, data["channel"], data["district"]):
            errors["channel"] = [refused]
    except ValidationError as err:
        errors.update(err.messages)
    try:  # every photo is checked before anything is stored
        photos = checked_photos(request.files.getlist("photos") if multipart else [])
    except UploadRejected as err:
        errors["photos"] = [str(err)]
    if errors:
        return jsonify(error="validation_failed", message="请检查填写内容", fields=errors), 400
    try:
        created, again = idempotency.submit_once(current_app.extensions["fzt"], idempotency.API, key, data,
                                                 then=audited_filing(current_user, data["channel"]),
                                                 photos=stored_photos(photos))
    except idempotency.KeyReused as err:
        return jsonify(error="idempotency_key_reused", message=str(err)), 422
    response = jsonify(case_no=created.case_no, tracking_code=created.tracking_code)
    if again:
        replayed()
        response.headers["Idempotent-Replayed"] = "true"
    return response, 201


@bp.get("/requests/<case_no>")
@limited(LOOKUP)
def get_request(case_no):
    service = current_app.extensions["fzt"]
    found = find_request(service, case_no, request.args.get("tracking_code", ""))
    if found is None:
        return jsonify(error="not_found", message="未找到该诉求，请核对诉求编号和查询码"), 404
    return jsonify(
        case_no=found.case_no, status=found.status, status_name=STATUS_NAMES.get(found.status, found.status),
        district=found.district, category=found.category, channel=found.channel,
        submitted_at=found.created_at.isoformat(),
        # a reply may name the citizen or a phone number: masked like every public text
        timeline=[{"at": e.at.isoformat(), "title": e.title,
                   "detail": mask_personal(e.detail, name=found.name, phone=found.phone)}
                  for e in public_timeline(service, found.case_no)],
    )
