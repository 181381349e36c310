"""Dispatch pages: the dispatcher's queue, the claim pool, the chief handler's board, the
department inbox and the case page with the forms for whatever the user may do right now.

Every act goes through ``cases`` (the same commands as the JSON API); who may act is decided
there. Each POST redirects back to the page it came from with a flash (PRG), except a form
with field errors on the case page, which is shown again with the errors next to the fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Callable
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_login import current_user, login_required
from markupsafe import Markup

from services.common import audit, uploads
from services.common.blobs import store_for
from services.common.reference import DEPARTMENTS, DISTRICTS
from services.common.web.auth import roles_required
from services.common.workflow.runtime import Conflict, TaskNotFound

from . import duplicates
from .forms import CaseForm

from . import cases, files
from .forms import (AcceptForm, AssignForm, BulkAssignForm, MergeForm, ChiefForm, ClaimForm, DesignateForm, ExtensionDecisionForm,
                    ExtensionForm, InstructForm, LEAD_DEPARTMENT_CHOICES, MediationForm, NoteForm, PoolForm, RejectForm,
                    ReplyForm, ReturnForm)

bp = Blueprint("dispatch", __name__)


@bp.context_processor
def _platform_now():
    # Deadline badges compare with the platform clock (which tests and demos move).
    return {"platform_now": current_app.extensions["fzt"].clock.now()}


def _service():
    return current_app.extensions["fzt"]


def _names(codes):
    return "、".join(DEPARTMENTS.get(c, c) for c in codes)


def _co(form):
    co = [c for c in form.co_departments.data or [] if c != form.department.data]
    return f"（协办：{_names(co)}）" if co else ""


@dataclass(frozen=True)
class Act:
    task: str | None                # the user task it completes (None: not a process step)
    form: type                      # its form (services/dispatch/forms.py)
    run: Callable                   # (service, user, case_no, form) -> None
    done: Callable                  # (case_no, form) -> the success message
    field: str | None = None        # where a cases.Invalid message is shown
    files: bool = False             # takes attachments: run gets their stored references too


ACTS = {
    "note": Act(None, NoteForm, lambda s, u, n, f, a: cases.add_note(s, u, n, f.text.data, a),
                lambda n, f: "办理记录已添加", "text", files=True),
    "assign": Act(cases.ASSIGN, AssignForm,
                  lambda s, u, n, f: cases.assign(s, u, n, f.department.data, f.co_departments.data),
                  lambda n, f: f"案件 {n} 已交办{DEPARTMENTS[f.department.data]}{_co(f)}", "department"),
    "pool": Act(cases.ASSIGN, PoolForm, lambda s, u, n, f: cases.send_to_pool(s, u, n),
                lambda n, f: f"案件 {n} 已放入认领池，各部门均可认领；1天内无人认领将退回分拨队列"),
    "chief": Act(cases.ASSIGN, ChiefForm, lambda s, u, n, f: cases.send_to_chief(s, u, n, f.note.data),
                 lambda n, f: f"案件 {n} 已作为重点案件提请首席办事员批示", "note"),
    "mediate": Act(cases.ASSIGN, MediationForm, lambda s, u, n, f: cases.send_to_mediation(s, u, n, f.reason.data),
                   lambda n, f: f"案件 {n} 已转人民调解，由综治中心组织调解；未达成协议的将退回分拨队列", "reason"),
    "merge": Act(cases.ASSIGN, MergeForm, lambda s, u, n, f: cases.merge(s, u, n, f.into.data),
                 lambda n, f: f"案件 {n} 已并入案件 {f.into.data.strip()}，办理结果将一并答复诉求人", "into"),
    "reject": Act(cases.ASSIGN, RejectForm, lambda s, u, n, f: cases.reject(s, u, n, f.reason.data),
                  lambda n, f: f"案件 {n} 已不予受理，理由将告知诉求人", "reason"),
    "designate": Act(cases.FALLBACK, DesignateForm,
                     lambda s, u, n, f: cases.designate(s, u, n, f.department.data, f.co_departments.data),
                     lambda n, f: f"案件 {n} 已兜底指定{DEPARTMENTS[f.department.data]}{_co(f)}办理，该部门不能再退回",
                     "department"),
    "claim": Act(cases.CLAIM, ClaimForm, lambda s, u, n, f: cases.claim(s, u, n),
                 lambda n, f: f"已认领案件 {n}，请在“部门待办”中受理"),
    "instruct": Act(cases.CHIEF, InstructForm,
                    lambda s, u, n, f: cases.instruct(s, u, n, f.department.data, f.instruction.data,
                                                      f.co_departments.data),
                    lambda n, f: f"已批示，案件 {n} 交由{DEPARTMENTS[f.department.data]}{_co(f)}办理", "instruction"),
    "accept": Act(cases.ACCEPT, AcceptForm, lambda s, u, n, f: cases.accept(s, u, n),
                  lambda n, f: f"已受理案件 {n}，办结后请填写办理结果"),
    "return": Act(cases.ACCEPT, ReturnForm, lambda s, u, n, f: cases.return_case(s, u, n, f.reason.data),
                  lambda n, f: f"案件 {n} 已退回分拨员", "reason"),
    "reply": Act(cases.RESOLVE, ReplyForm, lambda s, u, n, f, a: cases.reply(s, u, n, f.reply.data, a),
                 lambda n, f: f"案件 {n} 的办理结果已提交，诉求人可查看", "reply", files=True),
    "extend": Act(cases.RESOLVE, ExtensionForm,
                  lambda s, u, n, f: cases.request_extension(s, u, n, f.days.data, f.reason.data),
                  lambda n, f: f"案件 {n} 已申请延期{f.days.data}个工作日，待分拨员审批；审批前暂不能提交办理结果",
                  "reason"),
    "decide_extension": Act(cases.APPROVE_EXTENSION, ExtensionDecisionForm,
                            lambda s, u, n, f: cases.decide_extension(s, u, n, f.decision.data == "approve",
                                                                      f.note.data),
                            lambda n, f: f"已同意案件 {n} 延期，办理时限已顺延" if f.decision.data == "approve"
                            else f"已不同意案件 {n} 延期，承办部门须按原时限办结", "note"),
}
# The acts offered on the case page for each open user task, in the order shown.
TASK_ACTS = {
    cases.ASSIGN: ("assign", "pool", "chief", "mediate", "merge", "reject"),
    cases.FALLBACK: ("designate",),
    cases.CLAIM: ("claim",),
    cases.CHIEF: ("instruct",),
    cases.ACCEPT: ("accept", "return"),
    cases.RESOLVE: ("reply", "extend"),
    cases.APPROVE_EXTENSION: ("decide_extension",),
}
QUEUE_TASKS = (cases.ASSIGN, cases.FALLBACK, cases.APPROVE_EXTENSION)  # the dispatcher's work
LISTS = {  # work list -> (task names, title)
    "queue": (QUEUE_TASKS, "分拨队列"),
    "pool": ((cases.CLAIM,), "认领池"),
    "chief": ((cases.CHIEF,), "首席批示"),
    "inbox": ((cases.ACCEPT, cases.RESOLVE), "部门待办"),
}
LIST_ROLES = {"queue": ("dispatcher",), "pool": ("handler",), "chief": ("chief",), "inbox": ("handler",)}


def blank_form(act, case_no, **data):
    return ACTS[act].form(formdata=None, case_no=case_no, **data)


def suggested_department(item):
    """The department a 交办 form preselects: the DMN's suggestion, unless the suggested
    department is the one that just returned the case."""
    suggested = item.summary.get("suggested_department") or None
    if item.summary.get("return_count") and suggested == item.department:
        suggested = None
    return suggested


@lru_cache(maxsize=64)  # one entry per department, and None
def department_options(selected: str | None) -> Markup:
    """The 承办部门 ``<option>``s of a queue row's inline form, rendered once per preselection:
    the queue lists up to 200 rows, and a WTForms form and select per row were most of the
    page's time (docs/benchmarks.md, fourth round)."""
    option = Markup('<option value="{}"{}>{}</option>')
    return Markup("").join(option.format(value, Markup(" selected") if value == (selected or "") else "", label)
                           for value, label in LEAD_DEPARTMENT_CHOICES)


