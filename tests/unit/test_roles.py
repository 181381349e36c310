"""What the newer roles do (docs/security.md, "Roles"): grid workers and operators file on a
citizen's behalf, process designers deploy diagrams, leaders and the center's reception
read without acting. Who may reach which route at all: test_route_matrix.py."""
from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from services.common.config import REPO_ROOT
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import AuditEntry, DeployedSpec
from services.common.web.app import create_app


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html).group(1)


def logged_in(app, username):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 302, username
    return client


def post(client, url, **data):
    return client.post(url, data={"csrf_token": csrf_from(client.get("/login").get_data(as_text=True)), **data})


def audit_entries(service, action):
    with service.uow() as uow:
        return uow.session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


CITIZEN = dict(name="张三", phone="13800001234", description="小区门口路灯坏了一个多月", category="", location="")


@pytest.fixture
def intake(build_service):
    service = build_service("intake")
    load_demo_accounts(service)
    return service


def test_grid_worker_files_in_their_own_district_through_the_grid_channel(intake):
    from services.intake.models import CitizenRequest
    app = create_app(intake)
    client = logged_in(app, "wangge_haizhou")
    page = client.get("/staff/file").get_data(as_text=True)
    assert "网格员代诉" in page and "来电" not in page  # the only channel a grid worker has
    response = post(client, "/staff/file", channel="grid", district="210903", **CITIZEN)  # district ignored
    assert response.status_code == 302
    receipt = client.get(response.headers["Location"]).get_data(as_text=True)
    with intake.uow() as uow:
        filed = uow.session.scalars(select(CitizenRequest)).one()
    assert (filed.district, filed.channel) == ("210902", "grid")
    assert filed.case_no in receipt and filed.tracking_code in receipt
    entry = audit_entries(intake, "intake.file")[0]
    assert (entry.actor, entry.case_no, entry.detail) == ("wangge_haizhou", filed.case_no, {"channel": "grid"})
    refused = post(client, "/staff/file", channel="phone", **CITIZEN)
    assert refused.status_code == 400 and "请选择受理渠道" in refused.get_data(as_text=True)


def test_operator_files_hotline_calls_and_errors_read_in_chinese(intake):
    app = create_app(intake)
    client = logged_in(app, "operator")
    bad = post(client, "/staff/file", channel="hotline_12345", district="", name="", phone="12", description="漏水")
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "请选择所在县区" in html and "请填写正确的手机号或座机号码" in html
    assert post(client, "/staff/file", channel="hotline_12345", district="210904", **CITIZEN).status_code == 302
    assert audit_entries(intake, "intake.file")[0].detail == {"channel": "hotline_12345"}


def test_process_designer_deploys_a_changed_diagram(build_service, tmp_path):
    bpmn = tmp_path / "bpmn"
    shutil.copytree(REPO_ROOT / "bpmn", bpmn)
    service = build_service("supervision", bpmn_dir=bpmn)
    load_demo_accounts(service)
    app = create_app(service)
    designer = logged_in(app, "designer")
    assert "已是当前版本" in designer.get("/ops/diagrams").get_data(as_text=True)
    unchanged = post(designer, "/ops/diagrams/deploy")
    assert unchanged.status_code == 302 and audit_entries(service, "diagram.deploy") == []

    source = bpmn / "supervision.bpmn"
    source.write_text(source.read_text(encoding="utf-8").replace('name="超时督办"', 'name="超时督办（新版）"'),
                      encoding="utf-8")
    assert "尚未部署" in designer.get("/ops/diagrams").get_data(as_text=True)
    assert post(designer, "/ops/diagrams/deploy").status_code == 302
    with service.uow() as uow:
        assert uow.session.scalar(select(DeployedSpec.version).order_by(DeployedSpec.version.desc())) == 2
    assert audit_entries(service, "diagram.deploy")[0].actor == "designer"

    source.write_text("<not-bpmn", encoding="utf-8")
    broken = post(designer, "/ops/diagrams/deploy")
    assert "未通过检查，未部署" in designer.get(broken.headers["Location"]).get_data(as_text=True)
    assert len(audit_entries(service, "diagram.deploy")) == 1


def test_leaders_and_supervisors_read_dispatch_cases_masked_and_never_act():
    from services.dispatch import cases
    record = {"data": {"district": "210902"}, "items": []}
    county_leader = SimpleNamespace(role="leader", district="210903", department=None)
    city_leader = SimpleNamespace(role="leader", district=None, department=None)
    assert cases.may_read(city_leader, record) and not cases.may_read(county_leader, record)
    assert not cases.may_reveal(city_leader, record)
    item = SimpleNamespace(task_name=cases.ASSIGN, district="210902", department=None)
    assert not cases.may_work(city_leader, item)


def test_reception_reads_mediation_in_its_district_but_does_not_mediate():
    from services.mediation import cases
    record = {"data": {"district": "210902"}, "items": []}
    reception = SimpleNamespace(role="reception", district="210902")
    assert cases.may_read(reception, record)
    assert not cases.may_read(SimpleNamespace(role="reception", district="210903"), record)
    assert not cases.may_work(reception, SimpleNamespace(task_name=cases.MEDIATE, district="210902"))


def test_leaders_see_the_urging_board_without_the_urge_form(build_service):
    service = build_service("supervision")
    load_demo_accounts(service)
    app = create_app(service)
    html = logged_in(app, "leader").get("/board").get_data(as_text=True)
    assert "超时督办" in html and "审计日志" not in html
    assert post(logged_in(app, "leader"), "/urge", item_id="x", note="催一下").status_code == 403
