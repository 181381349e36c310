"""OpenAPI 3 documents for the services' JSON APIs, generated from the marshmallow schemas the
endpoints load with (apispec), so the document cannot drift from what the code checks.

A service describes its operations in a function ``describe(spec)`` (``spec.path(...)`` with
marshmallow schema classes in request bodies and responses) and serves the result with
``blueprint(...)`` at ``/<service>/api/v1/openapi.json``. ``tests/unit/test_openapi.py`` checks
that the document is valid and that every ``/api/`` route is in it; ``tests/unit/test_fuzz.py``
runs schemathesis against it (docs/security.md, "Hostile input").
"""
from __future__ import annotations

from functools import cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify
from marshmallow import Schema, fields

OPENAPI_VERSION = "3.0.3"
BEARER = {"bearer": []}


class Error(Schema):
    """Every error answer of the JSON APIs (``app._error`` and the views' own)."""
    error = fields.String(required=True, metadata={"description": "机器可读的错误代码，如 validation_failed"})
    message = fields.String(metadata={"description": "给人看的说明（简体中文）"})
    fields_ = fields.Dict(data_key="fields", keys=fields.String(),
                          metadata={"description": "字段 → 错误说明列表（校验失败时）"})


# Answers any endpoint may give: unusable input (a NUL character anywhere: web/hostile.py), a
# body too large, a wrong method, too many requests from one address. Every operation
# documents them; an operation's own description of a status replaces the common one.
COMMON_ERRORS = {
    "400": "请求无效（如含有 NUL 等无法处理的字符）",
    "405": "不支持的请求方式", "413": "请求内容过大", "429": "请求过于频繁，请稍后再试",
    "500": "系统繁忙（不应出现：模糊测试把它当作缺陷）",
}


def error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": Error}}}


def json_body(schema, description: str = "") -> dict:
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": schema}}}


def responses(ok_status: str, ok_schema, ok_description: str, **errors: str) -> dict:
    """An operation's responses: the success, the given errors (status → description) and
    ``COMMON_ERRORS`` (except 500, which is documented nowhere: it is always a defect)."""
    answers = {ok_status: {"description": ok_description, "content": {"application/json": {"schema": ok_schema}}}}
    for status, text in {**{k: v for k, v in COMMON_ERRORS.items() if k != "500"}, **errors}.items():
        answers[status.lstrip("_")] = error(text)
    return answers


def build(service_name: str, title: str, description: str, describe, bearer: bool = False) -> dict:
    """The OpenAPI document (a dict) of one service's API."""
    spec = APISpec(title=title, version="1", openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": description},
                   servers=[{"url": f"/{service_name}", "description": "网关后的服务路径（单进程模式相同）"}])
    if bearer:
        spec.components.security_scheme("bearer", {
            "type": "http", "scheme": "bearer",
            "description": "`fzt token <service> <username>` 生成的访问令牌，或已登录的会话"})
    spec.components.schema("Error", schema=Error)
    describe(spec)
    spec.path(path="/api/v1/openapi.json", operations={"get": {
        "summary": "本接口的 OpenAPI 3 文档", "operationId": "openapi", "tags": ["meta"],
        "responses": {"200": {"description": "OpenAPI 文档",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}})
    return spec.to_dict()


def blueprint(build_document) -> Blueprint:
    """``GET /api/v1/openapi.json``: the document ``build_document()`` makes (built once)."""
    bp = Blueprint("openapi", __name__, url_prefix="/api/v1")
    document = cache(build_document)

    @bp.get("/openapi.json")
    def spec():
        return jsonify(document())

    return bp
