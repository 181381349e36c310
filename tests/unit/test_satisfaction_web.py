"""The rating form on the citizen's status page and the callback operator's pages
(Flask's test client, SQLite; dispatch's reply arrives as a bus message)."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import AuditEntry, OutboxMessage, WorkItem
from services.common.web.app import create_app
from services.intake.models import CitizenRequest, SatisfactionRating
from tests.support.http import csrf_token

CITIZEN = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}


@pytest.fixture
def intake(build_service):
    service = build_service("intake")
    load_demo_accounts(service)
    return service


@pytest.fixture
def client(intake):
    return create_app(intake).test_client()


def replied_case(client, intake, reply="已联系物业修复漏水点"):
    created = client.post("/api/v1/requests", json=CITIZEN).get_json()
    intake.apply_message(make_envelope("dispatch.case_handled", {
        "case_no": created["case_no"], "department": "zhujian", "reply": reply, "summary": reply},
        "dispatch", intake.clock.now()))
    return created["case_no"], created["tracking_code"]


def status_page(client, case_no, code):
    return client.post("/status", data={"case_no": case_no, "tracking_code": code,
                                        "csrf_token": csrf_token(client.get("/status").get_data(as_text=True))})


def login(client, username):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 302


def ratings(intake):
    with intake.uow() as uow:
        return [(r.rating, r.comment, r.source) for r in uow.session.scalars(select(SatisfactionRating))]


def test_the_status_page_asks_for_a_rating_only_after_the_reply(client, intake):
    created = client.post("/api/v1/requests", json=CITIZEN).get_json()
    before = status_page(client, created["case_no"], created["tracking_code"]).get_data(as_text=True)
    assert 'id="rating"' not in before
    case_no, code = replied_case(client, intake)
    page = status_page(client, case_no, code).get_data(as_text=True)
    assert 'id="rating"' in page and "基本满意" in page and "已答复，请评价" in page


def test_a_rating_needs_the_tracking_code_csrf_and_a_reason_when_unsatisfied(client, intake):
    case_no, code = replied_case(client, intake)
    token = csrf_token(status_page(client, case_no, code).get_data(as_text=True))
    form = {"case_no": case_no, "tracking_code": code, "rating": "unsatisfied", "comment": ""}
    assert client.post("/status/rate", data=form).status_code == 400  # no CSRF token
    wrong = client.post("/status/rate", data={**form, "csrf_token": token, "tracking_code": "WRONG234"})
    assert wrong.status_code == 404
    no_reason = client.post("/status/rate", data={**form, "csrf_token": token})
    assert no_reason.status_code == 400 and "请说明哪里不满意" in no_reason.get_data(as_text=True)
    bad_choice = client.post("/status/rate", data={**form, "csrf_token": token, "rating": "great"})
    assert bad_choice.status_code == 400
    too_long = client.post("/status/rate", data={**form, "csrf_token": token, "comment": "长" * 501})
    assert too_long.status_code == 400 and "不超过500个字" in too_long.get_data(as_text=True)
    assert ratings(intake) == []
    done = client.post("/status/rate", data={**form, "csrf_token": token,
                                              "comment": "<script>alert(1)</script>仍然漏水"})
    body = done.get_data(as_text=True)
    assert done.status_code == 200 and "感谢您的评价" in body and "<script>alert" not in body
    assert ratings(intake) == [("unsatisfied", "<script>alert(1)</script>仍然漏水", "online")]
    with intake.uow() as uow:
        [reopen] = [m.envelope["body"] for m in uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key == "intake.case_reopened"))]
        request = uow.session.get(CitizenRequest, case_no)
        [entry] = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "intake.rate")).all()
    assert reopen["comment"] == "<script>alert(1)</script>仍然漏水" and request.status == "reopened"
    assert entry.case_no == case_no
    again = client.post("/status/rate", data={**form, "csrf_token": token, "rating": "satisfied"})
    assert again.status_code == 409 and "不在评价阶段" in again.get_data(as_text=True)
    assert len(ratings(intake)) == 1


def test_the_operator_lists_calls_reveals_the_phone_and_enters_the_rating(client, intake):
    case_no, _ = replied_case(client, intake)
    with intake.uow() as uow:  # the 3-working-day timer: the citizen did not rate online
        assert [i.task_name for i in uow.session.scalars(select(WorkItem))] == ["rate"]
    intake.clock.advance(timedelta(days=4))
    intake.runtime.fire_due_timers(intake.uow)
    login(client, "operator")
    listing = client.get("/staff/callbacks").get_data(as_text=True)
    assert case_no in listing and "138****1234" in listing and "13800001234" not in listing
    page = client.get(f"/staff/cases/{case_no}").get_data(as_text=True)
    assert "录入回访结果" in page and "13800001234" not in page
    assert 'id="notifications"' in page and page.count("138****1234") >= 3  # masked recipient
    assert "已受理" in page and "办理结果" in page
    with intake.uow() as uow:
        code = uow.session.get(CitizenRequest, case_no).tracking_code
    assert code not in page  # the tracking code in the sent text is hidden from staff
    token = csrf_token(page)
    revealed = client.post(f"/staff/cases/{case_no}/reveal", data={"csrf_token": token})
    assert "13800001234" in revealed.get_data(as_text=True)
    done = client.post(f"/staff/cases/{case_no}/rate",
                       data={"csrf_token": token, "rating": "satisfied", "comment": "电话回访：已修好"})
    assert done.status_code == 302
    assert ratings(intake) == [("satisfied", "电话回访：已修好", "callback")]
    with intake.uow() as uow:
        actions = [a.action for a in uow.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                   if a.case_no == case_no]
        closed = uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key == "intake.case_closed")).one().envelope["body"]
    assert actions[-2:] == ["pii.reveal", "intake.callback"]
    assert closed["reporter_case_no"] == case_no


def test_supervisors_read_the_case_but_neither_rate_nor_reveal(client, intake):
    case_no, _ = replied_case(client, intake)
    login(client, "supervisor")
    page = client.get(f"/staff/cases/{case_no}")
    assert page.status_code == 200 and "录入回访结果" not in page.get_data(as_text=True)
    token = csrf_token(client.get("/login").get_data(as_text=True))
    assert client.post(f"/staff/cases/{case_no}/reveal", data={"csrf_token": token}).status_code == 403
    assert client.get("/staff/callbacks").status_code == 403


def test_the_form_takes_an_optional_e_mail_and_checks_it(client, intake):
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = {"csrf_token": token, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "楼上漏水，天花板一直滴水"}
    bad = client.post("/", data={**form, "email": "not-an-address"})
    assert bad.status_code == 400 and "请填写正确的电子邮箱" in bad.get_data(as_text=True)
    assert client.post("/", data={**form, "email": "zhang@example.com"}).status_code == 302
    with intake.uow() as uow:
        assert uow.session.scalars(select(CitizenRequest.email)).all() == ["zhang@example.com"]
