"""Audit log and personal data masking (services/common/audit.py, services/common/web/privacy.py)
through Flask's test client on SQLite, with the demo accounts."""
import csv
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from services.common.config import SERVICES
from services.common.demo import DEMO_PASSWORD, load_demo_accounts
from services.common.models import AuditEntry, WorkItem
from services.common.web.app import create_app
from services.common.web.privacy import mask_name, mask_phone
from services.dispatch import cases
from tests.support.http import csrf_token

REPO = Path(__file__).resolve().parents[2]
CASE1, CASE2, CASE3 = (f"210902-20261102-{n:04d}" for n in (1, 2, 3))


def submission(case_no):
    return {"case_no": case_no, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "楼上漏水", "category": "", "channel": "web", "location": "",
            "submitted_at": "2026-11-02T09:00:00+00:00"}


@pytest.fixture
def dispatch(build_service):
    service = build_service("dispatch")
    load_demo_accounts(service)
    for case_no in (CASE1, CASE2, CASE3):
        with service.uow() as uow:
            service.runtime.deliver(uow, "intake.case_submitted", submission(case_no), case_no)
            uow.commit()
    return service


def client_for(service, username=None, address="127.0.0.1"):
    """A test client from ``address``, logged in as ``username`` (None: anonymous)."""
    client = create_app(service).test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if username:
        token = csrf_token(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={"csrf_token": token, "username": username, "password": DEMO_PASSWORD})
        assert response.status_code == 302 and "/login" not in response.headers["Location"]
    client.token = csrf_token(client.get("/login").get_data(as_text=True))
    return client


def entries(service, **where):
    with service.uow() as uow:
        query = select(AuditEntry).order_by(AuditEntry.id)
        for column, value in where.items():
            query = query.where(getattr(AuditEntry, column) == value)
        return uow.session.scalars(query).all()


def act(client, case_no, name, **form):
    return client.post(f"/cases/{case_no}/{name}", data={"csrf_token": client.token, "case_no": case_no, **form})


class Recorder:
    """Asserts that what runs inside ``expect`` writes exactly the given entries."""

    def __init__(self, service):
        self.service = service

    def expect(self, *actions):
        test = self

        class _Block:
            def __enter__(self):
                self.before = len(entries(test.service))

            def __exit__(self, *exc):
                if exc[0] is None:
                    new = entries(test.service)[self.before:]
                    assert [(e.action, e.case_no) for e in new] == list(actions)
                    test.last = new
        return _Block()


def test_every_dispatch_act_writes_one_entry_with_the_actor_and_address(dispatch):
    dispatcher = client_for(dispatch, "fenbo_haizhou", "10.0.0.1")
    handler = client_for(dispatch, "bm_zhujian", "10.0.0.2")
    log = Recorder(dispatch)

    with log.expect(("dispatch.assign", CASE1)):
        assert act(dispatcher, CASE1, "assign", department="zhujian", co_departments=["gongan"]).status_code == 302
    [entry] = log.last
    assert (entry.actor, entry.role, entry.address, entry.service) == ("fenbo_haizhou", "dispatcher", "10.0.0.1", "dispatch")
    assert entry.detail == {"department": "zhujian", "co_departments": ["gongan"]}
    assert entry.at == dispatch.clock.now()

    with log.expect(("dispatch.return", CASE1)):
        assert act(handler, CASE1, "return", reason="不属于本部门职责").status_code == 302
    [entry] = log.last
    assert (entry.actor, entry.role, entry.address) == ("bm_zhujian", "handler", "10.0.0.2")
    assert "不属于本部门职责" not in str(entry.detail)  # free text stays on the timeline

    with log.expect(("dispatch.assign", CASE2)):
        act(dispatcher, CASE2, "assign", department="zhujian")
    with log.expect(("dispatch.accept", CASE2)):
        act(handler, CASE2, "accept")
    with log.expect(("dispatch.note", CASE2)):
        assert act(handler, CASE2, "note", text="已约物业上门").status_code == 302
    with log.expect(("dispatch.reply", CASE2)):
        assert act(handler, CASE2, "reply", reply="已修复").status_code == 302
    assert log.last[0].address == "10.0.0.2"

    # 批量交办: one entry per case, marked as bulk
    with log.expect(("dispatch.assign", CASE1), ("dispatch.assign", CASE3)):
        response = dispatcher.post("/bulk-assign", data={"csrf_token": dispatcher.token, "department": "zhujian",
                                                         "case_nos": [CASE1, CASE3]})
        assert response.status_code == 302
    assert all(e.detail["bulk"] is True and e.actor == "fenbo_haizhou" for e in log.last)


