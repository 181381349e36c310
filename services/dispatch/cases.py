"""Dispatch commands and queries: work lists, the acts staff take on a case, the case record.

Every act completes one user task of bpmn/dispatch.bpmn; *what happens next* is the
diagram's business. Who may act is checked here, once, for the web pages and the API alike:
the task's role (``TASK_ROLES``) plus the data scope (a dispatcher's district, a handler's
department). Each act writes one audit entry (``dispatch.<act>``, services/common/audit.py)
in the same transaction as the change.
"""
from __future__ import annotations

from sqlalchemy import func, select

from services.common import audit
from services.common.models import TimelineEntry, WorkflowInstance, WorkItem
from services.common.reference import DEPARTMENTS
from services.common.web.roles import READ_ONLY_ROLES
from services.common.workflow.runtime import TaskNotFound

from . import files
from .models import CoHandler

# User task (BPMN id) -> the role that works it; the admin may act everywhere.
TASK_ROLES = {
    "assign": "dispatcher",
    "fallback": "dispatcher",
    "claim": "handler",
    "chief_instruction": "chief",
    "accept": "handler",
    "resolve": "handler",
    "approve_extension": "dispatcher",
}
TASK_NAMES = {"assign": "待交办", "fallback": "待兜底指定", "claim": "认领池", "chief_instruction": "待首席批示",
              "accept": "待受理", "resolve": "办理中", "approve_extension": "待审批延期"}
ASSIGN, FALLBACK, CLAIM, CHIEF, ACCEPT, RESOLVE, APPROVE_EXTENSION = TASK_ROLES
MAX_EXTENSION_DAYS = 30


class NotAllowed(PermissionError):
    pass


class NoSuchTask(LookupError):
    pass


class Invalid(ValueError):
    """Input that the act cannot take (unknown department, missing reason, …)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def district_scope(user):
    """None means every district (admin, city-level staff)."""
    return None if user.role == "admin" else user.district


def may_work(user, item) -> bool:
    """Whether ``user`` may complete the work item (role and data scope)."""
    if user.role == "admin":
        return True
    if user.role != TASK_ROLES.get(item.task_name):
        return False
    if user.role == "dispatcher":
        return not user.district or item.district == user.district
    if item.task_name in (ACCEPT, RESOLVE):
        return item.department == user.department
    return True  # claim pool: any department; chief: every case sent to the chief


# Totals and badges count at most this many items, then say "1000+" (``count_label``): an
# exact count of a district's open work reads every one of its index entries, which at a
# million open cases costs more than the whole page (docs/benchmarks.md, "Scale").
COUNT_CAP = 1000


def _scoped(query, task_name, district=None, department=None):
    query = query.where(WorkItem.task_name == task_name)
    if district:
        query = query.where(WorkItem.district == district)
    if department:
        query = query.where(WorkItem.department == department)
    return query


def _capped_count(task_name, district=None, department=None):
    """A scalar subquery: the task's items in scope, counted up to COUNT_CAP + 1."""
    found = _scoped(select(WorkItem.id), task_name, district, department).limit(COUNT_CAP + 1).subquery()
    return select(func.count()).select_from(found).scalar_subquery()


def queue(service, task_names, district=None, department=None, limit=200, since=None):
    """Work items of the given task(s), oldest first, with the total (capped: COUNT_CAP).
    ``since``: only items made after that time (the total still counts them all).

    One query per task, each read in the order of an index (task_name, district | department,
    created_at) and limited; merged here. A single IN over several tasks would sort all of
    their items first."""
    task_names = [task_names] if isinstance(task_names, str) else list(task_names)
    with service.uow() as uow:
        items = []
        for task_name in task_names:
            query = _scoped(select(WorkItem), task_name, district, department)
            if since is not None:
                query = query.where(WorkItem.created_at > since)
            items += uow.session.scalars(query.order_by(WorkItem.created_at).limit(limit)).all()
        items.sort(key=lambda item: item.created_at)
        total = sum(uow.session.execute(select(*[_capped_count(t, district, department)
                                                 for t in task_names])).one())
    return items[:limit], total


def counts(service, district=None, department=None) -> dict:
    """Open work per task (capped at COUNT_CAP + 1), for the navigation badges: one statement."""
    with service.uow() as uow:
        row = uow.session.execute(select(*[_capped_count(t, district, department).label(t)
                                           for t in TASK_ROLES])).one()
        return {task: n for task, n in row._mapping.items() if n}