# -- navigation ------------------------------------------------------------------------

def nav_links():
    """(endpoint, title, open work) for the current user's work lists (one or two count queries)."""
    user = current_user
    if not user.is_authenticated:
        return []
    service, role = _service(), user.role
    city_wide = role in ("admin", "chief", "handler") or (role == "dispatcher" and not user.district)
    everywhere = cases.counts(service) if city_wide else {}
    links = []
    if role in ("dispatcher", "admin"):
        mine = cases.counts(service, district=user.district) if role == "dispatcher" and user.district else everywhere
        links.append(("dispatch.queue", "分拨队列", sum(mine.get(t, 0) for t in QUEUE_TASKS)))
    if role in ("handler", "admin"):
        links.append(("dispatch.pool", "认领池", everywhere.get(cases.CLAIM, 0)))
    if role in ("chief", "admin"):
        links.append(("dispatch.chief", "首席批示", everywhere.get(cases.CHIEF, 0)))
    if role in ("handler", "admin"):
        mine = cases.counts(service, department=user.department) if role == "handler" else everywhere
        links.append(("dispatch.inbox", "部门待办", mine.get(cases.ACCEPT, 0) + mine.get(cases.RESOLVE, 0)))
    return links


def extension_dates(values):
    """(current resolve deadline, the deadline if the requested extension is approved) of a
    case's data or an approval item's summary; (None, None) when unknown."""
    try:
        due = datetime.fromisoformat(values["resolve_due"])
        return due, _service().calendar.add_workdays(due, int(values["extension_days"]))
    except (KeyError, TypeError, ValueError):
        return None, None


