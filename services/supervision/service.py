"""The supervision service: watches deadlines; each breach reported by dispatch, and each
case a dissatisfied citizen reopened (回访 不满意), becomes an urging task (催办) for
supervisors, as bpmn/supervision.bpmn says."""
from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, TextAreaField
from wtforms.validators import DataRequired, Length

from services.common.models import WorkItem
from services.common.service import Listeners, ServiceDefinition
from services.common.web.auth import roles_required
from services.common.workflow.handlers import HandlerRegistry
from services.common.workflow.runtime import Conflict, TaskNotFound

bp = Blueprint("supervision", __name__)


class UrgeForm(FlaskForm):
    item_id = HiddenField(validators=[DataRequired()])
    note = TextAreaField("催办意见", validators=[DataRequired("请填写催办意见"), Length(max=1000)])


@bp.get("/board")
@roles_required("supervisor", "leader")  # leaders read it; only supervisors urge
def board():
    service = current_app.extensions["fzt"]
    with service.uow() as uow:
        items = uow.session.scalars(select(WorkItem).where(WorkItem.task_name == "urge")
                                    .order_by(WorkItem.created_at).limit(200)).all()
    may_urge = current_user.role != "leader"
    return render_template("supervision/board.html", items=items,
                           forms={i.id: UrgeForm(formdata=None, item_id=i.id) for i in items} if may_urge else {})


@bp.post("/urge")
@roles_required("supervisor")
def urge():
    form = UrgeForm()
    if form.validate_on_submit():
        service = current_app.extensions["fzt"]
        try:
            with service.uow() as uow:
                service.runtime.complete(uow, form.item_id.data, {"urge_note": form.note.data}, note=form.note.data,
                                         actor=current_user.display_name)
                uow.commit()
            flash("催办意见已记录", "success")
        except (TaskNotFound, Conflict) as err:
            flash(f"该事项已处理或已变更：{err}", "error")
    else:
        flash("请填写催办意见", "error")
    return redirect(url_for("supervision.board"))


definition = ServiceDefinition(
    name="supervision", title="督查督办", service_tasks=HandlerRegistry(), listeners=Listeners(),
    forms={"urge": UrgeForm}, blueprints=lambda: [bp], home_endpoint="supervision.board",
    summary_keys=("stage", "comment"),
)