def count_label(n: int) -> str:
    """How a capped count reads: "1000+" once it passed the cap (a lower bound then)."""
    return f"{COUNT_CAP}+" if n > COUNT_CAP else str(n)


def _act(service, user, case_no, task_name, data, expected_version=None, note="", act="", also=None, **detail):
    """Complete the case's ``task_name`` task; the audit entry ``dispatch.<act>`` (with
    ``detail``; ``act`` defaults to the data's ``action`` or the task) commits with it, and
    so does whatever ``also(uow)`` adds (attachments)."""
    with service.uow() as uow:
        item = uow.session.scalars(select(WorkItem).where(
            WorkItem.case_no == case_no, WorkItem.task_name == task_name)).first()
        if item is None:
            raise NoSuchTask(f"案件 {case_no} 当前不在“{TASK_NAMES.get(task_name, task_name)}”环节，可能已被他人处理")
        if not may_work(user, item):
            raise NotAllowed("您无权办理该案件的这一环节")
        if task_name == ACCEPT and data.get("decision") == "return" and item.summary.get("fallback"):
            raise Invalid("兜底指定的案件不能退回", "reason")
        try:
            service.runtime.complete(uow, item.id, data, actor=user.display_name,
                                     expected_version=expected_version, note=note, audited=True)
        except TaskNotFound:  # completed by someone else between our read and our write
            raise NoSuchTask(f"案件 {case_no} 已被他人处理，请刷新") from None
        if also is not None:
            also(uow)
        audit.record(uow, user, f"dispatch.{act or data.get('action') or task_name}", case_no, **detail)
        uow.commit()


def _department(code, field="department"):
    if code not in DEPARTMENTS:
        raise Invalid("未知的承办部门", field)
    return {field: code, f"{field}_name": DEPARTMENTS[code]}


def _co_handlers(codes, lead):
    codes = [c for c in dict.fromkeys(codes or []) if c != lead]
    unknown = [c for c in codes if c not in DEPARTMENTS]
    if unknown:
        raise Invalid(f"未知的协办部门：{'、'.join(unknown)}", "co_departments")
    return {"co_departments": codes, "co_department_names": [DEPARTMENTS[c] for c in codes]}


def _text(value, what, field, limit=2000):
    value = (value or "").strip()
    if not value:
        raise Invalid(f"请填写{what}", field)
    if len(value) > limit:
        raise Invalid(f"{what}不超过{limit}个字", field)
    return value


# -- the dispatcher --------------------------------------------------------------------

def _handlers_note(verb, data):
    """Timeline wording for an act that names departments, e.g. 交办：市住建局（协办：市城管局）."""
    note = f"{verb}：{data['department_name']}"
    if data["co_department_names"]:
        note += f"（协办：{'、'.join(data['co_department_names'])}）"
    return note


def _handlers(data):
    """The audit detail of an act that names departments."""
    return {"department": data["department"], "co_departments": data["co_departments"]}


def assign(service, user, case_no, department, co_departments=(), expected_version=None, bulk=False):
    data = {"action": "assign", **_department(department), **_co_handlers(co_departments, department)}
    _act(service, user, case_no, ASSIGN, data, expected_version, note=_handlers_note("交办", data),
         act="assign", **_handlers(data), **({"bulk": True} if bulk else {}))


def send_to_pool(service, user, case_no):
    _act(service, user, case_no, ASSIGN, {"action": "pool"}, note="放入认领池", act="pool")


def send_to_chief(service, user, case_no, note=""):
    note = (note or "").strip()[:500]
    _act(service, user, case_no, ASSIGN, {"action": "chief", "key_case": True, "chief_request": note},
         note="提请首席办事员" + (f"：{note}" if note else ""), act="chief")


def send_to_mediation(service, user, case_no, reason=""):
    """调解优先: the on-site center mediates; no agreement brings the case back here."""
    reason = (reason or "").strip()[:500]
    _act(service, user, case_no, ASSIGN, {"action": "mediation", "mediation_reason": reason},
         note="转人民调解" + (f"：{reason}" if reason else ""), act="mediate")


