"""Dispatch API v1 as OpenAPI 3, from the schemas ``api.py`` loads with (services/common/web/openapi.py).

Served at ``/dispatch/api/v1/openapi.json``. ``POST /cases/{case_no}/{act}`` is one route in
the code; the document lists one path per act (``api.ACTS``), each with the body its schema
takes, so clients and the fuzzer see what each act needs.
"""
from __future__ import annotations

from marshmallow import Schema, fields

from services.common.reference import DISTRICTS
from services.common.web import openapi

from . import cases
from .api import ACTS

DESCRIPTION = ("分拨员、部门办理人、首席办事员的工作接口：工作列表、案件详情和办理操作。"
               "需要登录会话或 `Authorization: Bearer <令牌>`（`fzt token dispatch 用户名`）；"
               "数据范围与页面相同（分拨员本县区，部门本部门的案件）。")
ACT_SUMMARIES = {
    "assign": "交办", "designate": "兜底指定", "pool": "放入认领池", "chief": "提请首席办事员",
    "reject": "不予受理", "mediate": "转人民调解", "extend": "申请延期", "decide_extension": "延期审批",
    "note": "办理记录", "merge": "并案", "claim": "认领", "instruct": "首席批示", "accept": "受理",
    "return": "退回", "reply": "提交办理结果",
}


class WorkItem(Schema):
    """One entry of a work list: the case's step plus the diagram's summary of the case."""
    class Meta:
        unknown = "include"

    case_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(cases.TASK_ROLES)})
    step = fields.String(required=True)
    district = fields.String(allow_none=True, required=True)
    department = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})


class WorkList(Schema):
    total = fields.Integer(required=True, metadata={
        "description": "counted up to 1001 (cases.COUNT_CAP + 1): cheap at any size"})
    total_capped = fields.Boolean(required=True, metadata={
        "description": "true: there are more than 1000, total is a lower bound"})
    cases = fields.List(fields.Nested(WorkItem), required=True)


class Waiting(Schema):
    status = fields.String(required=True)
    step = fields.String(required=True)
    department = fields.String(allow_none=True, required=True)


class Step(Schema):
    at = fields.String(required=True, metadata={"format": "date-time"})
    title = fields.String(required=True)
    detail = fields.String(required=True)
    actor = fields.String(required=True)


class Case(Schema):
    """The case as staff read it; the citizen's name and phone are not in the API (the case
    page shows them masked, in full only after an audited reveal)."""
    case_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "流程实例状态：waiting / complete …"})
    waiting = fields.List(fields.Nested(Waiting), required=True)
    district = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    suggested_department = fields.String(allow_none=True)
    department = fields.String(allow_none=True)
    co_departments = fields.List(fields.String(), allow_none=True)
    key_case = fields.Boolean(allow_none=True)
    fallback = fields.Boolean(allow_none=True)
    return_count = fields.Integer(allow_none=True)
    first_owner = fields.String(allow_none=True)
    chief_instruction = fields.String(allow_none=True)
    reply = fields.String(allow_none=True)
    timeline = fields.List(fields.Nested(Step), required=True)


class Done(Schema):
    case_no = fields.String(required=True)
    act = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["ok"]})


CASE_NO = {"name": "case_no", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "诉求编号，如 210902-20261125-0001"}


def describe(spec) -> None:
    spec.path(path="/api/v1/cases", operations={"get": {
        "summary": "工作列表", "operationId": "listCases", "tags": ["cases"], "security": [openapi.BEARER],
        "parameters": [
            {"name": "status", "in": "query", "required": False,
             "schema": {"type": "string", "enum": list(cases.TASK_ROLES), "default": cases.ASSIGN},
             "description": "环节：assign 待交办（默认）、accept 待受理、resolve 办理中 …"},
            {"name": "district", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["", *DISTRICTS, *DISTRICTS.values()]},
             "description": "县区代码或名称，空 = 不限（县区分拨员只能看本县区）"},
            {"name": "since", "in": "query", "required": False,
             "schema": {"type": "string", "format": "date-time"},
             "description": "只列出此时间之后生成的待办（带时区的 ISO 8601，如 2026-11-26T08:00:00+08:00，"
                            "“+”须编码为 %2B）；total 仍为全部待办数。轮询时取上次所见最晚时间再提前几秒，按编号去重"},
        ],
        "responses": openapi.responses("200", WorkList, "最早的待办在前", **{
            "400": "status、district 或 since 无效", "401": "未登录或令牌无效", "403": "无权查看该工作列表或该县区"}),
    }})
    spec.path(path="/api/v1/cases/{case_no}", operations={"get": {
        "summary": "案件详情", "operationId": "getCase", "tags": ["cases"], "security": [openapi.BEARER],
        "parameters": [CASE_NO],
        "responses": openapi.responses("200", Case, "案件", **{
            "401": "未登录或令牌无效", "404": "没有该案件，或不在您的数据范围内"}),
    }})
    for act, (schema, _command) in ACTS.items():
        spec.path(path=f"/api/v1/cases/{{case_no}}/{act}", operations={"post": {
            "summary": ACT_SUMMARIES.get(act, act), "operationId": f"act_{act}", "tags": ["acts"],
            "security": [openapi.BEARER], "parameters": [CASE_NO],
            "requestBody": {**openapi.json_body(schema), "required": False},
            "responses": openapi.responses("200", Done, "已办理", **{
                "400": "请求体不是 JSON 对象或内容有误", "401": "未登录或令牌无效",
                "403": "无权办理", "404": "案件不在该环节（可能已被他人处理）",
                "409": "案件刚被他人更新，请刷新后重试"}),
        }})


def document() -> dict:
    return openapi.build("dispatch", "阜政通 分拨办理 API", DESCRIPTION, describe, bearer=True)


bp = openapi.blueprint(document)