bp.add_app_template_filter(cases.count_label, "count_label")  # capped totals read "1000+"


@bp.context_processor
def _nav():
    return {"nav_links": nav_links, "TASK_NAMES": cases.TASK_NAMES, "extension_dates": extension_dates}


def landing():
    return {"dispatcher": "dispatch.queue", "admin": "dispatch.queue", "handler": "dispatch.inbox",
            "chief": "dispatch.chief"}.get(current_user.role)


@bp.get("/start")
@login_required
def start():
    """Each role lands on its own work list."""
    target = landing()
    if target is None:
        abort(403)
    return redirect(url_for(target))


# -- work lists ------------------------------------------------------------------------

def _district_filter():
    """A dispatcher sees their district; admins and city-level staff may filter."""
    scope = cases.district_scope(current_user) if current_user.role == "dispatcher" else None
    if scope:
        return scope, True
    chosen = request.args.get("district")
    return (chosen if chosen in DISTRICTS else None), False


@bp.get("/queue")
@roles_required("dispatcher")
def queue():
    district, scoped = _district_filter()
    task = request.args.get("task")
    task = task if task in QUEUE_TASKS else None
    service = _service()
    counts = cases.counts(service, district=district)
    items, total = cases.queue(service, task or QUEUE_TASKS, district=district)
    # Rows carry plain inputs (macro act_hidden), not a form object each; the posted act is
    # validated by its form.
    options = {i.case_no: department_options(suggested_department(i) if i.task_name == cases.ASSIGN else None)
               for i in items if i.task_name != cases.APPROVE_EXTENSION}
    dupes = duplicates.flagged(service, [i.case_no for i in items if i.task_name == cases.ASSIGN])
    return render_template("dispatch/queue.html", items=items, total=total, options=options, counts=counts,
                           dupes=dupes, district=district, scoped=scoped, task=task,
                           bulk=BulkAssignForm(formdata=None))