def merge(service, user, case_no, into):
    """并案: the same problem is already a case; this one ends, and its citizen gets that
    case's reply (intake follows dispatch.case_merged)."""
    into = (into or "").strip()
    if not into or into == case_no:
        raise Invalid("请填写要并入的另一个案件编号", "into")
    with service.uow() as uow:
        target = uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == into, WorkflowInstance.process_id == "dispatch",
            WorkflowInstance.status == "waiting")).first()
        snapshot = service.runtime.snapshot(uow.session, target) if target else None
    if target is None:
        raise Invalid(f"案件 {into} 不存在或已办结，不能并入", "into")
    if "await_rating" in snapshot["active"]:
        # Its reply is being rated (回访): a new reporter would never be asked about it.
        raise Invalid(f"案件 {into} 已答复、正在回访，不能并入", "into")
    district = snapshot["data"].get("district")
    if user.role == "dispatcher" and user.district and district != user.district:
        raise Invalid(f"案件 {into} 不属于您负责的县区", "into")
    _act(service, user, case_no, ASSIGN, {"action": "merge", "merge_into": into}, note=f"并入案件 {into}")


def decide_extension(service, user, case_no, approved: bool, note=""):
    note = (note or "").strip()[:500]
    if not approved and not note:
        raise Invalid("不同意延期时请说明理由", "note")
    _act(service, user, case_no, APPROVE_EXTENSION, {"extension_approved": bool(approved), "extension_note": note},
         note=("同意延期" if approved else "不同意延期") + (f"：{note}" if note else ""),
         act="decide_extension", approved=bool(approved))


def reject(service, user, case_no, reason):
    reason = _text(reason, "不予受理的理由", "reason", 500)
    _act(service, user, case_no, ASSIGN, {"action": "reject", "reject_reason": reason}, note=f"不予受理：{reason}",
         act="reject")


def designate(service, user, case_no, department, co_departments=()):
    """Fallback (兜底): the lead department named here cannot return the case."""
    data = {"fallback": True, **_department(department), **_co_handlers(co_departments, department)}
    _act(service, user, case_no, FALLBACK, data, note=_handlers_note("兜底指定", data), act="designate",
         **_handlers(data))


# -- departments -----------------------------------------------------------------------

def claim(service, user, case_no):
    if not user.department:
        raise NotAllowed("只有承办部门可以认领")
    data = _department(user.department)
    _act(service, user, case_no, CLAIM, data, note=f"认领：{data['department_name']}", act="claim",
         department=user.department)


def accept(service, user, case_no):
    _act(service, user, case_no, ACCEPT, {"decision": "accept"}, note="受理", act="accept")


def return_case(service, user, case_no, reason):
    reason = _text(reason, "退回理由", "reason", 500)
    _act(service, user, case_no, ACCEPT, {"decision": "return", "return_reason": reason}, note=f"退回：{reason}",
         act="return")


def reply(service, user, case_no, text, attachments=()):
    """办理结果; ``attachments`` (stored references, services/common/uploads.py) go on a
    staff timeline entry of their own, with the reply's audit entry."""
    text = _text(text, "办理结果", "reply")
    _act(service, user, case_no, RESOLVE, {"resolve_action": "reply", "reply": text}, note=text, act="reply",
         also=_attachments(service, user, case_no, attachments, "办理结果附件"),
         **_attachment_detail(attachments))


def _attachments(service, user, case_no, refs, title):
    """``also`` for ``_act``: a staff timeline entry naming the files, the files on it."""
    if not refs:
        return None

    def add(uow):
        entry = TimelineEntry(case_no=case_no, at=service.clock.now(), title=title, public=False,
                              detail="、".join(r["filename"] for r in refs), actor=files.uploader(user))
        uow.add(entry)
        files.attach(service, uow, user, case_no, refs, entry)
    return add


def _attachment_detail(refs):
    """Audit detail: which blobs (by key; names are free text and stay out of the log)."""
    return {"attachments": [r["sha256"] for r in refs]} if refs else {}


def request_extension(service, user, case_no, days, reason):
    """延期: asks the dispatcher for ``days`` more working days; approval moves the deadline."""
    reason = _text(reason, "延期理由", "reason", 500)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise Invalid(f"延期天数须为1至{MAX_EXTENSION_DAYS}个工作日", "days")
    _act(service, user, case_no, RESOLVE,
         {"resolve_action": "extend", "extension_days": days, "extension_reason": reason},
         note=f"申请延期{days}个工作日：{reason}", act="extend", days=days)


# -- the chief handler -----------------------------------------------------------------

def instruct(service, user, case_no, department, instruction, co_departments=()):
    instruction = _text(instruction, "批示意见", "instruction", 1000)
    data = {"chief_instruction": instruction, **_department(department),
            **_co_handlers(co_departments, department)}
    _act(service, user, case_no, CHIEF, data, note=f"批示：{instruction}；" + _handlers_note("交办", data),
         act="instruct", **_handlers(data))


