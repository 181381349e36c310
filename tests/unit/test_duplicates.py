"""疑似重复 (services/dispatch/duplicates.py): the rule as plain functions, then dispatch
registering cases from intake.case_submitted, the badge, merge from the flag and dismissal."""
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from services.common.audit import AuditEntry
from services.common.bus.messages import make_envelope
from services.common.config import DuplicateSettings
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import OutboxMessage, WorkItem
from services.common.web.app import create_app
from services.dispatch import duplicates as d

RULE = DuplicateSettings()
LEAK = "幸福小区3号楼楼上卫生间漏水，天花板一直往下滴水，已经好几天了"


def fp(text="", phone="a", place=None, cell=None):
    return d.Fingerprint(phone_hash=phone, place=place, cell=cell, text=text)


def test_bigram_similarity_for_chinese():
    same = d.similarity(d.bigrams(LEAK), d.bigrams(LEAK))
    near = d.similarity(d.bigrams(LEAK), d.bigrams("幸福小区3号楼，楼上卫生间漏水，天花板滴水好几天了！"))
    other = d.similarity(d.bigrams(LEAK), d.bigrams("中华路路灯不亮，晚上出行不方便"))
    assert same == 1.0 and near > RULE.text_threshold and other < 0.1
    assert d.similarity(d.bigrams(""), d.bigrams(LEAK)) == 0.0


def test_place_key_and_cells():
    assert d.place_key("海州区 幸福小区3号楼") == d.place_key("海州区幸福小区3号楼。")
    assert d.place_key("") is None and d.place_key("经纬度 42.011162,121.670323") is None
    cell = d.cell_of(42.0111, 121.6703, 0.002)
    assert d.cell_of(42.0129, 121.6719, 0.002) in d.neighbour_cells(cell)  # ~200 m away: near
    assert d.cell_of(42.03, 121.70, 0.002) not in d.neighbour_cells(cell)
    assert d.cell_of(None, 121.6, 0.002) is None


@pytest.mark.parametrize("new, old, reasons", [
    (fp("完全不同的事情说明", phone="p"), fp(LEAK, phone="p"), ["phone"]),
    (fp(LEAK, phone="x"), fp(LEAK, phone="y"), ["text"]),
    (fp("楼道灯坏了", place="k"), fp("楼道灯不亮了", phone="b", place="k"), ["place"]),  # 0.44
    (fp("路灯不亮", place="k"), fp("下水道堵了", phone="b", place="k"), []),  # same place, unrelated
    (fp("中华路路灯不亮", phone="x"), fp(LEAK, phone="y"), []),
])
def test_judge(new, old, reasons):
    assert d.judge(new, old, RULE)[0] == reasons


# -- in dispatch ---------------------------------------------------------------------------

def submitted(n, district="210902", phone="13800001234", description=LEAK, location=""):
    return {"case_no": f"{district}-20261102-{n:04d}", "district": district, "name": "张三", "phone": phone,
            "description": description, "category": "", "channel": "web", "location": location,
            "submitted_at": "2026-11-02T09:00:00+00:00"}


def register(service, body):
    service.apply_message(make_envelope("intake.case_submitted", body, "intake", datetime.now(timezone.utc)))


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    load_demo_accounts(service)
    register(service, submitted(1))
    register(service, submitted(2, phone="13900002222", description="中华路路灯不亮，晚上出行不方便"))
    register(service, submitted(3, phone="13700003333", description="幸福小区3号楼卫生间漏水，天花板一直滴水好几天"))
    register(service, submitted(4, district="210911"))  # the same text elsewhere
    return service


def flags(service):
    with service.uow() as uow:
        return {(f.case_no, f.candidate_no, f.reasons, f.status) for f in uow.session.scalars(select(d.DuplicateFlag))}


def test_registering_flags_only_open_cases_of_the_same_district(dispatch):
    assert flags(dispatch) == {("210902-20261102-0003", "210902-20261102-0001", "text", "open")}


def login(client, username="fenbo_haizhou"):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"username": username, "password": DEMO_PASSWORD,
                                       "csrf_token": token}).status_code == 302


def test_badge_in_queue_and_merge_from_the_flag(dispatch):
    client = create_app(dispatch).test_client()
    login(client)
    queue = client.get("/queue").get_data(as_text=True)
    row = re.search(r'<tr data-case="210902-20261102-0003".*?</tr>', queue, re.S).group(0)
    assert "疑似重复" in row and "疑似重复" not in re.search(r'<tr data-case="210902-20261102-0002".*?</tr>', queue, re.S).group(0)
    page = client.get("/cases/210902-20261102-0003").get_data(as_text=True)
    box = re.search(r'<section class="card duplicates".*?</section>', page, re.S).group(0)
    assert 'href="/cases/210902-20261102-0001"' in box and "内容相似" in box
    token = re.search(r'name="csrf_token" value="([^"]+)"', box).group(1)
    response = client.post("/cases/210902-20261102-0003/merge", data={
        "csrf_token": token, "case_no": "210902-20261102-0003", "into": "210902-20261102-0001"})
    assert response.status_code == 302
    with dispatch.uow() as uow:
        assert not uow.session.scalars(select(WorkItem).where(WorkItem.case_no == "210902-20261102-0003")).all()
        merged = uow.session.scalars(select(OutboxMessage).where(OutboxMessage.routing_key == "dispatch.case_merged")).one()
        assert merged.envelope["body"]["into"] == "210902-20261102-0001"


def test_a_later_case_is_not_compared_with_a_closed_one(dispatch):
    client = create_app(dispatch).test_client()
    login(client)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/queue").get_data(as_text=True)).group(1)
    client.post("/cases/210902-20261102-0001/reject", data={"csrf_token": token, "case_no": "210902-20261102-0001",
                                                           "reason": "重复反映"})
    register(dispatch, submitted(5, phone="13600005555"))
    assert {f[1] for f in flags(dispatch) if f[0] == "210902-20261102-0005"} == {"210902-20261102-0003"}


def test_dismissing_the_flag_is_audited_and_only_for_the_district_dispatcher(dispatch):
    other = create_app(dispatch).test_client()
    login(other, "bm_zhujian")
    assert other.post("/cases/210902-20261102-0003/duplicates/dismiss").status_code in (400, 403)
    client = create_app(dispatch).test_client()
    login(client)
    page = client.get("/cases/210902-20261102-0003").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/cases/210902-20261102-0003/duplicates/dismiss",
                           data={"csrf_token": token, "case_no": "210902-20261102-0003"}, follow_redirects=True)
    assert "已排除 1 条疑似重复提示" in response.get_data(as_text=True)
    assert flags(dispatch) == {("210902-20261102-0003", "210902-20261102-0001", "text", "dismissed")}
    assert 'class="card duplicates"' not in client.get("/cases/210902-20261102-0003").get_data(as_text=True)
    with dispatch.uow() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "dispatch.duplicate_dismissed")).one()
    assert entry.case_no == "210902-20261102-0003" and entry.detail == {"candidates": ["210902-20261102-0001"]}