MAX_BULK = 100


@bp.post("/bulk-assign")
@roles_required("dispatcher")
def bulk_assign():
    """批量交办: each case is assigned on its own, so one that someone else took meanwhile is
    reported and the others still go through."""
    form = BulkAssignForm()
    back = _safe_next(request.form.get("next")) or url_for("dispatch.queue")
    if not form.validate_on_submit():
        flash("；".join(e for f in form for e in f.errors) or "提交无效，请刷新页面后重试", "error")
        return redirect(back)
    case_nos = list(dict.fromkeys(form.case_nos.data))[:MAX_BULK]
    done, failed = [], []
    for case_no in case_nos:
        try:
            cases.assign(_service(), current_user, case_no, form.department.data, bulk=True)
            done.append(case_no)
        except (cases.NoSuchTask, cases.NotAllowed, cases.Invalid, Conflict, TaskNotFound) as err:
            failed.append(f"{case_no}（{err}）")
    if done:
        flash(f"已交办{DEPARTMENTS[form.department.data]} {len(done)} 件：{'、'.join(done)}", "success")
    if failed:
        flash(f"{len(failed)} 件未交办：{'；'.join(failed)}", "error")
    return redirect(back)


@bp.get("/pool")
@roles_required("handler")
def pool():
    district, _ = _district_filter()
    items, total = cases.queue(_service(), cases.CLAIM, district=district)
    return render_template("dispatch/pool.html", items=items, total=total, district=district,
                           may_claim=bool(current_user.department))


@bp.get("/chief")
@roles_required("chief")
def chief():
    items, total = cases.queue(_service(), cases.CHIEF)
    return render_template("dispatch/chief.html", items=items, total=total)


@bp.get("/inbox")
@roles_required("handler")
def inbox():
    department = current_user.department if current_user.role == "handler" else request.args.get("department")
    department = department if department in DEPARTMENTS else None
    if current_user.role == "handler" and department is None:
        abort(403)  # a handler account without a department has no inbox
    service = _service()
    to_accept, accept_total = cases.queue(service, cases.ACCEPT, department=department)
    in_progress, resolve_total = cases.queue(service, cases.RESOLVE, department=department)
    # Cases waiting for the dispatcher's decision on an extension: not the department's work
    # right now, but it must not look as if they had vanished.
    waiting, waiting_total = cases.queue(service, cases.APPROVE_EXTENSION, department=department)
    # 协办案件: cases another department leads and this one helps on (a note with attachments).
    co_handled, co_total = cases.co_handled(service, department) if department else ([], 0)
    return render_template("dispatch/inbox.html", to_accept=to_accept, accept_total=accept_total,
                           in_progress=in_progress, resolve_total=resolve_total, waiting=waiting,
                           waiting_total=waiting_total, co_handled=co_handled, co_total=co_total,
                           department=department)


# -- the case page ---------------------------------------------------------------------

def _record_or_abort(case_no):
    record = cases.case_record(_service(), case_no)
    if record is None:
        abort(404)
    if not cases.may_read(current_user, record):
        abort(403)
    return record


def _forms_for(record, case_no):
    """The blank forms for what the current user may do on the case right now."""
    data, forms = record["data"], {}
    for item in record["items"]:
        if not cases.may_work(current_user, item):
            continue
        for act in TASK_ACTS.get(item.task_name, ()):
            if act == "return" and (item.summary.get("fallback") or data.get("fallback")):
                continue  # a designated (兜底) department cannot return the case
            if act == "claim" and not current_user.department:
                continue  # only a department can claim (the claimer becomes the lead)
            if act == "assign":
                forms[act] = blank_form(act, case_no, department=suggested_department(item))
            elif act == "instruct":
                forms[act] = blank_form(act, case_no, department=data.get("suggested_department") or None)
            else:
                forms[act] = blank_form(act, case_no)
    if cases.may_note(current_user, record):
        forms["note"] = blank_form("note", case_no)
    return forms


