"""Mediation pages: the mediator's desk (open 调解 work) and the case page with the 调解 form.

The act goes through ``cases`` (who may act is decided there). A successful POST redirects to
the desk with a flash (PRG); a form with field errors is shown again with the errors next to
the fields (400).
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from services.common import audit
from services.common.reference import DISTRICTS
from services.common.web.auth import roles_required
from services.common.workflow.runtime import Conflict, TaskNotFound

from . import cases, handling
from .forms import OUTCOMES, MediateForm

bp = Blueprint("mediation", __name__)


def _service():
    return current_app.extensions["fzt"]


def nav_links():
    """(endpoint, title, open work) for the current user's work lists."""
    if not current_user.is_authenticated or current_user.role not in (*cases.READERS, "admin"):
        return []
    return [("mediation.desk", "调解工作台", cases.open_count(_service(), cases.district_scope(current_user)))]


@bp.context_processor
def _globals():
    return {"nav_links": nav_links, "OUTCOMES": OUTCOMES, "is_overdue": cases.is_overdue,
            "now": _service().clock.now()}


# -- the desk --------------------------------------------------------------------------

def _district_filter():
    """A mediator with a district sees that district; admins and city-level mediators may filter."""
    scope = cases.district_scope(current_user)
    if scope:
        return scope, True
    chosen = request.args.get("district")
    return (chosen if chosen in DISTRICTS else None), False


@bp.get("/desk")
@roles_required(*cases.READERS)  # reception and leaders read it; the form is on the case page, for mediators
def desk():
    district, scoped = _district_filter()
    items, total, overdue = cases.desk(_service(), district=district)
    secret = handling.confidential_cases(_service(), [i.case_no for i in items])
    visible = [i for i in items if handling.may_see(current_user, secret.get(i.case_no), i.district)]
    return render_template("mediation/desk.html", items=visible, total=total, overdue=overdue,
                           district=district, scoped=scoped, hidden=len(items) - len(visible),
                           confidential=secret)


# -- the case page ---------------------------------------------------------------------

def _record_or_abort(case_no):
    record = cases.case_record(_service(), case_no)
    if record is None:
        abort(404)
    if not cases.may_read(current_user, record):
        abort(403)
    if not handling.may_see(current_user, record["handling"], record["data"].get("district")):
        abort(404)  # a confidential case: not even its existence is shown
    return record


def _form_for(record, case_no):
    """The blank 调解 form if the current user may mediate the case now, else None."""
    for item in record["items"]:
        if item.task_name == cases.MEDIATE and cases.may_work(current_user, item) \
                and handling.may_mediate(current_user, record["handling"]):
            return MediateForm(formdata=None, case_no=case_no)
    return None


def _render_case(record, case_no, form, status=200, revealed=False):
    """``revealed``: the parties' name, phone and unmasked texts (this page load only, after the
    audited reveal POST)."""
    open_work = any(i.task_name == cases.MEDIATE for i in record["items"])
    handled_by = record["handling"]
    return render_template(
        "mediation/case.html", record=record, data=record["data"], case_no=case_no, form=form,
        revealed=revealed, may_reveal=handling.may_reveal(current_user), handling=handled_by,
        may_take=open_work and form is not None and current_user.role == "mediator"
        and (handled_by is None or handled_by.mediator != current_user.username),
        may_change_confidential=open_work and handling.may_change_confidential(
            current_user, handled_by, record["data"].get("district"))), status


@bp.get("/cases/<case_no>")
@login_required
def case(case_no):
    record = _record_or_abort(case_no)
    return _render_case(record, case_no, _form_for(record, case_no))


@bp.post("/cases/<case_no>/mediate")
@roles_required("mediator")
def mediate(case_no):
    form = MediateForm()
    form.case_no.data = case_no
    case_page = url_for("mediation.case", case_no=case_no)

    def refuse(message):
        record = _record_or_abort(case_no)
        if _form_for(record, case_no) is None:
            flash(message, "error")
            return redirect(case_page)
        flash("提交未成功，请按提示修改后再提交。", "error")
        return _render_case(record, case_no, form, 400)  # the filled-in form, with its errors

    if not form.validate_on_submit():
        errors = [e for field in form for e in field.errors]
        return refuse("；".join(errors) or "提交无效，请刷新页面后重试")
    try:
        cases.mediate(_service(), current_user, case_no, form.outcome.data, form.result.data,
                      form.agreement.data)
    except (cases.NoSuchTask, TaskNotFound) as err:
        flash(str(err) if isinstance(err, cases.NoSuchTask) else f"案件 {case_no} 已被他人处理，请查看最新情况",
              "error")
        return redirect(case_page)
    except Conflict:
        flash(f"案件 {case_no} 刚被他人更新，请查看最新情况后再办理", "error")
        return redirect(case_page)
    except cases.NotAllowed:
        abort(403)
    except cases.Invalid as err:
        field = getattr(form, err.field or "result")
        field.errors = [*field.errors, str(err)]
        return refuse(str(err))
    if form.outcome.data == "agreement":
        flash(f"案件 {case_no} 调解成功，结果已告知分拨中心和诉求人", "success")
    else:
        flash(f"案件 {case_no} 未达成协议，已转回分拨中心", "success")
    return redirect(url_for("mediation.desk"))


# -- handling, confidentiality, personal data (services/mediation/handling.py) ------------

def _district_of(record):
    return record["data"].get("district")


@bp.post("/cases/<case_no>/reveal")
@login_required
def reveal(case_no):
    """显示当事人信息: this page load shows the party's name, phone and the full texts; audited."""
    record = _record_or_abort(case_no)
    if not handling.may_reveal(current_user):
        abort(403)
    shown = [f for f in ("name", "phone") if record["data"].get(f)]
    audit.record_now(_service(), current_user, "pii.reveal", case_no, fields=shown)
    return _render_case(record, case_no, _form_for(record, case_no), revealed=True)


@bp.post("/cases/<case_no>/take")
@roles_required("mediator")
def take(case_no):
    """接办 (optionally as a confidential case)."""
    _record_or_abort(case_no)
    if request.form.get("take") != "1":
        abort(400)  # the button's own value: nothing else takes a case
    confidential = request.form.get("confidential") == "1"
    try:
        handling.take(_service(), current_user, case_no, confidential, cases.MEDIATE, cases.may_work)
    except handling.NotOpen as err:
        flash(str(err), "error")
    except handling.NotAllowed:
        abort(403)
    else:
        flash(f"您已接办案件 {case_no}" + ("（保密案件：仅您和中心领导可以查看）" if confidential else ""), "success")
    return redirect(url_for("mediation.case", case_no=case_no))


@bp.post("/cases/<case_no>/confidential")
@login_required
def confidential(case_no):
    """设为保密 / 取消保密: the case's mediator or a leader of the center."""
    record = _record_or_abort(case_no)
    wanted = request.form.get("confidential") == "1"
    try:
        handling.set_confidential(_service(), current_user, case_no, _district_of(record), wanted)
    except handling.NotAllowed:
        abort(403)
    flash("已设为保密案件：仅承办调解员和中心领导可以查看" if wanted else "已取消保密", "success")
    return redirect(url_for("mediation.case", case_no=case_no))
