"""Optimistic locking and the timer sweep on real PostgreSQL, with two writers at once."""
import threading
from datetime import timedelta

from sqlalchemy import func, select

from services.common.clock import FrozenClock
from services.common.models import OutboxMessage, WorkItem
from services.common.workflow.runtime import Conflict, TaskNotFound


def submission(n):
    return {"case_no": f"210902-20261102-{n:04d}", "district": "210902", "name": "张三",
            "phone": "13800001234", "description": "楼上漏水", "category": "", "channel": "web",
            "location": "", "submitted_at": "2026-11-02T09:00:00+00:00"}


def deliver(service, n):
    with service.uow() as uow:
        service.runtime.deliver(uow, "intake.case_submitted", submission(n), submission(n)["case_no"])
        uow.commit()


def test_two_clerks_assigning_at_once_one_wins_one_is_told(pg_service):
    dispatch = pg_service("dispatch")
    deliver(dispatch, 1)
    with dispatch.uow() as uow:
        item = uow.session.scalars(select(WorkItem)).one()
    barrier = threading.Barrier(2)
    outcomes = []

    def clerk(department):
        try:
            barrier.wait(5)  # both clerks press the button at the same moment
            with dispatch.uow() as uow:
                dispatch.runtime.complete(uow, item.id, {"action": "assign", "department": department,
                                                           "department_name": department},
                                          actor=department)
                uow.commit()
            outcomes.append("ok")
        except (Conflict, TaskNotFound) as err:
            outcomes.append(type(err).__name__)
        except threading.BrokenBarrierError:
            outcomes.append("barrier")

    threads = [threading.Thread(target=clerk, args=(d,)) for d in ("zhujian", "gongan")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # The loser is told either that the case changed under it or that the task is gone.
    assert sorted(outcomes) in (["Conflict", "ok"], ["TaskNotFound", "ok"]), outcomes
    with dispatch.uow() as uow:
        handles = uow.session.scalars(select(WorkItem).where(WorkItem.task_name == "accept")).all()
        assigned = uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.routing_key == "dispatch.case_assigned"))
    assert len(handles) == 1 and assigned == 1


def test_timer_sweep_with_two_workers_fires_each_timer_once(pg_service):
    clock = FrozenClock()
    first = pg_service("dispatch", clock=clock)
    second = pg_service("dispatch", clock=clock, database_url=first.settings.database_url_for("dispatch"))
    for n in range(1, 31):
        deliver(first, n)
    clock.advance(timedelta(days=1, minutes=1))
    fired = []
    threads = [threading.Thread(target=lambda s=s: fired.append(s.runtime.fire_due_timers(s.uow)))
               for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with first.uow() as uow:
        missed = uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.routing_key == "dispatch.deadline_missed")).all()
    assert sum(fired) == 30
    assert len(missed) == 30
    assert len({m.envelope["case_no"] for m in missed}) == 30


def test_a_message_being_applied_by_another_consumer_is_applied_once(pg_service):
    """The inbox mark is an INSERT … ON CONFLICT DO NOTHING: a second consumer with the same
    message waits for the first one's transaction; if that commits, it skips the message; if
    it rolls back, it applies it."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from services.common.bus.messages import make_envelope
    from services.common.models import InboxMessage, WorkflowInstance
    from services.common.service import mark_received

    dispatch = pg_service("dispatch")

    def envelope(n):
        return make_envelope("intake.case_submitted", submission(n), "intake", dispatch.clock.now())

    def instances(n):
        with dispatch.uow() as uow:
            return uow.session.scalar(select(func.count()).select_from(WorkflowInstance)
                                      .where(WorkflowInstance.case_no == submission(n)["case_no"]))

    for n, first_commits in ((1, True), (2, False)):
        message = envelope(n)
        with Session(dispatch.engine) as first:  # the first consumer, mid-transaction
            assert mark_received(first, message, dispatch.clock.now())
            second = threading.Thread(target=dispatch.apply_message, args=(message,))
            second.start()
            second.join(1.0)
            assert second.is_alive()  # waiting for the first consumer's transaction
            waiting = first.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
            assert waiting >= 1
            first.commit() if first_commits else first.rollback()
            second.join(10)
            assert not second.is_alive()
        # committed: the second consumer skipped it (the first never applied it here, so no
        # instance); rolled back: the second consumer applied it
        assert instances(n) == (0 if first_commits else 1)
        with dispatch.uow() as uow:
            assert uow.session.get(InboxMessage, message["id"]) is not None
