"""Stuck work: a set-aside instance is listed for admins, retried after a fix, or cancelled."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import TimelineEntry, WorkflowInstance, WorkItem
from services.common.web.app import create_app

CASE = "210902-20261102-0001"
BODY = {"case_no": CASE, "district": "210902", "name": "张三", "phone": "13800001234", "description": "楼上漏水",
        "category": "", "channel": "web", "location": "", "submitted_at": "2026-11-02T09:00:00+00:00"}


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    load_demo_accounts(service)
    with service.uow() as uow:
        service.runtime.deliver(uow, "intake.case_submitted", BODY, CASE)
        uow.commit()
    return service


def break_and_sweep(service):
    """Corrupt the case's state so its timer step fails; the sweep sets it aside."""
    with service.uow() as uow:
        instance = uow.session.scalars(select(WorkflowInstance)).one()
        good_state, instance.state = instance.state, {**instance.state, "tasks": {}}
        uow.commit()
    service.clock.advance(timedelta(days=1, seconds=1))
    assert service.runtime.fire_due_timers(service.uow) == 0
    return instance.id, good_state


def admin_client(service):
    client = create_app(service).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "admin", "password": DEMO_PASSWORD, "csrf_token": token})
    return client, token


def test_stuck_instance_is_listed_then_retried_after_the_fix(dispatch):
    instance_id, good_state = break_and_sweep(dispatch)
    client, _ = admin_client(dispatch)
    page = client.get("/ops/stuck").get_data(as_text=True)
    assert CASE in page and "无法读取" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    page = client.post(f"/ops/stuck/{instance_id}/retry", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "重试仍失败" in page  # not fixed yet: still set aside
    with dispatch.uow() as uow:  # the fix: e.g. the state restored from a backup
        uow.session.get(WorkflowInstance, instance_id).state = good_state
        uow.commit()
    page = client.post(f"/ops/stuck/{instance_id}/retry", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "已恢复运行" in page
    with dispatch.uow() as uow:
        instance = uow.session.get(WorkflowInstance, instance_id)
        assert instance.status == "waiting" and instance.error is None


def test_stuck_instance_can_be_cancelled_with_a_reason(dispatch):
    instance_id, _ = break_and_sweep(dispatch)
    client, _ = admin_client(dispatch)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ops/stuck").get_data(as_text=True)).group(1)
    page = client.post(f"/ops/stuck/{instance_id}/cancel", data={"csrf_token": token, "reason": ""},
                       follow_redirects=True).get_data(as_text=True)
    assert "撤销须写明理由" in page
    client.post(f"/ops/stuck/{instance_id}/cancel", data={"csrf_token": token, "reason": "重复件，已线下处理"})
    with dispatch.uow() as uow:
        assert uow.session.get(WorkflowInstance, instance_id).status == "cancelled"
        assert uow.session.scalars(select(WorkItem)).all() == []
        entry = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.title == "流程已撤销（运维）")).one()
    assert entry.detail == "重复件，已线下处理"