def _render_case(record, case_no, forms, status=200, revealed=False):
    """``revealed``: the citizen's name and phone in full (this page load only, after the
    audited reveal POST); masked otherwise."""
    back = {"handler": "dispatch.inbox", "chief": "dispatch.chief", "supervisor": "audit.search",
            "leader": None}.get(current_user.role, "dispatch.queue")  # leaders: no work list here
    if current_user.role == "handler" and "claim" in forms:
        back = "dispatch.pool"
    trail = audit.for_case(_service(), case_no) if current_user.role in audit.AUDIT_ROLES else None
    case_files = files.for_case(_service(), case_no)
    return render_template("dispatch/case.html", record=record, data=record["data"], case_no=case_no,
                           forms=forms, back=back, back_title=BACK_TITLES.get(back),
                           photos=[f for f in case_files if f.kind == files.PHOTO],
                           attachments=[f for f in case_files if f.kind == files.ATTACHMENT],
                           attachment_policy=uploads.attachment_policy(_service().settings),
                           refusal=_extension_refusal(record), revealed=revealed, trail=trail,
                           may_reveal=cases.may_reveal(current_user, record)), status


def _extension_refusal(record):
    """The dispatcher's reason for refusing the last extension request, or None."""
    data = record["data"]
    if data.get("extension_approved") is not False or any(
            i.task_name == cases.APPROVE_EXTENSION for i in record["items"]):
        return None
    return data.get("extension_note") or "（未说明）"


BACK_TITLES = {"dispatch.queue": "分拨队列", "dispatch.pool": "认领池", "dispatch.chief": "首席批示",
               "dispatch.inbox": "部门待办", "audit.search": "审计日志"}


@bp.get("/cases/<case_no>")
@login_required
def case(case_no):
    record = _record_or_abort(case_no)
    return _render_case(record, case_no, _forms_for(record, case_no))


def _duplicate_forms(record, case_no, forms):
    """疑似重复 on the case page: while it waits for 交办, its open flags, each candidate with
    a 并入 form (the merge act, prefilled) when the user may merge."""
    if not any(i.task_name == cases.ASSIGN for i in record["items"]):
        return []
    return [(c, blank_form("merge", case_no, into=c.flag.candidate_no) if "merge" in forms and c.open else None)
            for c in duplicates.open_flags(_service(), case_no)]


@bp.context_processor
def _duplicates():
    return {"duplicate_candidates": _duplicate_forms}


@bp.post("/cases/<case_no>/duplicates/dismiss")
@roles_required("dispatcher")
def dismiss_duplicates(case_no):
    """不是重复: the flags go away (audited); the case stays in the queue."""
    _record_or_abort(case_no)
    form = CaseForm()  # nothing but the case number and the CSRF token
    if not form.validate_on_submit():
        abort(400)
    try:
        n = duplicates.dismiss(_service(), current_user, case_no, cases.may_work)
    except PermissionError:
        abort(403)
    flash(f"已排除 {n} 条疑似重复提示" if n else "没有待处理的疑似重复提示", "success")
    return redirect(url_for("dispatch.case", case_no=case_no))


@bp.post("/cases/<case_no>/reveal")
@login_required
def reveal(case_no):
    """显示完整号码: this page load shows the citizen's name and phone in full; audited."""
    record = _record_or_abort(case_no)
    if not cases.may_reveal(current_user, record):
        abort(403)
    shown = [f for f in ("name", "phone") if record["data"].get(f)]
    audit.record_now(_service(), current_user, "pii.reveal", case_no, fields=shown)
    return _render_case(record, case_no, _forms_for(record, case_no), revealed=True)


