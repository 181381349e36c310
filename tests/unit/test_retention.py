"""Retention (services/common/retention.py): archived cases' personal data anonymised after
FZT_RETENTION_DAYS on the platform clock, in intake, dispatch and mediation; statistics kept;
idempotent; one audit entry per case; the worker's daily schedule; the CLI."""
from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

from click.testing import CliRunner
from sqlalchemy import select

from services.common import retention
from services.common.bus.messages import make_envelope
from services.common.clock import FrozenClock
from services.common.models import AuditEntry, OutboxMessage, TimelineEntry, WorkflowInstance
from services.common.retention import ANONYMISED, Schedule, anonymise
from services.common.web.app import create_app
from services.intake.callback import submit_rating
from services.intake.models import CitizenRequest

NAME, PHONE, OTHER_PHONE = "欧阳娜娜", "13800001234", "13912345678"
CITIZEN = {"district": "海州区", "name": NAME, "phone": PHONE, "email": "nana@example.cn", "category": "housing",
           "description": f"楼上漏水，{NAME}白天不在家，请打{OTHER_PHONE}或邮件 oyn@example.cn",
           "location": "海州区中华路18号3单元502"}
DAYS = retention.DEFAULT_RETENTION_DAYS
PERSONAL = (NAME, PHONE, OTHER_PHONE, "oyn@example.cn", "nana@example.cn", "3单元502")


def everything(service, case_no) -> str:
    """Every stored text of the case in ``service`` (workflow state, timeline, outbox, own rows)."""
    with service.uow() as uow:
        parts = [i.state for i in uow.session.scalars(select(WorkflowInstance).where(WorkflowInstance.case_no == case_no))]
        parts += [t.detail for t in uow.session.scalars(select(TimelineEntry).where(TimelineEntry.case_no == case_no))]
        parts += [m.envelope for m in uow.session.scalars(select(OutboxMessage))
                  if m.envelope["case_no"] == case_no]
        if service.name == "intake":
            from services.intake.models import Notification, SatisfactionRating
            row = uow.session.get(CitizenRequest, case_no)
            parts += [row.name, row.phone, row.email, row.description, row.location]
            parts += [r.comment for r in uow.session.scalars(select(SatisfactionRating))]
            parts += [(n.recipient, n.subject, n.body) for n in uow.session.scalars(
                select(Notification).where(Notification.case_no == case_no))]
    return json.dumps(parts, ensure_ascii=False)


def audit_rows(service):
    with service.uow() as uow:
        return [(e.actor, e.case_no, e.detail, e.at) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == retention.ACTION).order_by(AuditEntry.id))]


def sent(service):
    """Mark the outbox sent (the relay's job), and return the envelopes."""
    with service.uow() as uow:
        rows = uow.session.scalars(select(OutboxMessage)).all()
        for row in rows:
            row.sent_at = service.clock.now()
        uow.commit()
        return [r.envelope for r in rows]


def intake_with_cases(build_service, clock):
    intake = build_service("intake", clock=clock)
    client = create_app(intake).test_client()
    handled = client.post("/api/v1/requests", json=CITIZEN).get_json()
    still_open = client.post("/api/v1/requests", json={**CITIZEN, "name": "李四"}).get_json()
    sent(intake)
    no = handled["case_no"]
    for message, body in (("dispatch.case_assigned", {"department": "zhujian", "department_name": "市住建局"}),
                          ("dispatch.case_handled", {"department": "zhujian",
                                                     "reply": f"已联系{NAME}（{PHONE}）上门维修"})):
        summary = body.get("reply", "")  # what a diagram may put on the timeline
        intake.apply_message(make_envelope(message, {"case_no": no, "summary": summary, **body}, "dispatch",
                                           clock.now()))
    # 回访: the citizen is satisfied (with a comment), dispatch closes the case (docs/satisfaction.md)
    submit_rating(intake, no, "satisfied", f"很满意，有事再打{OTHER_PHONE}")
    intake.apply_message(make_envelope("dispatch.case_closed", {"case_no": no, "summary": ""}, "dispatch",
                                       clock.now()))
    sent(intake)
    return intake, handled, still_open


