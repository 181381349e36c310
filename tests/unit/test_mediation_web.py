"""Mediation's desk and 调解 form through Flask's test client (SQLite, no bus needed)."""
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.clock import FrozenClock
from services.common.models import AuditEntry, OutboxMessage, StaffUser
from services.common.web.app import create_app
from services.common.web.auth import hash_password
from tests.support.http import csrf_token

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
                                          ("tiaojie_haizhou2", "mediator", "210902"),
                                          ("lingdao_haizhou", "leader", "210902"),
                                          ("lingdao_xihe", "leader", "210911"),
                                          ("admin", "admin", None),
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


def login(app, username):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
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
    assert page.status_code == 200 and "调解" in html and "邻里因装修噪音多次争吵" in html
    assert "138****1234" in html and "13800001234" not in html  # masked until revealed
    token = csrf_token(html)
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
    token = csrf_token(other.get(f"/cases/{OTHER_CASE}").get_data(as_text=True))
    forbidden = other.post(f"/cases/{CASE}/mediate", data={"csrf_token": token, "outcome": "agreement", "result": "x"})
    assert forbidden.status_code == 403
    assert other.get("/cases/210902-20261102-0099").status_code == 404
    dispatcher = login(app, "fenbo")
    assert dispatcher.get("/desk").status_code == 403
    assert dispatcher.get(f"/cases/{CASE}").status_code == 403
    assert app.test_client().get("/desk").status_code == 302  # not logged in: to the login page
    assert sent(mediation) == []


# -- personal data and confidential cases (services/mediation/handling.py) -----------------

def audit_entries(service, action):
    with service.uow() as uow:
        return [(e.actor, e.case_no, e.detail) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def test_parties_are_masked_on_desk_and_case_until_an_audited_reveal(app, mediation):
    client = login(app, "tiaojie_haizhou")
    desk = client.get("/desk").get_data(as_text=True)
    assert "张*" in desk and "张三" not in desk
    page = client.get(f"/cases/{CASE}").get_data(as_text=True)
    assert "张*" in page and "138****1234" in page and "张三" not in page and "13800001234" not in page
    assert audit_entries(mediation, "pii.reveal") == []
    shown = client.post(f"/cases/{CASE}/reveal", data={"csrf_token": csrf_token(page)})
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "张三" in html and 'href="tel:13800001234"' in html
    assert "本次查看已记入审计日志" in html
    assert audit_entries(mediation, "pii.reveal") == [("tiaojie_haizhou", CASE, {"fields": ["name", "phone"]})]
    assert client.post(f"/cases/{CASE}/reveal").status_code == 400  # CSRF
    assert "13800001234" not in client.get(f"/cases/{CASE}").get_data(as_text=True)  # one page load only


def test_a_phone_written_into_the_description_is_masked_too(build_service):
    service = build_service("mediation")
    with service.uow() as uow:
        uow.add(StaffUser(username="m", display_name="m", password_hash=hash_password(PASSWORD),
                          role="mediator", district=None, active=True))
        uow.commit()
    body = {**request_body(CASE, "210902"), "description": "张三说请打13912345678找他，邻里纠纷"}
    service.apply_message(make_envelope("dispatch.mediation_requested", body, "dispatch", service.clock.now()))
    client = login(create_app(service), "m")
    for html in (client.get("/desk").get_data(as_text=True), client.get(f"/cases/{CASE}").get_data(as_text=True)):
        assert "13912345678" not in html and "张三" not in html and "邻里纠纷" in html


def take(client, case_no, confidential=False):
    page = client.get(f"/cases/{case_no}").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "take": "1", **({"confidential": "1"} if confidential else {})}
    return client.post(f"/cases/{case_no}/take", data=data)


def test_confidential_case_only_for_its_mediator_and_the_centers_leaders(app, mediation):
    mine, colleague = login(app, "tiaojie_haizhou"), login(app, "tiaojie_haizhou2")
    assert take(mine, CASE, confidential=True).status_code == 302
    assert audit_entries(mediation, "mediation.take") == [("tiaojie_haizhou", CASE, {"confidential": True})]
    page = mine.get(f"/cases/{CASE}").get_data(as_text=True)
    assert "保密案件" in page and 'name="outcome"' in page
    # the district's other mediator, a city-level mediator and the admin: not found, not on the desk
    for other in (colleague, login(app, "tiaojie_city"), login(app, "admin")):
        assert other.get(f"/cases/{CASE}").status_code == 404
        desk = other.get("/desk").get_data(as_text=True)
        assert f'data-case="{CASE}"' not in desk and "另有 1 件保密案件" in desk
    token = csrf_token(colleague.get("/desk").get_data(as_text=True))
    refused = colleague.post(f"/cases/{CASE}/mediate", data={"csrf_token": token, "outcome": "agreement",
                                                             "result": "x"})
    assert refused.status_code == 403 and sent(mediation) == []
    # the district's leader reads it (no forms); another district's leader does not
    leader = login(app, "lingdao_haizhou")
    html = leader.get(f"/cases/{CASE}").get_data(as_text=True)
    assert "邻里因装修噪音多次争吵" in html and 'name="outcome"' not in html and "显示完整号码" not in html
    assert f'data-case="{CASE}"' in leader.get("/desk").get_data(as_text=True)
    assert login(app, "lingdao_xihe").get(f"/cases/{CASE}").status_code == 403
    # its mediator mediates it
    done = mine.post(f"/cases/{CASE}/mediate", data={"csrf_token": csrf_token(page), "outcome": "agreement",
                                                     "result": "双方和解"})
    assert done.status_code == 302 and len(sent(mediation)) == 1


def test_confidentiality_is_changed_by_its_mediator_or_a_leader_only(app, mediation):
    mine, colleague = login(app, "tiaojie_haizhou"), login(app, "tiaojie_haizhou2")
    token = csrf_token(mine.get("/desk").get_data(as_text=True))
    # not taken yet: nobody can make it confidential (it needs its mediator)
    assert mine.post(f"/cases/{CASE}/confidential", data={"csrf_token": token, "confidential": "1"}).status_code == 403
    assert take(mine, CASE).status_code == 302
    assert colleague.get(f"/cases/{CASE}").status_code == 200  # not confidential: the district sees it
    assert colleague.post(f"/cases/{CASE}/confidential",
                          data={"csrf_token": csrf_token(colleague.get("/desk").get_data(as_text=True)),
                                "confidential": "1"}).status_code == 403
    assert mine.post(f"/cases/{CASE}/confidential", data={"csrf_token": token, "confidential": "1"}).status_code == 302
    assert colleague.get(f"/cases/{CASE}").status_code == 404
    leader = login(app, "lingdao_haizhou")
    leader_token = csrf_token(leader.get("/desk").get_data(as_text=True))
    assert leader.post(f"/cases/{CASE}/confidential",
                       data={"csrf_token": leader_token, "confidential": "0"}).status_code == 302
    assert colleague.get(f"/cases/{CASE}").status_code == 200
    assert [d["confidential"] for _, _, d in audit_entries(mediation, "mediation.confidential")] == [True, False]
    # a colleague cannot take over a confidential case
    mine.post(f"/cases/{CASE}/confidential", data={"csrf_token": token, "confidential": "1"})
    assert take(login(app, "tiaojie_city"), OTHER_CASE).status_code == 302  # another case: fine
    colleague_token = csrf_token(colleague.get("/desk").get_data(as_text=True))
    assert colleague.post(f"/cases/{CASE}/take", data={"csrf_token": colleague_token, "take": "1"}).status_code == 404
