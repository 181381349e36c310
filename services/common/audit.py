"""Audit log: who did what to which case, when, and from which address (docs/security.md).

``record(uow, actor, action, case_no=None, **detail)`` adds one ``AuditEntry`` to a unit of
work, so the entry commits (or rolls back) with the state change it records; command
functions call it without knowing about Flask: the request's address, the service and its
clock come from a context variable that ``init_app`` sets before each request. User tasks
completed without an entry of their own (mediation's 调解, supervision's 催办) are recorded by
the runtime's ``audit`` hook as ``<service>.<task>``.

Each service keeps its entries in its own database (services never read each other's tables),
so each offers its own ``/<service>/audit`` page and CSV export, for supervisors and admins.
The log is append-only: nothing here or elsewhere updates or deletes a row.
"""
from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import partial

from flask import (Blueprint, Response, current_app, g, has_request_context, render_template, request,
                   url_for)
from flask_login import current_user
from sqlalchemy import event, func, select

from .models import AuditEntry
from .reference import DEPARTMENTS, DISTRICTS
from .web.auth import ROLE_NAMES, roles_required

AUDIT_ROLES = ("supervisor", "admin")  # who reads the log (admin passes roles_required anyway)
PAGE_LIMIT = 200
EXPORT_LIMIT = 50_000
CHINA_TZ = timezone(timedelta(hours=8))  # dates in the search form are local dates

ACTIONS = {
    "dispatch.assign": "交办", "dispatch.pool": "放入认领池", "dispatch.chief": "提请首席办事员",
    "dispatch.mediate": "转人民调解", "dispatch.reject": "不予受理", "dispatch.designate": "兜底指定",
    "dispatch.claim": "认领", "dispatch.instruct": "首席批示", "dispatch.accept": "受理",
    "dispatch.return": "退回", "dispatch.reply": "提交办理结果", "dispatch.extend": "申请延期",
    "dispatch.decide_extension": "延期审批", "dispatch.note": "办理记录", "dispatch.merge": "并案",
    "dispatch.duplicate_dismissed": "排除疑似重复",
    "mediation.mediate": "调解", "supervision.urge": "催办",
    "intake.rate": "诉求人评价", "intake.callback": "电话回访",
    "auth.login": "登录成功", "auth.login_failed": "登录失败", "auth.login_locked": "登录被拒（账号锁定）",
    "auth.logout_all": "退出所有设备", "pii.reveal": "查看个人信息", "audit.export": "导出审计日志",
    "privacy.anonymise": "个人信息匿名化", "mediation.take": "接办调解", "mediation.confidential": "设置保密",
    # staff accounts (services/common/accounts.py) and diagrams (web/ops.py)
    "auth.password_change": "修改本人密码", "auth.sso_login": "统一身份认证登录",
    "auth.sso_refused": "统一身份认证登录被拒", "admin.user_create": "新建账号",
    "admin.role_change": "修改角色或范围", "admin.password_reset": "重置密码", "admin.lock": "锁定账号",
    "admin.unlock": "解锁账号", "admin.logout_all": "结束账号全部登录", "diagram.deploy": "部署流程图",
    "intake.file": "代为反映",
}
DETAIL_NAMES = {"anonymised": "已匿名化", "records": "涉及记录", "retention_days": "保存期限（天）", "confidential": "保密",
                "department": "部门", "co_departments": "协办部门", "bulk": "批量", "approved": "同意",
                "days": "天数", "fields": "查看", "task": "环节", "filters": "条件",
                "user": "账号", "role": "角色", "district": "县区", "previous_role": "原角色",
                "previous_district": "原县区", "previous_department": "原部门", "reason": "原因",
                "version": "版本", "hash": "摘要", "channel": "渠道", "attachments": "附件",
                "candidates": "疑似重复案件"}


@dataclass(frozen=True)
class _Request:
    service: str
    clock: object
    address: str | None


_current: ContextVar[_Request | None] = ContextVar("fzt_audit_request", default=None)


def record(uow, actor, action: str, case_no: str | None = None, **detail) -> AuditEntry:
    """Add an entry to ``uow``. ``actor``: a staff user (``username``, ``role``), a
    ``StaffUser`` row, or a plain name; ``detail``: JSON-able context (a department, a
    number of days) — never a revealed personal value nor free text a citizen wrote."""
    req = _current.get()
    entry = AuditEntry(
        at=req.clock.now() if req else datetime.now(timezone.utc),
        actor=str(getattr(actor, "username", actor) or "")[:100], role=getattr(actor, "role", "") or "",
        action=action, case_no=case_no, detail=detail, address=req.address if req else None,
        service=req.service if req else action.split(".")[0])
    uow.add(entry)
    return entry


def record_now(service, actor, action: str, case_no: str | None = None, **detail) -> None:
    """An entry in a transaction of its own: for events that change nothing else (a login
    failure, a reveal)."""
    with service.uow() as uow:
        record(uow, actor, action, case_no, **detail)
        uow.commit()


@contextmanager
def outside_request(service):
    """Entries written outside a request (the CLI, the worker) name the service and take the
    time from its platform clock."""
    token = _current.set(_Request(service.name, service.clock, None))
    try:
        yield
    finally:
        _current.reset(token)