def photo_row(model, case_no, **extra):
    return model(case_no=case_no, sha256="a" * 64, content_type="image/jpeg", size=10, filename="IMG_1.jpg", **extra)


def test_intake_anonymises_archived_requests_after_the_period_and_keeps_the_statistics(build_service):
    from services.intake.models import RequestPhoto
    clock = FrozenClock()
    intake, handled, still_open = intake_with_cases(build_service, clock)
    no = handled["case_no"]
    with intake.uow() as uow:
        uow.add(photo_row(RequestPhoto, no, position=1))
        uow.commit()
    with intake.uow() as uow:
        assert uow.session.get(CitizenRequest, no).status == "closed"
        created_at = uow.session.get(CitizenRequest, no).created_at
    assert all(p in everything(intake, no) for p in PERSONAL)

    clock.advance(timedelta(days=DAYS - 1))
    assert anonymise(intake) == [] and audit_rows(intake) == []  # not yet

    clock.advance(timedelta(days=2))
    [planned] = anonymise(intake, dry_run=True)
    assert planned.case_no == no and {"name", "phone", "location", "description"} <= set(planned.fields)
    assert PHONE in everything(intake, no) and audit_rows(intake) == []  # a dry run changes nothing

    [done] = anonymise(intake)
    assert done.case_no == no and {"citizen_requests", "workflow", "timeline", "outbox", "request_photos",
                                   "satisfaction_ratings", "notifications"} <= set(done.records)
    stored = everything(intake, no)
    assert not [p for p in PERSONAL if p in stored], stored
    with intake.uow() as uow:
        row = uow.session.get(CitizenRequest, no)
        assert (row.name, row.phone, row.location, row.email) == (ANONYMISED,) * 4
        assert row.description.startswith("楼上漏水") and "＊＊＊" in row.description
        # statistics stay: district, category, channel, status, dates, tracking code
        assert (row.district, row.category, row.channel, row.status) == ("210902", "housing", "web", "closed")
        assert row.created_at == created_at and row.tracking_code == handled["tracking_code"]
        assert uow.session.scalars(select(RequestPhoto)).all() == []  # no page can show the photo
        # the open request is not archived: untouched
        assert uow.session.get(CitizenRequest, still_open["case_no"]).name == "李四"
    [(actor, case_no, detail, at)] = audit_rows(intake)
    assert (actor, case_no, detail["retention_days"], at) == ("fzt-retention", no, DAYS, clock.now())
    assert set(detail["anonymised"]) == set(done.fields) and detail["records"] == done.records
    assert PHONE not in json.dumps(detail, ensure_ascii=False)

    # idempotent: nothing to do, no second entry, even days later
    assert anonymise(intake) == []
    clock.advance(timedelta(days=30))
    assert anonymise(intake) == [] and len(audit_rows(intake)) == 1

    # the citizen's status page still works, without personal data
    status = create_app(intake).test_client().get(
        f"/api/v1/requests/{no}?tracking_code={handled['tracking_code']}").get_json()
    assert status["status"] == "closed" and status["district"] == "210902"