# -- reading ---------------------------------------------------------------------------

def case_record(service, case_no):
    with service.uow() as uow:
        instance = uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == case_no, WorkflowInstance.process_id == "dispatch")).first()
        if instance is None:
            return None
        items = uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no)).all()
        timeline = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.case_no == case_no)
                                       .order_by(TimelineEntry.at, TimelineEntry.id)).all()
        snapshot = service.runtime.snapshot(uow.session, instance)
    return {"instance": instance, "items": items, "timeline": timeline, **snapshot}


def diagram_xml(service, record) -> str:
    with service.uow() as uow:
        return service.runtime.diagram_source(uow.session, record["instance"])


def may_read(user, record) -> bool:
    """Dispatchers read their district's cases; departments the cases they lead or help;
    the chief handler the key cases; supervisors (read only: oversight, the audit trail) and
    admins everything; leaders (read only) their district, or everything without one."""
    data = record["data"]
    if user.role in ("admin", "supervisor"):
        return True
    if user.role == "leader":
        return not user.district or data.get("district") == user.district
    if user.role == "dispatcher":
        return not user.district or data.get("district") == user.district
    if user.role == "handler":
        return user.department in (data.get("department"), *data.get("co_departments", [])) or any(
            i.task_name == CLAIM for i in record["items"])
    if user.role == "chief":
        return bool(data.get("key_case"))
    return False


def may_reveal(user, record) -> bool:
    """Who may reveal the citizen's full name and phone (each time explicitly, audited):
    those who work cases and may read this one. Supervisors and leaders see them masked only."""
    return user.role not in READ_ONLY_ROLES and may_read(user, record)


def may_note(user, record) -> bool:
    """Who may add a handling note to an open case: its lead and co-handling departments,
    the district's dispatcher, the chief on key cases, admins."""
    if record["instance"].status == "complete" or not may_read(user, record):
        return False
    if user.role == "handler":
        data = record["data"]
        return user.department in (data.get("department"), *data.get("co_departments", []))
    return user.role in ("dispatcher", "chief", "admin")


def add_note(service, user, case_no, text, attachments=()):
    """办理记录 / 协办意见: a staff-only timeline entry, not a step of the process, with the
    ``attachments`` (stored references) hung on it."""
    text = _text(text, "办理记录", "text", 1000)
    record = case_record(service, case_no)
    if record is None:
        raise NoSuchTask(f"未找到案件 {case_no}")
    if not may_note(user, record):
        raise NotAllowed("您无权为该案件添加办理记录")
    co_handler = user.role == "handler" and user.department in record["data"].get("co_departments", [])
    actor = user.display_name + (f"·{DEPARTMENTS[user.department]}" if user.department in DEPARTMENTS else "")
    with service.uow() as uow:
        entry = TimelineEntry(case_no=case_no, at=service.clock.now(), title="协办意见" if co_handler else "办理记录",
                              detail=text, actor=actor, public=False)
        uow.add(entry)
        if attachments:
            files.attach(service, uow, user, case_no, attachments, entry)
        audit.record(uow, user, "dispatch.note", case_no, **_attachment_detail(attachments))
        uow.commit()


def _co_handled(department, *columns):
    """The department's co_handlers rows joined to their work items, oldest first: a range of
    the index (department, created_at), read in its order (also for the count: a plan that
    filters the whole table instead would cost more as it grows)."""
    return (select(*columns).select_from(CoHandler).join(WorkItem, WorkItem.id == CoHandler.work_item_id)
            .where(CoHandler.department == department).order_by(CoHandler.created_at))


def co_handled(service, department, limit=200):
    """协办案件: open cases that ``department`` helps on (not leads), oldest first, with the
    total (capped: COUNT_CAP). Read from ``co_handlers`` (services/dispatch/co_handling.py),
    each row joined to its work item by key: the list and the count read at most ``limit`` and
    COUNT_CAP + 1 rows, at any number of open cases."""
    with service.uow() as uow:
        items = uow.session.scalars(_co_handled(department, WorkItem).limit(limit)).all()
        found = _co_handled(department, CoHandler.case_no).limit(COUNT_CAP + 1).subquery()
        total = uow.session.scalar(select(func.count()).select_from(found))
    return items, total


def item_json(item):
    return {"case_no": item.case_no, "status": item.task_name, "step": item.title,
            "district": item.district, "department": item.department,
            "created_at": item.created_at.isoformat(), **item.summary}
