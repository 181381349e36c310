"""Intake API v1 as OpenAPI 3, from the schemas ``api.py`` loads with (services/common/web/openapi.py).

Served at ``/intake/api/v1/openapi.json``. Open311 has its own, older standard (docs/open311.md)
and is not described here.
"""
from __future__ import annotations

from marshmallow import Schema, fields

from services.common.reference import CATEGORIES, CHANNELS, DISTRICTS
from services.common.web import openapi

from . import idempotency
from .requests import PHONE, RequestSchema

DESCRIPTION = ("市民提交诉求、凭诉求编号和查询码查询办理进度。无需登录；个人信息不会在查询结果中返回。"
               "错误说明为简体中文。")


class Created(Schema):
    case_no = fields.String(required=True, metadata={"example": "210902-20261125-0001"})
    tracking_code = fields.String(required=True, metadata={"description": "查询码（8位），请诉求人妥善保存"})


class PublicStep(Schema):
    at = fields.String(required=True, metadata={"format": "date-time"})
    title = fields.String(required=True)
    detail = fields.String(required=True)


class RequestStatus(Schema):
    case_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "submitted / assigned / handled / rejected / merged …"})
    status_name = fields.String(required=True)
    district = fields.String(required=True)
    category = fields.String(required=True)
    channel = fields.String(required=True)
    submitted_at = fields.String(required=True, metadata={"format": "date-time"})
    timeline = fields.List(fields.Nested(PublicStep), required=True)


def _request_body_schema(spec) -> None:
    """``RequestSchema`` with what its ``@validates`` methods check, written as JSON Schema."""
    spec.components.schema("NewRequest", schema=RequestSchema)
    properties = spec.components.schemas["NewRequest"]["properties"]
    properties["district"].update(enum=[*DISTRICTS, *DISTRICTS.values()],
                                  description="县区：行政区划代码或简体名称")
    properties["phone"].update(pattern=PHONE.pattern, description="手机号或座机号")
    properties["category"].update(enum=["", *CATEGORIES])
    properties["channel"].update(enum=list(CHANNELS))


def _with_photos(spec) -> dict:
    """The multipart form: the same fields, plus up to four photos (docs/uploads.md)."""
    fields_ = spec.components.schemas["NewRequest"]
    return {"type": "object", "required": fields_["required"], "properties": {
        **fields_["properties"],
        "photos": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "照片（JPEG/PNG/WebP，按内容检查），最多4张"}}}


def describe(spec) -> None:
    _request_body_schema(spec)
    body = openapi.json_body(RequestSchema)
    body["content"]["multipart/form-data"] = {"schema": _with_photos(spec)}
    created = openapi.responses("201", Created, "已受理：诉求编号和查询码（同一 Idempotency-Key 的重试得到同一答复）", **{
        "400": "请求体不是 JSON 对象，或填写内容有误（fields 逐项说明），或 Idempotency-Key 无效",
        "422": "同一 Idempotency-Key 已用于内容不同的诉求"})
    created["201"]["headers"] = {"Idempotent-Replayed": {
        "description": "true：这是对先前同一请求的重放答复", "schema": {"type": "string", "enum": ["true"]}}}
    spec.path(path="/api/v1/requests", operations={"post": {
        "summary": "提交诉求", "operationId": "createRequest", "tags": ["requests"],
        "parameters": [{"name": idempotency.HEADER, "in": "header", "required": False,
                        "schema": {"type": "string", "pattern": idempotency.KEY.pattern, "maxLength": 255},
                        "description": "重试时带同一个键（建议 UUID），不会重复立案"}],
        "requestBody": body,
        "responses": created,
    }})
    spec.path(path="/api/v1/requests/{case_no}", operations={"get": {
        "summary": "查询办理进度", "operationId": "getRequest", "tags": ["requests"],
        "parameters": [
            {"name": "case_no", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "tracking_code", "in": "query", "required": True, "schema": {"type": "string"},
             "description": "提交时给出的查询码"},
        ],
        "responses": openapi.responses("200", RequestStatus, "办理进度（不含个人信息）",
                                       **{"404": "编号或查询码不对"}),
    }})


def document() -> dict:
    return openapi.build("intake", "阜政通 诉求受理 API", DESCRIPTION, describe)


bp = openapi.blueprint(document)
