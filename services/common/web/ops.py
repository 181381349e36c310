"""Stuck work (运维): workflow instances set aside as ``error`` — their reason and position —
with retry after a fix, or cancel with a reason. Every service has the page, for admins.

Diagrams: the deployed versions of the service's diagram and a deploy of the files in
``bpmn/`` (what ``fzt bpmn deploy`` does), for process designers and admins; audited."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import audit
from ..db import Conflict
from ..models import DeployedSpec, WorkflowInstance
from ..workflow.specs import DiagramError, content_hash, read_sources
from ..workflow.runtime import TaskNotFound
from .auth import roles_required

bp = Blueprint("ops", __name__, url_prefix="/ops")


def _service():
    return current_app.extensions["fzt"]


def _position(service, session, instance):
    """The steps the instance was at, or the reason they cannot be read."""
    try:
        return "、".join(service.runtime.snapshot(session, instance)["active"]) or "—"
    except Exception as err:  # a corrupt state is exactly what this page is for
        return f"（无法读取：{type(err).__name__}）"


@bp.get("/stuck")
@roles_required("admin")
def stuck():
    service = _service()
    with service.uow() as uow:
        instances = uow.session.scalars(select(WorkflowInstance).where(WorkflowInstance.status == "error")
                                        .order_by(WorkflowInstance.updated_at).limit(500)).all()
        rows = [(i, _position(service, uow.session, i)) for i in instances]
    return render_template("ops_stuck.html", rows=rows)


@bp.post("/stuck/<int:instance_id>/retry")
@roles_required("admin")
def retry(instance_id):
    service = _service()
    try:
        with service.uow() as uow:
            instance = service.runtime.retry(uow, instance_id)
            uow.commit()
        flash(f"案件 {instance.case_no} 的流程已恢复运行", "success")
    except (TaskNotFound, Conflict) as err:
        flash(f"无法重试：{err}", "error")
    except Exception as err:  # still broken: keep it set aside with the new reason
        service.runtime._set_aside(service.uow, instance_id, err)
        flash(f"重试仍失败：{type(err).__name__}: {err}", "error")
    return redirect(url_for("ops.stuck"))


@bp.post("/stuck/<int:instance_id>/cancel")
@roles_required("admin")
def cancel(instance_id):
    reason = (request.form.get("reason") or "").strip()
    if not reason:
        flash("撤销须写明理由", "error")
        return redirect(url_for("ops.stuck"))
    service = _service()
    try:
        with service.uow() as uow:
            instance = service.runtime.cancel(uow, instance_id, reason, current_user.display_name)
            uow.commit()
        flash(f"案件 {instance.case_no} 的流程已撤销", "success")
    except (TaskNotFound, Conflict) as err:
        flash(f"无法撤销：{err}", "error")
    return redirect(url_for("ops.stuck"))


@bp.get("/diagrams")
@roles_required("process_designer")
def diagrams():
    service = _service()
    with service.uow() as uow:
        versions = uow.session.scalars(select(DeployedSpec).where(DeployedSpec.process_id == service.name)
                                       .order_by(DeployedSpec.version.desc()).limit(50)).all()
    sources = read_sources(service.settings.bpmn_dir, service.name) if service.has_diagram else {}
    return render_template("ops_diagrams.html", versions=versions, files=sorted(sources),
                           on_disk=content_hash(sources) if sources else None)


@bp.post("/diagrams/deploy")
@roles_required("process_designer")
def deploy_diagrams():
    """Validate and deploy; running cases stay on their version, new cases take this one."""
    service = _service()
    try:
        spec_hash, new = service.deploy()
    except DiagramError as err:
        flash(f"流程图未通过检查，未部署：{err}", "error")
        return redirect(url_for("ops.diagrams"))
    if not spec_hash:
        flash("本服务没有流程图", "error")
    elif not new:
        flash(f"当前版本已是这份流程图（{spec_hash[:12]}），无需部署", "info")
    else:
        audit.record_now(service, current_user, "diagram.deploy", hash=spec_hash[:12])
        flash(f"流程图已部署（{spec_hash[:12]}）：新案件按新版本办理，已在办的案件仍按原版本", "success")
    return redirect(url_for("ops.diagrams"))