def test_a_refused_act_writes_nothing(dispatch):
    dispatcher = client_for(dispatch, "fenbo_haizhou")
    handler = client_for(dispatch, "bm_zhujian")
    supervisor = client_for(dispatch, "supervisor")
    log = Recorder(dispatch)
    with log.expect():
        assert act(supervisor, CASE1, "assign", department="zhujian").status_code == 403  # NotAllowed (reads only)
        assert act(dispatcher, CASE1, "reject", reason=" ").status_code == 400  # the form refuses
        assert act(handler, CASE1, "accept").status_code in (302, 403)  # not in that step: NoSuchTask
    user = SimpleNamespace(username="bm_zhujian", role="handler", department="zhujian", district=None,
                           display_name="住建局办理人")
    with log.expect():
        with pytest.raises(cases.NotAllowed):
            cases.assign(dispatch, user, CASE1, "zhujian")
        with pytest.raises(cases.Invalid):
            cases.assign(dispatch, SimpleNamespace(**{**vars(user), "role": "admin"}), CASE1, "no-such-bureau")
        with pytest.raises(cases.Invalid):
            cases.return_case(dispatch, user, CASE1, "")
    with dispatch.uow() as uow:
        assert len(uow.session.scalars(select(WorkItem).where(WorkItem.task_name == "assign")).all()) == 3


def test_login_success_failure_and_lockout_are_audited(dispatch):
    client = create_app(dispatch).test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    token = csrf_token(client.get("/login").get_data(as_text=True))

    def attempt(username, password):
        client.post("/login", data={"csrf_token": token, "username": username, "password": password})

    for _ in range(6):
        attempt("fenbo_haizhou", "wrong")
    attempt("nobody", "wrong")
    actions = [(e.action, e.actor, e.address) for e in entries(dispatch)]
    assert actions == [("auth.login_failed", "fenbo_haizhou", "10.9.9.9")] * 4 + \
        [("auth.login_locked", "fenbo_haizhou", "10.9.9.9")] * 2 + [("auth.login_failed", "nobody", "10.9.9.9")]
    assert all("wrong" not in str(e.detail) for e in entries(dispatch))  # never a password

    handler = client_for(dispatch, "bm_zhujian", "10.0.0.2")
    [login] = entries(dispatch, action="auth.login")
    assert (login.actor, login.role, login.address) == ("bm_zhujian", "handler", "10.0.0.2")
    handler.post("/logout-all", data={"csrf_token": handler.token})
    [ended] = entries(dispatch, action="auth.logout_all")
    assert (ended.actor, ended.role) == ("bm_zhujian", "handler")


def test_the_audit_page_is_for_supervisors_and_admins_with_filters_and_csv(dispatch):
    dispatcher = client_for(dispatch, "fenbo_haizhou", "10.0.0.1")
    act(dispatcher, CASE1, "assign", department="zhujian")
    act(dispatcher, CASE2, "pool")
    assert client_for(dispatch, "bm_zhujian").get("/audit").status_code == 403
    assert dispatcher.get("/audit").status_code == 403
    assert client_for(dispatch).get("/audit").status_code == 302  # anonymous: to the login page
    assert client_for(dispatch, "admin").get("/audit").status_code == 200

    supervisor = client_for(dispatch, "supervisor")
    page = supervisor.get("/audit").get_data(as_text=True)
    assert CASE1 in page and CASE2 in page and "交办" in page and "10.0.0.1" in page
    page = supervisor.get(f"/audit?case_no={CASE1}").get_data(as_text=True)
    assert CASE1 in page and CASE2 not in page and 'data-action="dispatch.assign"' in page
    page = supervisor.get("/audit?action=dispatch.pool&actor=fenbo_haizhou&since=2000-01-01&until=2099-12-31")
    assert CASE2 in page.get_data(as_text=True) and CASE1 not in page.get_data(as_text=True)
    assert CASE1 not in supervisor.get("/audit?until=2000-01-01").get_data(as_text=True)

    export = supervisor.get(f"/audit/export.csv?case_no={CASE1}")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True).lstrip("\ufeff"))))
    assert [(r["action"], r["case_no"], r["actor"], r["address"]) for r in rows] == [
        ("dispatch.assign", CASE1, "fenbo_haizhou", "10.0.0.1")]
    assert entries(dispatch, action="audit.export")[0].actor == "supervisor"  # exporting is on record too
    assert client_for(dispatch, "bm_zhujian").get("/audit/export.csv").status_code == 403


