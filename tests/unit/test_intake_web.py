"""Intake's form and API through Flask's test client (SQLite, no bus needed)."""
import re

import pytest
from sqlalchemy import select

from services.common.models import OutboxMessage
from services.common.models import AuditEntry, StaffUser
from services.common.web.app import create_app
from services.common.web.auth import hash_password, make_token
from services.intake.models import CitizenRequest
from tests.support.db import count
from tests.support.http import csrf_token

VALID = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}


@pytest.fixture
def intake(build_service):
    return build_service("intake")


@pytest.fixture
def client(intake):
    return create_app(intake).test_client()


def test_api_creates_case_with_readable_number_and_publishes_it(client, intake):
    response = client.post("/api/v1/requests", json=VALID)
    assert response.status_code == 201
    body = response.get_json()
    assert re.fullmatch(r"210902-\d{8}-0001", body["case_no"])
    assert re.fullmatch(r"[A-Z2-9]{8}", body["tracking_code"])
    second = client.post("/api/v1/requests", json={**VALID, "district": "210902"}).get_json()
    assert second["case_no"].endswith("-0002")
    with intake.uow() as uow:
        [first_message, _] = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert first_message.routing_key == "intake.case_submitted"
    assert first_message.envelope["body"]["district"] == "210902"


@pytest.mark.parametrize("payload, field", [
    ({**VALID, "district": "北京市"}, "district"),
    ({**VALID, "phone": "12345"}, "phone"),
    ({**VALID, "description": "短"}, "description"),
    ({**VALID, "category": "nope"}, "category"),
    ({k: v for k, v in VALID.items() if k != "name"}, "name"),
    ({**VALID, "name": "x" * 51}, "name"),
])
def test_api_rejects_bad_fields_and_stores_nothing(client, intake, payload, field):
    response = client.post("/api/v1/requests", json=payload)
    assert response.status_code == 400
    assert field in response.get_json()["fields"]
    assert count(intake, CitizenRequest) == 0
    assert count(intake, OutboxMessage) == 0


def test_api_staff_channels_need_a_staff_token(client, intake):
    """Anyone may file as a citizen ("web"); a phone or grid channel says staff took it."""
    with intake.uow() as uow:
        uow.add(StaffUser(username="wangge", display_name="网格员", role="grid_worker", district="210902",
                          password_hash=hash_password("correct-horse-1"), active=True))
        uow.commit()
    bearer = {"Authorization": f"Bearer {make_token(client.application.config['SECRET_KEY'], 'wangge')}"}
    anonymous = client.post("/api/v1/requests", json={**VALID, "channel": "grid"})
    assert anonymous.status_code == 400 and "channel" in anonymous.get_json()["fields"]
    wrong_channel = client.post("/api/v1/requests", json={**VALID, "channel": "phone"}, headers=bearer)
    assert "channel" in wrong_channel.get_json()["fields"]
    elsewhere = client.post("/api/v1/requests", json={**VALID, "district": "彰武县", "channel": "grid"}, headers=bearer)
    assert elsewhere.get_json()["fields"]["channel"] == ["网格员只能代为反映本辖区的诉求"]
    assert count(intake, CitizenRequest) == 0
    filed = client.post("/api/v1/requests", json={**VALID, "channel": "grid"}, headers=bearer)
    assert filed.status_code == 201, filed.get_json()
    with intake.uow() as uow:
        assert uow.session.scalars(select(CitizenRequest.channel)).all() == ["grid"]
        [entry] = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "intake.file")).all()
    assert (entry.actor, entry.case_no, entry.detail) == ("wangge", filed.get_json()["case_no"], {"channel": "grid"})


@pytest.mark.parametrize("data, content_type", [("not json", "application/json"), ("[1,2]", "application/json"),
                                                ("a=b", "application/x-www-form-urlencoded")])
def test_api_rejects_non_objects(client, data, content_type):
    response = client.post("/api/v1/requests", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.is_json


def test_status_lookup_needs_the_right_tracking_code(client):
    created = client.post("/api/v1/requests", json=VALID).get_json()
    ok = client.get(f"/api/v1/requests/{created['case_no']}?tracking_code={created['tracking_code'].lower()}")
    assert ok.status_code == 200
    assert ok.get_json()["timeline"][0]["title"] == "诉求已提交，等待分拨"
    assert "phone" not in ok.get_json() and "name" not in ok.get_json()
    wrong = client.get(f"/api/v1/requests/{created['case_no']}?tracking_code=AAAAAAAA")
    assert wrong.status_code == 404
    assert client.get("/api/v1/requests/nope?tracking_code=x").status_code == 404


def test_form_without_csrf_token_is_refused(client, intake):
    response = client.post("/", data=VALID)
    assert response.status_code == 400
    assert "页面已过期" in response.get_data(as_text=True)
    assert count(intake, CitizenRequest) == 0


def test_form_shows_districts_and_errors_in_chinese_then_submits(client, intake):
    page = client.get("/").get_data(as_text=True)
    for name in ("阜新蒙古族自治县", "彰武县", "海州区", "细河区", "太平区", "新邱区", "清河门区"):
        assert name in page
    token = csrf_token(page)
    bad = client.post("/", data={"csrf_token": token, "name": "", "phone": "1", "description": ""})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "请选择所在县区" in text and "请填写正确的手机号" in text
    good = client.post("/", data={"csrf_token": token, **VALID, "district": "210902",
                                  "description": "<script>alert(1)</script>漏水"}, follow_redirects=True)
    assert good.status_code == 200
    assert "提交成功" in good.get_data(as_text=True)
    with intake.uow() as uow:
        stored = uow.session.scalars(select(CitizenRequest)).one()
    assert stored.description.startswith("<script>")  # stored as typed, escaped when shown


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"service": "intake", "status": "ok"}


@pytest.mark.parametrize("payload, field, message", [
    ({**VALID, "district": 5}, "district", "请填写文字"),
    ({**VALID, "name": None}, "name", "请填写姓名"),
])
def test_api_errors_read_in_chinese_for_wrong_types(client, payload, field, message):
    response = client.post("/api/v1/requests", json=payload)
    assert response.status_code == 400
    assert response.get_json()["fields"][field] == [message]


def test_api_refuses_unknown_fields_with_a_clear_message(client):
    response = client.post("/api/v1/requests", json={**VALID, "photo_url": "http://x"})
    assert response.status_code == 400
    assert response.get_json()["fields"]["photo_url"] == ["不支持的字段"]
