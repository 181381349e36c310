"""bpmn/mediation.bpmn driven through services/mediation/cases.py on real PostgreSQL with the
injectable clock: a dispute arrives from dispatch as a bus message, a mediator records the
outcome, and the diagram tells dispatch and intake (``mediation.case_mediated``)."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from services.common.bus.messages import make_envelope
from services.common.clock import FrozenClock
from services.common.models import InboxMessage, OutboxMessage, TimelineEntry, WorkItem
from services.mediation import cases
from tests.support.users import User


MEDIATOR = User("mediator", district="210902", display_name="海州区调解员")
CITY_MEDIATOR = User("mediator", display_name="中心调解员")  # no district: every district
OTHER_MEDIATOR = User("mediator", district="210911", display_name="细河区调解员")
DISPATCHER = User("dispatcher", district="210902")
ADMIN = User("admin", display_name="管理员")
CASE = "210902-20261102-0001"
# Monday 2 November 2026, 09:00 China time: ten working days later is Monday 16 November.
MONDAY = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)
REQUEST = {"case_no": CASE, "district": "210902", "description": "邻里因装修噪音多次争吵，要求对方赔偿",
           "name": "张三", "phone": "13800001234", "reason": "邻里纠纷，适合先行调解",
           "summary": "转综治中心调解：邻里纠纷，适合先行调解"}


def request_mediation(service, body=None):
    envelope = make_envelope("dispatch.mediation_requested", body or REQUEST, "dispatch", service.clock.now())
    service.apply_message(envelope)
    return envelope


@pytest.fixture
def mediation(pg_service):
    service = pg_service("mediation", clock=FrozenClock(MONDAY))
    service.first_request = request_mediation(service)
    return service


def waiting(service):
    with service.uow() as uow:
        return [(i.task_name, i.district) for i in uow.session.scalars(select(WorkItem))]


def sent(service, message_type=None):
    with service.uow() as uow:
        rows = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return [r.envelope["body"] for r in rows if message_type in (None, r.routing_key)]


def timeline(service):
    with service.uow() as uow:
        rows = uow.session.scalars(select(TimelineEntry).order_by(TimelineEntry.at, TimelineEntry.id)).all()
    return [(t.title, t.detail, t.public) for t in rows]


def test_the_request_becomes_a_mediation_work_item_with_a_ten_workday_deadline(mediation):
    assert waiting(mediation) == [("mediate", "210902")]
    items, total, overdue = cases.desk(mediation, district="210902")
    assert (total, overdue) == (1, 0)
    [item] = items
    assert item.title == "调解" and item.lane == "调解员"
    assert item.summary["description"] == REQUEST["description"]
    assert item.summary["reason"] == "邻里纠纷，适合先行调解"
    assert item.due_at == datetime(2026, 11, 16, 1, 0, tzinfo=timezone.utc)
    assert cases.desk(mediation, district="210911")[1] == 0
    assert timeline(mediation) == [("收到调解申请", "转综治中心调解：邻里纠纷，适合先行调解", False)]
    assert sent(mediation) == []


def test_agreement_tells_dispatch_and_the_citizen(mediation):
    cases.mediate(mediation, MEDIATOR, CASE, "agreement", "双方同意限定装修时间，互不追究",
                  agreement="装修仅限工作日8:00-18:00")
    assert waiting(mediation) == []
    [mediated] = sent(mediation, "mediation.case_mediated")
    assert mediated == {"case_no": CASE, "outcome": "agreement", "result": "双方同意限定装修时间，互不追究",
                        "agreement": "装修仅限工作日8:00-18:00", "summary": "调解成功：双方同意限定装修时间，互不追究"}
    entries = timeline(mediation)
    assert ("调解", "达成协议：双方同意限定装修时间，互不追究（协议：装修仅限工作日8:00-18:00）", False) in entries
    assert entries[-1] == ("调解成功", "", True)
    record = cases.case_record(mediation, CASE)
    assert record["instance"].status == "complete"
    assert record["data"]["outcome"] == "agreement"
    assert [t.actor for t in record["timeline"] if t.title == "调解"] == ["海州区调解员"]


def test_no_agreement_goes_back_to_dispatch(mediation):
    cases.mediate(mediation, CITY_MEDIATOR, CASE, "no_agreement", "对方拒绝调解",
                  agreement="未达成协议时忽略")
    [mediated] = sent(mediation, "mediation.case_mediated")
    assert mediated["outcome"] == "no_agreement"
    assert mediated["result"] == "对方拒绝调解"
    assert mediated["summary"] == "调解未达成协议，转回分拨"
    assert not mediated.get("agreement")  # the text is dropped without an agreement
    assert timeline(mediation)[-1] == ("调解未达成协议", "", True)
    assert cases.case_record(mediation, CASE)["instance"].status == "complete"


def test_roles_scope_and_input_are_enforced(mediation):
    with pytest.raises(cases.NotAllowed):
        cases.mediate(mediation, OTHER_MEDIATOR, CASE, "agreement", "越权调解")
    with pytest.raises(cases.NotAllowed):
        cases.mediate(mediation, DISPATCHER, CASE, "agreement", "分拨员不能调解")
    with pytest.raises(cases.Invalid, match="调解结果"):
        cases.mediate(mediation, MEDIATOR, CASE, "maybe", "结果不明")
    with pytest.raises(cases.Invalid, match="调解情况"):
        cases.mediate(mediation, MEDIATOR, CASE, "agreement", "   ")
    with pytest.raises(cases.NoSuchTask):
        cases.mediate(mediation, MEDIATOR, "210902-20261102-0099", "agreement", "没有这个案件")
    assert waiting(mediation) == [("mediate", "210902")] and sent(mediation) == []
    record = cases.case_record(mediation, CASE)
    assert cases.may_read(MEDIATOR, record) and cases.may_read(CITY_MEDIATOR, record)
    assert cases.may_read(ADMIN, record)
    assert not cases.may_read(OTHER_MEDIATOR, record) and not cases.may_read(DISPATCHER, record)
    cases.mediate(mediation, ADMIN, CASE, "agreement", "管理员代为登记")
    with pytest.raises(cases.NoSuchTask):
        cases.mediate(mediation, MEDIATOR, CASE, "agreement", "已经办结")


def test_missed_deadline_is_reported_and_mediation_continues(mediation):
    mediation.clock.advance(timedelta(days=13, hours=23))  # Sunday 15 November: not yet due
    assert mediation.runtime.fire_due_timers(mediation.uow) == 0
    mediation.clock.advance(timedelta(days=1, minutes=1))  # Monday 16 November, after 09:00
    assert mediation.runtime.fire_due_timers(mediation.uow) == 1
    assert sent(mediation, "mediation.deadline_missed") == [{"case_no": CASE, "stage": "mediate"}]
    assert ("报告调解超期", "", False) in timeline(mediation)
    items, total, overdue = cases.desk(mediation)
    assert (total, overdue) == (1, 1)  # still open, now marked overdue
    assert mediation.runtime.fire_due_timers(mediation.uow) == 0  # reported once
    cases.mediate(mediation, MEDIATOR, CASE, "no_agreement", "当事人失联")
    assert sent(mediation, "mediation.case_mediated")[0]["outcome"] == "no_agreement"


def test_a_redelivered_request_is_applied_once_and_a_second_open_request_refused(mediation):
    mediation.apply_message(mediation.first_request)  # the same message again: the inbox skips it
    envelope = make_envelope("dispatch.mediation_requested", {**REQUEST, "summary": "又一次转调解"}, "dispatch",
                             mediation.clock.now())
    with pytest.raises(cases.AlreadyMediating):
        mediation.apply_message(envelope)  # a dispatch bug: retried, then dead-lettered with the reason
    assert waiting(mediation) == [("mediate", "210902")]
    with mediation.uow() as uow:
        assert uow.session.get(InboxMessage, envelope["id"]) is None  # refused: nothing applied
    assert [t for t, _, _ in timeline(mediation)] == ["收到调解申请"]


def test_a_case_may_come_back_for_a_second_mediation(mediation):
    cases.mediate(mediation, MEDIATOR, CASE, "no_agreement", "对方不在家")
    mediation.clock.advance(timedelta(days=2))
    request_mediation(mediation, {**REQUEST, "reason": "对方已回家，再次调解", "summary": "再次转调解"})
    assert waiting(mediation) == [("mediate", "210902")]
    record = cases.case_record(mediation, CASE)
    assert record["data"]["reason"] == "对方已回家，再次调解" and "outcome" not in record["data"]
    cases.mediate(mediation, MEDIATOR, CASE, "agreement", "双方和解")
    assert [m["outcome"] for m in sent(mediation, "mediation.case_mediated")] == ["no_agreement", "agreement"]
    assert [t for t, _, _ in timeline(mediation)].count("收到调解申请") == 2