def test_the_case_page_masks_the_citizen_until_an_audited_reveal(dispatch):
    dispatcher = client_for(dispatch, "fenbo_haizhou", "10.0.0.1")
    page = dispatcher.get(f"/cases/{CASE1}").get_data(as_text=True)
    assert "138****1234" in page and "13800001234" not in page
    assert "张*" in page and "张三" not in page and "显示完整号码" in page
    assert entries(dispatch, action="pii.reveal") == []

    assert dispatcher.post(f"/cases/{CASE1}/reveal").status_code == 400  # no CSRF token: refused
    assert entries(dispatch, action="pii.reveal") == []
    shown = dispatcher.post(f"/cases/{CASE1}/reveal", data={"csrf_token": dispatcher.token})
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "13800001234" in page and "张三" in page and 'href="tel:13800001234"' in page
    [entry] = entries(dispatch, action="pii.reveal")
    assert (entry.actor, entry.case_no, entry.address, entry.detail) == (
        "fenbo_haizhou", CASE1, "10.0.0.1", {"fields": ["name", "phone"]})
    assert "13800001234" not in dispatcher.get(f"/cases/{CASE1}").get_data(as_text=True)  # one page load only

    # Supervisors read the case masked, without the button, and see its audit trail.
    supervisor = client_for(dispatch, "supervisor")
    page = supervisor.get(f"/cases/{CASE1}").get_data(as_text=True)
    assert "138****1234" in page and "显示完整号码" not in page and "操作审计" in page and "pii.reveal" in page
    assert supervisor.post(f"/cases/{CASE1}/reveal", data={"csrf_token": supervisor.token}).status_code == 403
    assert "操作审计" not in dispatcher.get(f"/cases/{CASE1}").get_data(as_text=True)
    outsider = client_for(dispatch, "fenbo_xihe")  # another district: may not read the case
    assert outsider.post(f"/cases/{CASE1}/reveal", data={"csrf_token": outsider.token}).status_code == 403
    assert len(entries(dispatch, action="pii.reveal")) == 1


def test_masking_helpers():
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("0418-2345678") == "041*****5678"
    assert mask_phone("12345") == "***45" and mask_phone("") == "" and mask_phone(None) == ""
    assert mask_name("张三") == "张*" and mask_name("欧阳娜娜") == "欧***" and mask_name("张") == "*"
    assert mask_name(None) == ""


def test_mediation_and_supervision_acts_are_audited_by_the_runtime_hook(build_service):
    mediation = build_service("mediation")
    load_demo_accounts(mediation)
    body = {"case_no": CASE1, "district": "210902", "description": "邻里纠纷", "name": "张三",
            "phone": "13800001234", "reason": "先行调解", "summary": "转综治中心调解"}
    with mediation.uow() as uow:
        mediation.runtime.deliver(uow, "dispatch.mediation_requested", body, CASE1)
        uow.commit()
    mediator = client_for(mediation, "mediator", "10.0.0.5")
    mediator.post(f"/cases/{CASE1}/mediate", data={"csrf_token": mediator.token, "outcome": "agreement",
                                                    "result": "双方同意"})
    [entry] = entries(mediation, action="mediation.mediate")
    assert (entry.actor, entry.role, entry.case_no, entry.address) == ("mediator", "mediator", CASE1, "10.0.0.5")

    supervision = build_service("supervision")
    load_demo_accounts(supervision)
    with supervision.uow() as uow:
        supervision.runtime.deliver(uow, "dispatch.deadline_missed", {"case_no": CASE1, "stage": "accept"}, CASE1)
        uow.commit()
        item_id = uow.session.scalars(select(WorkItem.id)).one()
    supervisor = client_for(supervision, "supervisor", "10.0.0.6")
    assert "审计日志" in supervisor.get("/board").get_data(as_text=True)
    supervisor.post("/urge", data={"csrf_token": supervisor.token, "item_id": item_id, "note": "请尽快受理"})
    [entry] = entries(supervision, action="supervision.urge")
    assert (entry.actor, entry.role, entry.case_no, entry.address) == ("supervisor", "supervisor", CASE1, "10.0.0.6")


def test_nothing_updates_or_deletes_audit_rows(build_service, dispatch):
    for name in SERVICES:
        app = create_app(dispatch if name == "dispatch" else build_service(name))
        for rule in app.url_map.iter_rules():
            if rule.endpoint.startswith("audit."):
                assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule
            assert not re.search(r"audit.*(delete|update|edit|purge)", str(rule) + rule.endpoint, re.IGNORECASE), rule
    code = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "services").rglob("*.py"))
    assert not re.search(r"(update|delete)\(\s*AuditEntry|(UPDATE|DELETE FROM)\s+audit_log", code)
    # and the ORM refuses it too
    client_for(dispatch, "fenbo_haizhou")
    with dispatch.uow() as uow:
        entry = uow.session.scalars(select(AuditEntry)).first()
        entry.actor = "someone else"
        with pytest.raises(PermissionError):
            uow.session.flush()
    with dispatch.uow() as uow:
        uow.session.delete(uow.session.scalars(select(AuditEntry)).first())
        with pytest.raises(PermissionError):
            uow.session.flush()