def test_dispatch_and_mediation_anonymise_their_own_copies(build_service):
    clock = FrozenClock()
    dispatch, mediation = build_service("dispatch", clock=clock), build_service("mediation", clock=clock)
    from services.dispatch import cases as dispatch_cases
    no = "210902-20261102-0001"
    submitted = {"case_no": no, "district": "210902", "name": NAME, "phone": PHONE,
                 "description": CITIZEN["description"], "category": "housing", "channel": "web",
                 "location": CITIZEN["location"], "submitted_at": clock.now().isoformat()}
    dispatch.apply_message(make_envelope("intake.case_submitted", submitted, "intake", clock.now()))
    admin = SimpleNamespace(username="admin", role="admin", district=None, department=None, display_name="管理员")
    dispatch_cases.send_to_mediation(dispatch, admin, no, f"当事人{NAME}情绪激动")
    [request] = [e for e in sent(dispatch) if e["type"] == "dispatch.mediation_requested"]
    mediation.apply_message(request)
    with mediation.uow() as uow:
        from services.common.models import WorkItem
        item = uow.session.scalars(select(WorkItem)).one()
        mediation.runtime.complete(uow, item.id, {"outcome": "agreement", "result": f"{NAME}同意和解",
                                                  "agreement": ""}, actor="调解员", note="调解成功")
        uow.commit()
    [answer] = [e for e in sent(mediation) if e["type"] == "mediation.case_mediated"]
    dispatch.apply_message(answer)
    dispatch.apply_message(make_envelope("intake.case_closed", {  # the citizen was satisfied
        "case_no": no, "reporter_case_no": no, "rating": "satisfied", "comment": f"{NAME}很满意"},
        "intake", clock.now()))
    sent(dispatch)  # unsent messages are left alone: the relay sends them first
    with dispatch.uow() as uow:
        assert {i.status for i in uow.session.scalars(select(WorkflowInstance))} == {"complete"}

    from services.dispatch.models import CaseFile
    with dispatch.uow() as uow:
        uow.add(photo_row(CaseFile, no, kind="photo", created_at=clock.now()))
        uow.add(photo_row(CaseFile, no, kind="attachment", created_at=clock.now(), uploaded_by="bm_zhujian",
                          department="zhujian"))
        uow.commit()
    clock.advance(timedelta(days=DAYS + 1))
    for service in (dispatch, mediation):
        assert all(p in everything(service, no) for p in (NAME, PHONE)), service.name
        [done] = anonymise(service)
        stored = everything(service, no)
        assert not [p for p in PERSONAL if p in stored], (service.name, stored)
        assert '"district": "210902"' in stored and '"category": "housing"' in stored
        assert len(audit_rows(service)) == 1 and anonymise(service) == []
    with dispatch.uow() as uow:  # the citizen's photo is unlinked, the department's attachment kept
        assert [f.kind for f in uow.session.scalars(select(CaseFile))] == ["attachment"]
    with mediation.uow() as uow:
        [instance] = uow.session.scalars(select(WorkflowInstance)).all()
        assert instance.state["data"]["outcome"] == "agreement"  # what the statistics count


def test_the_worker_runs_it_once_a_day_on_the_platform_clock(build_service):
    clock = FrozenClock()
    intake, handled, _ = intake_with_cases(build_service, clock)
    schedule = Schedule(intake)
    assert schedule.run_if_due() == 0  # due at start: nothing archived long enough yet
    clock.advance(timedelta(days=DAYS) - timedelta(hours=1))
    assert schedule.run_if_due() == 0  # ran: the case is due in an hour
    clock.advance(timedelta(hours=2))
    assert schedule.run_if_due() == 0  # due now, but the last run was less than a day ago
    clock.advance(timedelta(hours=22))
    assert schedule.run_if_due() == 1
    with intake.uow() as uow:
        assert uow.session.get(CitizenRequest, handled["case_no"]).name == ANONYMISED
    off = Schedule(build_service("dispatch", clock=clock, retention_days=0))
    assert off.run_if_due() == 0 and off.next_run is None  # FZT_RETENTION_DAYS=0: off


def test_the_command_line(build_service, tmp_path, monkeypatch):
    from services.common.cli import main
    clock = FrozenClock()  # the CLI reads the real clock: these cases are weeks old by then
    intake, handled, _ = intake_with_cases(build_service, clock)
    monkeypatch.setenv("FZT_DATABASE_URL_INTAKE", str(intake.engine.url))
    monkeypatch.setenv("FZT_VAR_DIR", str(tmp_path))
    runner = CliRunner()
    dry = runner.invoke(main, ["privacy", "anonymise", "intake", "--dry-run", "--days", "1"])
    assert dry.exit_code == 0, dry.output
    assert f"intake: would anonymise 1 case(s)" in dry.output and handled["case_no"] in dry.output
    assert audit_rows(intake) == []
    done = runner.invoke(main, ["privacy", "anonymise", "intake", "--days", "1"])
    assert done.exit_code == 0 and "intake: anonymised 1 case(s)" in done.output, done.output
    assert len(audit_rows(intake)) == 1
    assert "0 case(s)" in runner.invoke(main, ["privacy", "anonymise", "intake", "--days", "1"]).output
    refused = runner.invoke(main, ["privacy", "anonymise", "intake", "--days", "0"])
    assert refused.exit_code != 0