@bp.get("/cases/<case_no>/files/<sha256>")
@login_required
def case_file(case_no, sha256):
    """A photo or attachment of the case (``?thumbnail=1``: its small version), for those
    who may read the case; a key that is not this case's file is 404 (docs/uploads.md)."""
    _record_or_abort(case_no)
    found = files.find(_service(), case_no, sha256)
    if found is None:
        abort(404)
    thumbnail = request.args.get("thumbnail") == "1" and found.thumbnail_sha256
    return uploads.send_blob(store_for(_service().settings), thumbnail or found.sha256, found.filename)


@bp.get("/cases/<case_no>/diagram.bpmn")
@login_required
def case_diagram(case_no):
    """The diagram version this case runs on, for the viewer on the case page."""
    record = _record_or_abort(case_no)
    return Response(cases.diagram_xml(_service(), record), mimetype="application/xml")


def _safe_next(value):
    """A same-app path to go back to (a work list with its filters), or None."""
    if not value or not value.startswith(request.script_root + "/") or value.startswith("//") or "\\" in value:
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


@bp.post("/cases/<case_no>/<act>")
@login_required
def act_on_case(case_no, act):
    if act not in ACTS:
        abort(404)
    return _perform(case_no, act)


@bp.post("/assign")
@login_required
def assign():
    """The queue's inline 交办 form (kept at its old address)."""
    case_no = request.form.get("case_no", "")
    if not case_no:
        abort(400)
    return _perform(case_no, "assign")


def _chinese_choice_error(field, message):
    if "valid choice" in message or "Invalid Choice" in message:
        return f"请从列表中选择{field.label.text.split('（')[0]}"
    if "valid integer" in message:
        return "请填写整数"
    return message


def _perform(case_no, act_name):
    act = ACTS[act_name]
    form = act.form()
    form.case_no.data = case_no
    inline = _safe_next(request.form.get("next"))  # posted from a work list: go back there
    case_page = url_for("dispatch.case", case_no=case_no)
    back = inline or case_page

    def refuse(message):
        if inline:
            flash(f"案件 {case_no}：{message}", "error")
            return redirect(back)
        record = _record_or_abort(case_no)
        forms = _forms_for(record, case_no)
        if act_name in forms:
            forms[act_name] = form  # the filled-in form, with its errors
            flash("提交未成功，请按提示修改后再提交。", "error")
            return _render_case(record, case_no, forms, 400)
        flash(message, "error")
        return redirect(case_page)

    if not form.validate_on_submit():
        for field in form:  # WTForms' own choice messages are English (only a tampered post sees them)
            field.errors = [_chinese_choice_error(field, e) for e in field.errors]
        errors = [e for field in form for e in field.errors]
        return refuse("；".join(errors) or "提交无效，请刷新页面后重试")
    stored = ()
    if act.files:
        try:  # every file is checked before any is stored or the act runs
            checked = uploads.read_uploads(form.attachments.data or [],
                                           uploads.attachment_policy(_service().settings))
        except uploads.UploadRejected as err:
            form.attachments.errors = [str(err)]
            return refuse(str(err))
        stored = (uploads.store_uploads(store_for(_service().settings), checked),)
    try:
        act.run(_service(), current_user, case_no, form, *stored)
    except (cases.NoSuchTask, TaskNotFound) as err:
        message = str(err) if isinstance(err, cases.NoSuchTask) else \
            f"案件 {case_no} 已被他人处理，请查看最新情况"
        flash(message, "error")
        return redirect(back)
    except Conflict:
        flash(f"案件 {case_no} 刚被他人更新，请查看最新情况后再办理", "error")
        return redirect(back)
    except cases.NotAllowed:
        abort(403)
    except cases.Invalid as err:
        message = str(err)
        if act.field:
            target = "co_departments" if "协办" in message and hasattr(form, "co_departments") else act.field
            getattr(form, target).errors = [*getattr(form, target).errors, message]
        return refuse(message)
    flash(act.done(case_no, form), "success")
    if not inline:
        record = cases.case_record(_service(), case_no)
        if record is None or not cases.may_read(current_user, record):
            return redirect(url_for("dispatch.start"))
    return redirect(back)
