"""回访 across services over the real PostgreSQL and RabbitMQ: intake, dispatch and
supervision each with its own database and worker (consumer, outbox relay, timer sweep and
intake's notification sender), one frozen clock moved by the test."""
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.clock import FrozenClock
from services.common.models import TimelineEntry, WorkflowInstance, WorkItem
from services.common.worker import Worker
from services.dispatch import cases
from services.intake import callback
from services.intake.models import CitizenRequest, Notification
from services.intake.requests import submit_request
from tests.support.http import wait_for
from tests.support.users import User


DISPATCHER = User("dispatcher", district="210902", display_name="海州区分拨员")
ZHUJIAN = User("handler", department="zhujian", display_name="住建局")
OPERATOR = User("intake_operator", display_name="回访员", username="operator")


@pytest.fixture
def platform(pg_service):
    clock = FrozenClock()
    services = {name: pg_service(name, clock=clock) for name in ("intake", "dispatch", "supervision")}
    workers = [Worker(s, sweep_interval=0.2).start() for s in services.values()]
    yield services
    for worker in workers:
        worker.stop()


def task_names(service, case_no):
    with service.uow() as uow:
        return sorted(i.task_name for i in uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no)))


def item(service, case_no, task):
    with service.uow() as uow:
        return uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no,
                                                          WorkItem.task_name == task)).first()


def status(service, case_no):
    with service.uow() as uow:
        return [i.status for i in uow.session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.case_no == case_no))]


def request(service, case_no):
    with service.uow() as uow:
        return uow.session.get(CitizenRequest, case_no)


def submit(intake, n=1):
    return submit_request(intake, {"district": "210902", "name": f"市民{n}", "phone": f"1390000{n:04d}",
                                   "description": "楼道灯坏了一个月没人修", "channel": "web"}).case_no


def test_unsatisfied_reopens_to_the_same_department_then_satisfied_closes_both(platform):
    intake, dispatch, supervision = platform["intake"], platform["dispatch"], platform["supervision"]
    case = submit(intake)
    wait_for(lambda: item(dispatch, case, "assign"), what="the case in the dispatcher's queue")
    cases.assign(dispatch, DISPATCHER, case, "zhujian")
    cases.accept(dispatch, ZHUJIAN, case)
    cases.reply(dispatch, ZHUJIAN, case, "已更换灯泡")
    wait_for(lambda: item(intake, case, "rate"), what="the rating task after the reply")
    callback.submit_rating(intake, case, "unsatisfied", "只亮了一天又坏了")

    resolve = wait_for(lambda: item(dispatch, case, "resolve"), what="the case back with the department")
    assert resolve.department == "zhujian" and resolve.summary["citizen_comment"] == "只亮了一天又坏了"
    assert resolve.due_at == dispatch.clock.now() + timedelta(days=9)  # Monday + 7 working days
    with dispatch.uow() as uow:
        titles = [t.title for t in uow.session.scalars(select(TimelineEntry).where(TimelineEntry.case_no == case))]
    assert "诉求人不满意" in titles
    urge = wait_for(lambda: item(supervision, case, "urge"), what="supervision's urging task")
    assert urge.summary["stage"] == "dissatisfied"
    wait_for(lambda: request(intake, case).status == "reopened", what="intake: reopened")

    cases.reply(dispatch, ZHUJIAN, case, "已更换整条线路")
    wait_for(lambda: item(intake, case, "rate"), what="the rating task after the second reply")
    callback.submit_rating(intake, case, "satisfied", "")
    wait_for(lambda: status(dispatch, case) == ["complete"], what="dispatch closes the case")
    wait_for(lambda: status(intake, case) == ["complete"], what="intake closes the case")
    assert request(intake, case).status == "closed"
    # The worker's sender delivered every notice (SMS adapter; no SMTP configured).
    wait_for(lambda: _unsent(intake) == 0, what="notifications sent")
    with intake.uow() as uow:
        kinds = [n.kind for n in uow.session.scalars(select(Notification).where(Notification.case_no == case)
                                                     .order_by(Notification.id))]
    assert kinds == ["accepted", "replied", "reopened", "replied", "closed"]


def _unsent(intake):
    with intake.uow() as uow:
        return len(uow.session.scalars(select(Notification).where(Notification.sent_at.is_(None))).all())


def test_no_rating_before_the_deadline_gives_the_operator_a_callback(platform):
    intake, dispatch = platform["intake"], platform["dispatch"]
    case = submit(intake)
    wait_for(lambda: item(dispatch, case, "assign"), what="queue")
    cases.assign(dispatch, DISPATCHER, case, "zhujian")
    cases.accept(dispatch, ZHUJIAN, case)
    cases.reply(dispatch, ZHUJIAN, case, "已修复")
    rate = wait_for(lambda: item(intake, case, "rate"), what="rating task")
    intake.clock.advance(rate.due_at - intake.clock.now() + timedelta(seconds=1))
    wait_for(lambda: task_names(intake, case) == ["callback"], what="the timer's callback item")
    callback.submit_rating(intake, case, "basically_satisfied", "电话回访", operator=OPERATOR)
    wait_for(lambda: status(dispatch, case) == ["complete"], what="dispatch closes")


def test_merged_reporters_are_asked_separately(platform):
    intake, dispatch = platform["intake"], platform["dispatch"]
    first, second = submit(intake, 1), submit(intake, 2)
    wait_for(lambda: item(dispatch, second, "assign") and item(dispatch, first, "assign"), what="both queued")
    cases.merge(dispatch, DISPATCHER, second, first)
    wait_for(lambda: request(intake, second).merged_into == first, what="intake learns the merge")
    cases.assign(dispatch, DISPATCHER, first, "zhujian")
    cases.accept(dispatch, ZHUJIAN, first)
    cases.reply(dispatch, ZHUJIAN, first, "已修复")
    wait_for(lambda: item(intake, first, "rate") and item(intake, second, "rate"), what="both asked")
    callback.submit_rating(intake, first, "satisfied", "")
    wait_for(lambda: request(intake, first).status == "closed", what="closed for the first reporter")
    time.sleep(0.5)  # give a wrong intake.case_closed the time to arrive
    assert status(dispatch, first) == ["waiting"]  # the second reporter has not rated
    callback.submit_rating(intake, second, "unsatisfied", "我家门口的还是坏的")
    wait_for(lambda: item(dispatch, first, "resolve"), what="reopened by the second reporter")
    cases.reply(dispatch, ZHUJIAN, first, "门口的也修好了")
    wait_for(lambda: item(intake, second, "rate"), what="the second reporter asked again")
    assert task_names(intake, first) == []  # the first one's own rating stands
    callback.submit_rating(intake, second, "satisfied", "")
    wait_for(lambda: status(dispatch, first) == ["complete"], what="dispatch closes")
    wait_for(lambda: status(intake, first) == ["complete"] and status(intake, second) == ["complete"],
             what="both reporters' instances end")
