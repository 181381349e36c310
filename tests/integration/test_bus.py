"""Outbox → RabbitMQ → inbox, exactly once; bad and failing messages end in the dead-letter queue."""
import json
import time
import uuid

from kombu import Connection, Producer
from sqlalchemy import update

from services.common.bus.messages import make_envelope
from services.common.models import InboxMessage, OutboxMessage, WorkflowInstance, WorkItem
from services.common.worker import Worker
from services.intake.requests import submit_request
from tests.support.db import count
from tests.support.http import wait_for


def request(n):
    return {"district": "210902", "name": "张三", "phone": "13800001234",
            "description": f"第{n}号诉求：楼上漏水", "category": "", "channel": "web", "location": ""}


def dead_letters(service, amqp_url, expected, timeout=20):
    """Drain the service's dead-letter queue until ``expected`` messages arrived."""
    got = []
    with Connection(amqp_url) as conn:
        queue = service.topology.dead_letter_queue(service.name)(conn.default_channel)
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.1)
                continue
            got.append(message)
    return got


def test_outbox_to_inbox_exactly_once_even_when_the_relay_republishes(pg_service):
    intake, dispatch = pg_service("intake"), pg_service("dispatch")
    workers = [Worker(intake).start(), Worker(dispatch).start()]
    try:
        for n in range(20):
            submit_request(intake, request(n))
        wait_for(lambda: count(dispatch, WorkItem, WorkItem.task_name == "assign") == 20, what="20 cases in queue")
        # Simulate a relay that crashed after publishing but before marking: everything goes out again.
        with intake.uow() as uow:
            uow.session.execute(update(OutboxMessage).values(sent_at=None))
            uow.commit()
        workers[0].outbox_has_work.set()
        wait_for(lambda: count(intake, OutboxMessage, OutboxMessage.sent_at.is_(None)) == 0, what="republish")
        time.sleep(1.0)  # give the consumer time to (not) apply the duplicates
    finally:
        for worker in workers:
            worker.stop()
    assert count(dispatch, WorkflowInstance) == 20
    assert count(dispatch, InboxMessage) == 20
    assert count(dispatch, WorkItem, WorkItem.task_name == "assign") == 20


def test_undecodable_and_invalid_messages_are_dead_lettered_with_a_reason(pg_service):
    dispatch = pg_service("dispatch")
    worker = Worker(dispatch).start()
    try:
        with Connection(pg_service.amqp_url) as conn:
            producer = Producer(conn.default_channel, exchange=dispatch.topology.exchange)
            producer.publish(b"\xff not json", routing_key="intake.case_submitted",
                             content_type="application/json", content_encoding="binary")
            producer.publish("plain text", routing_key="intake.case_submitted", content_type="text/plain")
            bad_body = {"id": str(uuid.uuid4()), "type": "intake.case_submitted", "version": 1,
                        "occurred_at": "2026-11-25T09:00:00+00:00", "case_no": "X-1", "source": "intake",
                        "body": {"case_no": "X-1"}}
            producer.publish(bad_body, routing_key="intake.case_submitted", serializer="json")
        letters = dead_letters(dispatch, pg_service.amqp_url, 3)
    finally:
        worker.stop()
    reasons = sorted(m.headers["x-fzt-reason"] for m in letters)
    assert len(letters) == 3
    assert any("cannot decode" in r for r in reasons)
    assert any("invalid message" in r and "district" in r for r in reasons)
    assert all(m.headers["x-fzt-routing-key"] == "intake.case_submitted" for m in letters)
    assert count(dispatch, WorkflowInstance) == 0


def test_a_message_whose_handler_keeps_failing_is_dead_lettered(pg_service):
    dispatch = pg_service("dispatch")
    calls = []

    def failing(service, uow, envelope):
        calls.append(envelope["id"])
        raise RuntimeError("department directory unavailable")

    dispatch.definition.listeners.by_type.setdefault("intake.case_submitted", []).append(failing)
    try:
        worker = Worker(dispatch).start()
        envelope = make_envelope("intake.case_submitted", {
            "case_no": "210902-20261125-0001", "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "漏水", "category": "", "channel": "web", "location": "",
            "submitted_at": "2026-11-25T09:00:00+00:00"}, "intake", dispatch.clock.now())
        with Connection(pg_service.amqp_url) as conn:
            Producer(conn.default_channel).publish(envelope, exchange=dispatch.topology.exchange,
                                                   routing_key="intake.case_submitted", serializer="json")
        [letter] = dead_letters(dispatch, pg_service.amqp_url, 1)
        worker.stop()
    finally:
        dispatch.definition.listeners.by_type["intake.case_submitted"].remove(failing)
    assert "department directory unavailable" in letter.headers["x-fzt-reason"]
    assert json.loads(letter.body)["id"] == envelope["id"]  # the original, untouched, for replay
    assert len(calls) == 3
    assert count(dispatch, WorkflowInstance) == 0 and count(dispatch, InboxMessage) == 0
