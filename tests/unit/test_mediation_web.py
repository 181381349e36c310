"""Mediation's desk and 调解 form through Flask's test client (SQLite, no bus needed)."""
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.clock import FrozenClock
from services.common.models import OutboxMessage, StaffUser
from services.common.web.app import create_app
from services.common.web.auth import hash_password

CASE = "210902-20261102-0001"
OTHER_CASE = "210911-20261102-0001"
PASSWORD = "test-password-1"


def request_body(case_no, district):
    return {"case_no": case_no, "district": district, "description": "邻里因装修噪音多次争吵",
            "name": "张三", "phone": "13800001234", "reason": "邻里纠纷，先行调解",
            "summary": "转综治中心调解：邻里纠纷，先行调解"}


@pytest.fixture
def mediation(build_service):
    service = build_service("mediation", clock=FrozenClock(datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)))
    with service.uow() as uow:
        for username, role, district in (("tiaojie_haizhou", "mediator", "210902"),
                                          ("tiaojie_xihe", "mediator", "210911"),
                                          ("tiaojie_city", "mediator", None),
                                          ("fenbo", "dispatcher", "210902")):
            uow.add(StaffUser(username=username, display_name=f"{username}名", password_hash=hash_password(PASSWORD),
                              role=role, district=district, active=True))
        uow.commit()
    for case_no, district in ((CASE, "210902"), (OTHER_CASE, "210911")):
        service.apply_message(make_envelope("dispatch.mediation_requested", request_body(case_no, district),
                                            "dispatch", service.clock.now()))
    return service


@pytest.fixture
def app(mediation):
    return create_app(mediation)


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html).group(1)


def login(app, username):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def sent(service):
    with service.uow() as uow:
        return [r.envelope["body"] for r in uow.session.scalars(select(OutboxMessage))]


def test_desk_lists_the_mediators_district_with_counts_and_deadline(app):
    client = login(app, "tiaojie_haizhou")
    html = client.get("/desk").get_data(as_text=True)
    assert f'data-case="{CASE}"' in html and f'data-case="{OTHER_CASE}"' not in html
    assert "待调解 1 件" in html and "海州区" in html
    assert "2026-11-16 09:00" in html  # ten working days
    assert "分拨意见：邻里纠纷，先行调解" in html
    assert 'name="district"' not in html  # scoped: no district filter
    city = login(app, "tiaojie_city").get("/desk").get_data(as_text=True)
    assert f'data-case="{CASE}"' in city and f'data-case="{OTHER_CASE}"' in city and "待调解 2 件" in city
    assert "待调解 1 件" in login(app, "tiaojie_city").get("/desk?district=210911").get_data(as_text=True)


def test_mediating_through_the_form(app, mediation):
    client = login(app, "tiaojie_haizhou")
    page = client.get(f"/cases/{CASE}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "调解" in html and "邻里因装修噪音多次争吵" in html and "13800001234" in html
    token = csrf_from(html)
    # missing outcome and result: the form comes back with Chinese errors, nothing is sent
    bad = client.post(f"/cases/{CASE}/mediate", data={"csrf_token": token, "result": " "})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "请选择调解结果" in text and "请填写调解情况" in text and 'aria-invalid="true"' in text
    assert sent(mediation) == []
    tampered = client.post(f"/cases/{CASE}/mediate", data={"csrf_token": token, "outcome": "maybe", "result": "x"})
    assert tampered.status_code == 400 and "请选择调解结果" in tampered.get_data(as_text=True)
    # without the CSRF token: refused
    assert client.post(f"/cases/{CASE}/mediate", data={"outcome": "agreement", "result": "x"}).status_code == 400
    done = client.post(f"/cases/{CASE}/mediate", data={
        "csrf_token": token, "outcome": "agreement", "result": "双方同意限定装修时间", "agreement": "工作日8-18点施工"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/desk")
    desk = client.get("/desk").get_data(as_text=True)
    assert f"案件 {CASE} 调解成功" in desk and "暂无待调解的案件" in desk
    [message] = sent(mediation)
    assert message["outcome"] == "agreement" and message["summary"] == "调解成功：双方同意限定装修时间"
    record = client.get(f"/cases/{CASE}").get_data(as_text=True)
    assert "调解成功" in record and "工作日8-18点施工" in record and 'name="outcome"' not in record
    again = client.post(f"/cases/{CASE}/mediate", data={"csrf_token": token, "outcome": "agreement", "result": "再来"})
    assert again.status_code == 302  # already done: back to the case page with the reason
    assert "可能已被他人处理" in client.get(f"/cases/{CASE}").get_data(as_text=True)


def test_scope_roles_and_unknown_cases(app, mediation):
    other = login(app, "tiaojie_xihe")
    assert other.get(f"/cases/{CASE}").status_code == 403
    token = csrf_from(other.get(f"/cases/{OTHER_CASE}").get_data(as_text=True))
    forbidden = other.post(f"/cases/{CASE}/mediate", data={"csrf_token": token, "outcome": "agreement", "result": "x"})
    assert forbidden.status_code == 403
    assert other.get("/cases/210902-20261102-0099").status_code == 404
    dispatcher = login(app, "fenbo")
    assert dispatcher.get("/desk").status_code == 403
    assert dispatcher.get(f"/cases/{CASE}").status_code == 403
    assert app.test_client().get("/desk").status_code == 302  # not logged in: to the login page
    assert sent(mediation) == []
