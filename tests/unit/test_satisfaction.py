"""回访 (satisfaction callback): every path of the rating part of bpmn/intake.bpmn and of
dispatch's wait for it, across intake, dispatch and supervision on SQLite with one frozen
clock. The bus is played by ``pump``: each committed outbox message is applied to every
service whose diagrams bind its routing key, as RabbitMQ would (tests/integration does the
same over the real broker)."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from services.common.clock import FrozenClock
from services.common.models import OutboxMessage, StaffUser, TimelineEntry, WorkflowInstance, WorkItem
from services.common.web.app import create_app
from services.common.web.auth import hash_password, make_token
from services.dispatch import cases
from services.intake import callback, notify
from services.intake.models import CitizenRequest, Notification, SatisfactionRating
from services.intake.requests import submit_request
from tests.support.users import User

# Monday 2 November 2026, 09:00 China time.
MONDAY = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)

DISPATCHER = User("dispatcher", district="210902", display_name="海州区分拨员")
ZHUJIAN = User("handler", department="zhujian", display_name="住建局办理人")
OPERATOR = User("intake_operator", display_name="回访员小李", username="operator")


def citizen(n=1, **extra):
    return {"district": "210902", "name": f"市民{n}", "phone": f"1380000{n:04d}",
            "description": "楼上漏水，天花板一直滴水", "category": "", "channel": "web", "location": "", **extra}


class Platform:
    """intake + dispatch + supervision sharing one frozen clock, wired by ``pump``."""

    def __init__(self, build_service):
        self.clock = FrozenClock(MONDAY)
        self.intake = build_service("intake", clock=self.clock)
        self.dispatch = build_service("dispatch", clock=self.clock)
        self.supervision = build_service("supervision", clock=self.clock)
        self.services = [self.intake, self.dispatch, self.supervision]
        self.keys = {s.name: s.routing_keys() for s in self.services}

    def pump(self):
        moved = True
        while moved:
            moved = False
            for source in self.services:
                with source.uow() as uow:
                    rows = uow.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                                               .order_by(OutboxMessage.id)).all()
                    for row in rows:
                        row.sent_at = self.clock.now()
                    envelopes = [row.envelope for row in rows]
                    uow.commit()
                for envelope in envelopes:
                    moved = True
                    for target in self.services:
                        if envelope["type"] in self.keys[target.name]:
                            target.apply_message(envelope)

    def submit(self, n=1, **extra):
        request = submit_request(self.intake, citizen(n, **extra))
        self.pump()
        return request.case_no

    def reply(self, case_no, text="已联系物业修复漏水点", assign=True):
        if assign:
            cases.assign(self.dispatch, DISPATCHER, case_no, "zhujian")
            cases.accept(self.dispatch, ZHUJIAN, case_no)
        cases.reply(self.dispatch, ZHUJIAN, case_no, text)
        self.pump()

    def rate(self, case_no, rating, comment="", operator=None):
        callback.submit_rating(self.intake, case_no, rating, comment, operator=operator)
        self.pump()

    def fire_timers(self):
        fired = sum(s.runtime.fire_due_timers(s.uow) for s in self.services)
        self.pump()
        return fired


@pytest.fixture
def platform(build_service):
    return Platform(build_service)


def items(service, **where):
    with service.uow() as uow:
        return uow.session.scalars(select(WorkItem).filter_by(**where).order_by(WorkItem.created_at)).all()


def tasks(service, case_no):
    return sorted(i.task_name for i in items(service, case_no=case_no))


def sent(service, message_type):
    with service.uow() as uow:
        rows = uow.session.scalars(select(OutboxMessage).where(OutboxMessage.routing_key == message_type)
                                   .order_by(OutboxMessage.id)).all()
    return [r.envelope["body"] for r in rows]


def instance_status(service, case_no):
    with service.uow() as uow:
        return [i.status for i in uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == case_no).order_by(WorkflowInstance.id))]


def request(service, case_no) -> CitizenRequest:
    with service.uow() as uow:
        return uow.session.get(CitizenRequest, case_no)


def timeline(service, case_no, public=None):
    with service.uow() as uow:
        query = select(TimelineEntry).where(TimelineEntry.case_no == case_no)
        if public is not None:
            query = query.where(TimelineEntry.public.is_(public))
        return [(t.title, t.detail) for t in uow.session.scalars(query.order_by(TimelineEntry.at, TimelineEntry.id))]


def notifications(service, case_no):
    with service.uow() as uow:
        return [n.kind for n in notify.for_case(uow.session, case_no)]


def test_a_reply_asks_the_citizen_and_satisfied_closes_the_case_in_both_services(platform):
    case = platform.submit()
    assert notifications(platform.intake, case) == ["accepted"]
    platform.reply(case)
    assert tasks(platform.intake, case) == ["rate"]
    [item] = items(platform.intake, case_no=case)
    # Replied Monday 09:00: three working days later is Thursday 09:00 (China time).
    assert item.due_at == MONDAY + timedelta(days=3)
    assert request(platform.intake, case).status == "handled"
    assert notifications(platform.intake, case) == ["accepted", "replied"]
    assert instance_status(platform.dispatch, case) == ["waiting"]  # waits for the rating
    assert "await_rating" in cases.case_record(platform.dispatch, case)["active"]

    platform.rate(case, "basically_satisfied", "处理及时")
    [closed] = sent(platform.intake, "intake.case_closed")
    assert closed == {"case_no": case, "reporter_case_no": case, "rating": "basically_satisfied",
                      "comment": "处理及时", "summary": "诉求人评价：基本满意"}
    assert instance_status(platform.dispatch, case) == ["complete"]
    assert ("诉求人满意", "诉求人评价：基本满意") in timeline(platform.dispatch, case)
    assert instance_status(platform.intake, case) == ["complete"]
    assert request(platform.intake, case).status == "closed"
    assert notifications(platform.intake, case) == ["accepted", "replied", "closed"]
    public = [title for title, _ in timeline(platform.intake, case, public=True)]
    assert public[-3:] == ["已答复", "诉求人评价", "已办结"]
    assert sent(platform.intake, "intake.case_reopened") == []
    assert items(platform.supervision) == []


def test_unsatisfied_reopens_to_the_same_department_with_the_comment_and_a_fresh_deadline(platform):
    case = platform.submit()
    platform.reply(case, "已督促物业维修")
    platform.clock.advance(timedelta(days=1))  # Tuesday 09:00
    platform.rate(case, "unsatisfied", "物业没有来修，仍在漏水")
    [reopened] = sent(platform.intake, "intake.case_reopened")
    assert reopened["comment"] == "物业没有来修，仍在漏水" and reopened["reporter_case_no"] == case
    [resolve] = items(platform.dispatch, case_no=case)
    assert (resolve.task_name, resolve.department) == ("resolve", "zhujian")
    # Seven working days from Tuesday 11-03 09:00 → Thursday 11-12 09:00.
    assert resolve.due_at == datetime(2026, 11, 12, 1, 0, tzinfo=timezone.utc)
    data = cases.case_record(platform.dispatch, case)["data"]
    assert data["citizen_comment"] == "物业没有来修，仍在漏水" and data["reopen_count"] == 1
    assert data["reopens"] == [{"rating": "unsatisfied", "comment": "物业没有来修，仍在漏水", "reply": "已督促物业维修"}]
    assert resolve.summary["citizen_comment"] == "物业没有来修，仍在漏水"
    assert ("诉求人不满意", "诉求人对办理结果不满意：物业没有来修，仍在漏水") in timeline(platform.dispatch, case)
    # intake: the reporter's timeline and status; supervision: an urging task.
    assert request(platform.intake, case).status == "reopened"
    assert ("已退回承办部门重新办理", "诉求人对办理结果不满意，已重新办理") in timeline(platform.intake, case, public=True)
    assert notifications(platform.intake, case)[-1] == "reopened"
    [urge] = items(platform.supervision)
    assert urge.summary == {"stage": "dissatisfied", "comment": "物业没有来修，仍在漏水"}

    platform.reply(case, "已更换破损管道，漏水已止住", assign=False)
    assert tasks(platform.intake, case) == ["rate"]
    assert request(platform.intake, case).status == "handled"
    platform.rate(case, "satisfied")
    assert instance_status(platform.dispatch, case) == ["complete"]
    assert instance_status(platform.intake, case) == ["complete"]
    assert request(platform.intake, case).status == "closed"
    with platform.intake.uow() as uow:
        ratings = [(r.reply_round, r.rating) for r in callback.ratings_of(uow.session, case)]
    assert ratings == [(1, "unsatisfied"), (2, "satisfied")]


def test_no_rating_within_three_working_days_becomes_a_callback_for_an_operator(platform):
    case = platform.submit()
    platform.clock.advance(timedelta(days=4))  # Friday 09:00: the deadline crosses the weekend
    platform.reply(case)
    [item] = items(platform.intake, case_no=case)
    assert item.due_at == MONDAY + timedelta(days=9)  # Friday + 3 working days = next Wednesday
    platform.clock.advance(item.due_at - platform.clock.now() - timedelta(minutes=1))
    assert platform.fire_timers() == 0
    assert tasks(platform.intake, case) == ["rate"]
    platform.clock.advance(timedelta(minutes=2))
    assert platform.fire_timers() >= 1
    assert tasks(platform.intake, case) == ["callback"]
    overdue, waiting = callback.callback_list(platform.intake)
    assert [i.case_no for i, _ in overdue] == [case] and waiting == []
    platform.rate(case, "satisfied", "电话回访：已修好", operator=OPERATOR)
    assert instance_status(platform.dispatch, case) == ["complete"]
    with platform.intake.uow() as uow:
        [rating] = uow.session.scalars(select(SatisfactionRating)).all()
    assert (rating.source, rating.actor, rating.rating) == ("callback", "回访员小李", "satisfied")
    assert ("电话回访", "满意：电话回访：已修好") in timeline(platform.intake, case, public=True)


def merged_pair(platform):
    first, second = platform.submit(1), platform.submit(2)
    cases.merge(platform.dispatch, DISPATCHER, second, first)
    platform.pump()
    assert request(platform.intake, second).merged_into == first
    return first, second


def test_merged_reporters_are_asked_separately_and_any_unsatisfied_reopens(platform):
    first, second = merged_pair(platform)
    platform.reply(first)
    assert tasks(platform.intake, first) == ["rate"] and tasks(platform.intake, second) == ["rate"]
    assert notifications(platform.intake, second) == ["accepted", "replied"]
    assert ("已答复", "已联系物业修复漏水点") in timeline(platform.intake, second, public=True)

    platform.rate(first, "satisfied")  # closed for the first reporter; the second has not rated
    assert request(platform.intake, first).status == "closed"
    assert sent(platform.intake, "intake.case_closed") == []
    assert instance_status(platform.dispatch, first) == ["waiting"]

    platform.rate(second, "unsatisfied", "我家还在漏")
    [reopened] = sent(platform.intake, "intake.case_reopened")
    assert (reopened["case_no"], reopened["reporter_case_no"]) == (first, second)
    assert [(i.task_name, i.department) for i in items(platform.dispatch, case_no=first)] == [("resolve", "zhujian")]
    assert request(platform.intake, first).status == "closed"  # their own rating stands

    platform.reply(first, "已修复二楼管道", assign=False)
    assert tasks(platform.intake, first) == [] and tasks(platform.intake, second) == ["rate"]
    assert ("已答复", "已修复二楼管道") in timeline(platform.intake, first, public=True)
    platform.rate(second, "satisfied")
    [closed] = sent(platform.intake, "intake.case_closed")
    assert (closed["case_no"], closed["reporter_case_no"]) == (first, second)
    assert instance_status(platform.dispatch, first) == ["complete"]
    assert instance_status(platform.intake, first) == ["complete"]
    assert instance_status(platform.intake, second) == ["complete"]
    assert {request(platform.intake, c).status for c in (first, second)} == {"closed"}


def test_a_reporter_still_to_rate_is_asked_again_after_another_reopened_the_case(platform):
    first, second = merged_pair(platform)
    platform.reply(first)
    platform.rate(first, "unsatisfied", "没有解决")
    assert tasks(platform.intake, second) == []  # the old reply's rating task is withdrawn
    assert request(platform.intake, second).status == "reopened"
    assert ("其他诉求人不满意，重新办理", "诉求人对办理结果不满意，已重新办理") in timeline(
        platform.intake, second, public=True)
    platform.reply(first, "已彻底维修", assign=False)
    assert tasks(platform.intake, first) == ["rate"] and tasks(platform.intake, second) == ["rate"]
    platform.rate(second, "satisfied")
    assert sent(platform.intake, "intake.case_closed") == []
    platform.rate(first, "satisfied")
    assert len(sent(platform.intake, "intake.case_closed")) == 1
    assert instance_status(platform.dispatch, first) == ["complete"]


def test_two_unsatisfied_ratings_of_one_reply_reopen_the_case_once(platform):
    first, second = merged_pair(platform)
    platform.reply(first)
    callback.submit_rating(platform.intake, first, "unsatisfied", "没修好")
    callback.submit_rating(platform.intake, second, "unsatisfied", "也没修好")  # before dispatch heard
    platform.pump()
    assert len(sent(platform.intake, "intake.case_reopened")) == 1
    assert tasks(platform.dispatch, first) == ["resolve"]
    platform.reply(first, "已修好", assign=False)
    assert tasks(platform.intake, first) == ["rate"] and tasks(platform.intake, second) == ["rate"]


def test_a_case_being_rated_takes_no_new_duplicate(platform):
    first = platform.submit(1)
    platform.reply(first)
    late = platform.submit(2)
    with pytest.raises(cases.Invalid, match="正在回访"):
        cases.merge(platform.dispatch, DISPATCHER, late, first)


def test_rating_is_refused_when_the_case_waits_for_none(platform):
    case = platform.submit()
    with pytest.raises(callback.NotRatable):
        callback.submit_rating(platform.intake, case, "satisfied", "")
    platform.reply(case)
    platform.rate(case, "satisfied")
    with pytest.raises(callback.NotRatable):
        callback.submit_rating(platform.intake, case, "unsatisfied", "改主意了")


# -- notifications -----------------------------------------------------------------------------

class Flaky:
    channel = "sms"

    def __init__(self, failures):
        self.failures, self.sent = failures, []

    def send(self, note):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("短信网关无响应")
        self.sent.append(note.body)
        return f"ref-{note.id}"


def test_notifications_are_sent_after_commit_and_retried_until_they_go(platform):
    case = platform.submit(1, email="zhang@example.com")
    with platform.intake.uow() as uow:
        rows = notify.for_case(uow.session, case)
    assert [(n.kind, n.channel) for n in rows] == [("accepted", "sms"), ("accepted", "email")]
    code = request(platform.intake, case).tracking_code
    assert code in rows[0].body and case in rows[0].body
    adapter = Flaky(failures=2)
    assert notify.deliver_pending(platform.intake, {"sms": adapter}) == 0  # failed once, paused
    with platform.intake.uow() as uow:
        sms = uow.session.scalars(select(Notification).where(Notification.channel == "sms")).one()
    assert (sms.attempts, sms.sent_at) == (1, None) and "短信网关无响应" in sms.last_error
    assert sms.next_attempt_at == MONDAY + timedelta(seconds=30)
    assert notify.deliver_pending(platform.intake, {"sms": adapter}) == 0  # not due yet
    platform.clock.advance(timedelta(seconds=30))
    assert notify.deliver_pending(platform.intake, {"sms": adapter}) == 0  # second failure: 60 s
    platform.clock.advance(timedelta(seconds=60))
    assert notify.deliver_pending(platform.intake, {"sms": adapter}) == 1
    with platform.intake.uow() as uow:
        rows = notify.for_case(uow.session, case)
    assert rows[0].sent_at == platform.clock.now() and rows[0].provider_ref == f"ref-{rows[0].id}"
    assert rows[1].sent_at is None  # no e-mail adapter configured: it waits, it is not lost
    assert notify.pause_after(20) == timedelta(hours=1)


def test_due_notifications_go_in_batches_and_one_failure_keeps_only_its_own_row(platform):
    cases = [platform.submit(n) for n in range(1, notify.SEND_BATCH + 3)]  # more than a batch
    adapter = Flaky(failures=1)  # the first row of the first batch fails
    commits = []
    event.listen(platform.intake.engine, "commit", lambda _conn: commits.append(1))
    assert notify.deliver_pending(platform.intake, {"sms": adapter}, limit=5) == 4  # the limit holds
    assert notify.deliver_pending(platform.intake, {"sms": adapter}) == len(cases) - 5
    assert len(commits) == 2  # 5 rows, then the remaining 7: one transaction each
    with platform.intake.uow() as uow:
        waiting = uow.session.scalars(select(Notification).where(Notification.sent_at.is_(None))).all()
    assert len(waiting) == 1 and waiting[0].attempts == 1 and "短信网关无响应" in waiting[0].last_error


def test_a_failing_step_writes_no_notification(platform):
    """The notification row commits with the step that caused it, or not at all."""
    with pytest.raises(Exception):
        with platform.intake.uow() as uow:
            submit_request(platform.intake, citizen(1), uow)
            raise RuntimeError("the step fails before commit")
    with platform.intake.uow() as uow:
        assert uow.session.scalars(select(Notification)).all() == []


def test_reply_text_is_cut_for_sms_but_whole_by_e_mail(platform):
    case = platform.submit(1, email="zhang@example.com")
    long_reply = "经现场核查，" + "维修" * 100
    platform.reply(case, long_reply)
    with platform.intake.uow() as uow:
        replied = {n.channel: n for n in notify.for_case(uow.session, case) if n.kind == "replied"}
    assert long_reply in replied["email"].body and "3个工作日内" in replied["email"].body
    assert long_reply not in replied["sms"].body and "…" in replied["sms"].body
    assert notify.mask_recipient(replied["sms"]) == "138****0001"
    assert notify.mask_recipient(replied["email"]) == "z***@example.com"


def test_the_supervision_board_masks_numbers_in_the_citizens_comment(platform):
    case = platform.submit()
    platform.reply(case, "已督促物业维修")
    platform.rate(case, "unsatisfied", "没有人来修，请回电13912345678")
    with platform.supervision.uow() as uow:
        uow.add(StaffUser(username="duban", display_name="督办员", role="supervisor",
                          password_hash=hash_password("correct-horse-1"), active=True))
        uow.commit()
    app = create_app(platform.supervision)
    token = make_token(app.config["SECRET_KEY"], "duban")
    html = app.test_client().get("/board", headers={"Authorization": f"Bearer {token}"}).get_data(as_text=True)
    assert "诉求人意见：没有人来修，请回电" in html and "13912345678" not in html
