"""Citizens' pages: the mobile request form, the confirmation, and status lookup."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from marshmallow import ValidationError

from .requests import RequestSchema, find_request, public_timeline, submit_request

bp = Blueprint("citizen", __name__)

WELCOME = ("您好！这里是阜新市“阜政通”诉求服务平台。无论是邻里纠纷、物业维修，还是政策咨询、"
           "投诉建议，请告诉我们，我们会在1个工作日内交办到负责的部门，并全程跟踪办理进度。")
STATUS_NAMES = {"submitted": "已提交，等待分拨", "assigned": "已交办，部门办理中", "handled": "已办结",
                "rejected": "不予受理", "merged": "已合并办理"}


def _service():
    return current_app.extensions["fzt"]


@bp.route("/", methods=["GET", "POST"])
def submit():
    errors, values = {}, {}
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in
                  ("district", "name", "phone", "description", "category", "location")}
        try:
            # An empty field is a missing one, so the citizen reads "请填写…", not "invalid".
            data = RequestSchema().load({**{k: v for k, v in values.items() if v.strip()}, "channel": "web"})
        except ValidationError as err:
            errors = err.messages
        else:
            created = submit_request(_service(), data)
            # Shown once on the next page; the citizen is told to note it down.
            session["just_submitted"] = [created.case_no, created.tracking_code]
            return redirect(url_for("citizen.submitted"))
    return render_template("intake/submit.html", welcome=WELCOME, errors=errors, values=values), (
        400 if errors else 200)


@bp.get("/submitted")
def submitted():
    pair = session.get("just_submitted")
    if not pair:
        return redirect(url_for("citizen.submit"))
    return render_template("intake/submitted.html", case_no=pair[0], tracking_code=pair[1])


@bp.route("/status", methods=["GET", "POST"])
def status():
    case_no = request.values.get("case_no", "").strip()
    code = request.values.get("tracking_code", "").strip()
    found, timeline, not_found = None, [], False
    if case_no and code:
        found = find_request(_service(), case_no, code)
        if found is None:
            not_found = True
        else:
            timeline = public_timeline(_service(), found.case_no)
    return render_template("intake/status.html", case_no=case_no, tracking_code=code, found=found,
                           timeline=timeline, not_found=not_found, status_names=STATUS_NAMES), (
        404 if not_found else 200)
