"""Dispatch pages: the dispatcher's queue, the department inbox, the case page."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from services.common.reference import DEPARTMENTS, DISTRICTS
from services.common.web.auth import roles_required
from services.common.workflow.runtime import Conflict

from . import cases
from .forms import AssignForm, HandleForm

bp = Blueprint("dispatch", __name__)


def _service():
    return current_app.extensions["fzt"]


@bp.get("/start")
@login_required
def start():
    """Each role lands on its own work list."""
    target = {"handler": "dispatch.inbox"}.get(current_user.role, "dispatch.queue")
    return redirect(url_for(target))


@bp.get("/queue")
@roles_required("dispatcher")
def queue():
    scope = cases.district_scope(current_user)
    district = scope or request.args.get("district") or None
    items, total = cases.queue(_service(), cases.ASSIGN, district=district)
    forms = {}
    for item in items:
        form = AssignForm(formdata=None, case_no=item.case_no,
                          department=item.summary.get("suggested_department") or None)
        forms[item.case_no] = form
    return render_template("dispatch/queue.html", items=items, total=total, forms=forms,
                           district=district, scoped=bool(scope))


@bp.post("/assign")
@roles_required("dispatcher")
def assign():
    form = AssignForm()
    # Back to the same (filtered) queue; only a known district code is echoed.
    district = request.form.get("district")
    back = url_for("dispatch.queue", district=district if district in DISTRICTS else None)
    if not form.validate_on_submit():
        flash("请选择承办部门", "error")
        return redirect(back)
    try:
        cases.assign(_service(), current_user, form.case_no.data, form.department.data)
    except (cases.NoSuchTask, Conflict) as err:
        flash(str(err), "error")
    except cases.NotAllowed:
        abort(403)
    else:
        flash(f"案件 {form.case_no.data} 已交办{DEPARTMENTS[form.department.data]}", "success")
    return redirect(back)


@bp.get("/inbox")
@roles_required("handler")
def inbox():
    department = None if current_user.role == "admin" else current_user.department
    items, total = cases.queue(_service(), cases.HANDLE, department=department)
    return render_template("dispatch/inbox.html", items=items, total=total)


@bp.route("/cases/<case_no>", methods=["GET", "POST"])
@login_required
def case(case_no):
    record = cases.case_record(_service(), case_no)
    if record is None:
        abort(404)
    data = record["data"]
    scope = cases.district_scope(current_user)
    if current_user.role == "dispatcher" and scope and data.get("district") != scope:
        abort(403)
    if current_user.role == "handler" and data.get("department") != current_user.department:
        abort(403)
    handle_form = HandleForm(case_no=case_no)
    if request.method == "POST":
        if handle_form.validate_on_submit():
            try:
                cases.finish_handling(_service(), current_user, case_no, handle_form.reply.data)
            except (cases.NoSuchTask, Conflict) as err:
                flash(str(err), "error")
            except cases.NotAllowed:
                abort(403)
            else:
                flash("办理结果已提交", "success")
                return redirect(url_for("dispatch.case", case_no=case_no))
    return render_template("dispatch/case.html", record=record, data=data, case_no=case_no,
                           handle_form=handle_form, waiting={i.task_name for i in record["items"]})