def task_completed(service_name: str, uow, item, actor_name: str) -> None:
    """The runtime's ``audit`` hook (bound to the service by ``init_app``): '<service>.<task>'
    by the signed-in user."""
    user = current_user if has_request_context() and current_user.is_authenticated else actor_name
    record(uow, user, f"{service_name}.{item.task_name}", item.case_no, task=item.title)


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _append_only(*_):
    raise PermissionError("audit_log is append-only")


# -- reading ---------------------------------------------------------------------------

def _parse_date(value):
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def filters_from(args) -> dict:
    """The search form's filters (strings and dates; blanks dropped)."""
    found = {k: (args.get(k) or "").strip()[:100] for k in ("case_no", "actor", "action")}
    found.update({k: _parse_date(args.get(k, "").strip()) for k in ("since", "until")})
    return {k: v for k, v in found.items() if v}


def _query(filters: dict):
    query = select(AuditEntry)
    for column in ("case_no", "actor"):
        if filters.get(column):
            query = query.where(getattr(AuditEntry, column) == filters[column])
    action = filters.get("action")
    if action:  # "dispatch." selects every dispatch act
        query = query.where(AuditEntry.action.startswith(action, autoescape=True) if action.endswith(".")
                            else AuditEntry.action == action)
    if filters.get("since"):
        query = query.where(AuditEntry.at >= datetime.combine(filters["since"], time(), CHINA_TZ))
    if filters.get("until"):  # the whole day
        query = query.where(AuditEntry.at < datetime.combine(filters["until"] + timedelta(days=1), time(), CHINA_TZ))
    return query


def find(service, filters: dict, limit=PAGE_LIMIT):
    """(entries newest first, how many match in all)."""
    query = _query(filters)
    with service.uow() as uow:
        entries = uow.session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)).all()
        total = uow.session.scalar(select(func.count()).select_from(query.subquery()))
    return entries, total


def for_case(service, case_no):
    """A case's trail in this service, oldest first."""
    with service.uow() as uow:
        return uow.session.scalars(select(AuditEntry).where(AuditEntry.case_no == case_no)
                                   .order_by(AuditEntry.at, AuditEntry.id)).all()


def describe(detail: dict) -> str:
    """Detail for people: 部门：市住建局；批量：是."""
    def value(key, v):
        if key in ("department", "co_departments", "previous_department"):
            return "、".join(DEPARTMENTS.get(c, c) for c in (v if isinstance(v, list) else [v]) if c) or "无"
        if key in ("district", "previous_district"):
            return DISTRICTS.get(v, v) if v else "全市"
        if key in ("role", "previous_role"):
            return ROLE_NAMES.get(v, v)
        if isinstance(v, bool):
            return "是" if v else "否"
        return "、".join(map(str, v)) if isinstance(v, list) else str(v)
    return "；".join(f"{DETAIL_NAMES.get(k, k)}：{value(k, v)}" for k, v in (detail or {}).items())


# -- the pages -------------------------------------------------------------------------

bp = Blueprint("audit", __name__)


def _service():
    return current_app.extensions["fzt"]


@bp.app_context_processor
def _names():
    return {"AUDIT_ACTIONS": ACTIONS, "ROLE_NAMES": ROLE_NAMES, "audit_detail": describe}


@bp.get("/audit")
@roles_required("supervisor")
def search():
    filters = filters_from(request.args)
    entries, total = find(_service(), filters)
    args = {k: request.args.get(k, "") for k in ("case_no", "actor", "action", "since", "until")}
    return render_template("audit.html", entries=entries, total=total, limit=PAGE_LIMIT, args=args,
                           export_url=url_for("audit.export", **{k: v for k, v in args.items() if v}))


def _cell(value) -> str:
    """No spreadsheet formulas out of typed-in text (a username tried at the login form)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/audit/export.csv")
@roles_required("supervisor")
def export():
    service, filters = _service(), filters_from(request.args)
    entries, _ = find(service, filters, limit=EXPORT_LIMIT)
    record_now(service, current_user, "audit.export", filters={k: str(v) for k, v in filters.items()})
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads UTF-8 with the mark
    writer = csv.writer(out)
    writer.writerow(["id", "at", "service", "actor", "role", "action", "case_no", "detail", "address"])
    for e in entries:
        writer.writerow([_cell(v) for v in (e.id, e.at.astimezone(CHINA_TZ).isoformat(), e.service, e.actor, e.role,
                                            e.action, e.case_no, json.dumps(e.detail, ensure_ascii=False), e.address)])
    stamp = service.clock.now().astimezone(CHINA_TZ).strftime("%Y%m%d-%H%M")
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=audit-{service.name}-{stamp}.csv"})


def init_app(app, service) -> None:
    """Audit pages, the request context that ``record`` reads, and the runtime's hook."""
    app.register_blueprint(bp)
    service.runtime.audit = partial(task_completed, service.name)

    @app.before_request
    def _audit_context():
        g.fzt_audit_token = _current.set(_Request(service.name, service.clock, request.remote_addr))

    @app.teardown_request
    def _audit_context_end(_exc):
        token = g.pop("fzt_audit_token", None)
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # set in another context (should not happen): just clear it
                _current.set(None)
