"""Staff pages of the satisfaction callback (回访): the work list of cases waiting for a
rating, and the intake side of a case (ratings, notifications sent, the operator's form).

Callback operators (intake_operator) call the citizen and enter the rating; the phone is
masked until they reveal it on purpose (audited ``pii.reveal``). Supervisors read the page
(ratings, notifications) with personal data masked.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from services.common import audit
from services.common.db import Conflict
from services.common.web.auth import roles_required

from . import callback, notify
from .models import CitizenRequest

bp = Blueprint("callback", __name__)

READER_ROLES = (*callback.CALLBACK_ROLES, "supervisor")


def _service():
    return current_app.extensions["fzt"]


@bp.get("/staff/callbacks")
@roles_required(*callback.CALLBACK_ROLES)
def work_list():
    overdue, waiting = callback.callback_list(_service())
    return render_template("intake/staff_callbacks.html", overdue=overdue, waiting=waiting)


def _case_or_404(case_no):
    with _service().uow() as uow:
        request = uow.session.get(CitizenRequest, case_no)
        if request is None:
            abort(404)
        return {"request": request, "ratings": callback.ratings_of(uow.session, case_no),
                "notifications": notify.for_case(uow.session, case_no),
                "item": callback.open_rating_item(uow.session, case_no)}


def _may_rate() -> bool:
    return current_user.role in (*callback.CALLBACK_ROLES, "admin")


def _render(case, form=None, revealed=False, status=200):
    if form is None and case["item"] is not None and _may_rate():
        form = callback.CallbackForm(formdata=None)
    return render_template(
        "intake/staff_case.html", case=case, citizen=case["request"], rating_form=form,
        rating_action=url_for("callback.rate_case", case_no=case["request"].case_no),
        rating_title="录入回访结果", revealed=revealed, may_reveal=_may_rate(),
        RATING_NAMES=callback.RATING_NAMES, SOURCE_NAMES=callback.SOURCE_NAMES,
        KIND_NAMES=notify.KIND_NAMES, CHANNEL_NAMES=notify.CHANNEL_NAMES,
        recipient=notify.mask_recipient, staff_body=notify.staff_body), status


@bp.get("/staff/cases/<case_no>")
@roles_required(*READER_ROLES)
def case_page(case_no):
    return _render(_case_or_404(case_no))


@bp.post("/staff/cases/<case_no>/rate")
@roles_required(*callback.CALLBACK_ROLES)
def rate_case(case_no):
    case = _case_or_404(case_no)
    form = callback.CallbackForm()
    if not form.validate_on_submit():
        return _render(case, form, status=400)
    try:
        callback.submit_rating(_service(), case_no, form.rating.data, form.comment.data, operator=current_user)
    except (callback.NotRatable, Conflict):
        flash("该案件已评价或已变更，请刷新后查看", "error")
        return redirect(url_for("callback.case_page", case_no=case_no))
    flash(f"已录入回访结果：{callback.RATING_NAMES[form.rating.data]}", "success")
    return redirect(url_for("callback.work_list"))


@bp.post("/staff/cases/<case_no>/reveal")
@roles_required(*callback.CALLBACK_ROLES)
def reveal(case_no):
    """显示完整号码 for the call: this page load shows the name and phone in full; audited."""
    case = _case_or_404(case_no)
    audit.record_now(_service(), current_user, "pii.reveal", case_no, fields=["name", "phone"])
    return _render(case, revealed=True)
