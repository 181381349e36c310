"""Schema evolution on the real bus: a message of the previous version, as an older intake
publishes it, is applied by the current dispatch worker; a version from the future is
dead-lettered with a reason that says so (docs/schema-evolution.md)."""
import json
import uuid

from kombu import Connection, Producer
from sqlalchemy import select

from services.common.bus.messages import body_version
from services.common.models import InboxMessage, WorkflowInstance, WorkItem
from services.common.worker import Worker

from .test_bus import count, dead_letters, wait_for

CASE_NO = "210902-20261125-0042"
V1_BODY = {"case_no": CASE_NO, "district": "210902", "name": "张三", "phone": "13800001234",
           "description": "路口信号灯不亮", "category": "", "channel": "open311",
           "location": "经纬度 41.990000,121.650000", "submitted_at": "2026-11-25T09:00:00+00:00"}


def envelope(version: int, body: dict, case_no: str = CASE_NO) -> dict:
    return {"id": str(uuid.uuid4()), "type": "intake.case_submitted", "version": version,
            "occurred_at": "2026-11-25T09:00:00+00:00", "case_no": case_no, "source": "intake",
            "body": body}


def publish(service, amqp_url, *envelopes):
    with Connection(amqp_url) as conn:
        producer = Producer(conn.default_channel, exchange=service.topology.exchange)
        for message in envelopes:
            producer.publish(message, routing_key=message["type"], serializer="json")


def test_previous_version_is_applied_and_a_future_one_dead_lettered(pg_service):
    dispatch = pg_service("dispatch")
    assert body_version("intake.case_submitted") == 2  # v1 is "the previous version" here
    old = envelope(1, V1_BODY)
    future_no = "210902-20261125-0043"
    future = envelope(3, {**V1_BODY, "case_no": future_no, "reporter": {"name": "张三"}}, future_no)
    seen = []  # what dispatch's code is handed: the body as the current version

    def listener(service, uow, message):
        seen.append((message["version"], message["body"]))

    listeners = dispatch.definition.listeners.by_type.setdefault("intake.case_submitted", [])
    listeners.append(listener)
    worker = Worker(dispatch).start()
    try:
        publish(dispatch, pg_service.amqp_url, old, future)
        wait_for(lambda: count(dispatch, WorkItem, WorkItem.case_no == CASE_NO,
                               WorkItem.task_name == "assign") == 1, what="the v1 case in the queue")
        [letter] = dead_letters(dispatch, pg_service.amqp_url, 1)
    finally:
        worker.stop()
        listeners.remove(listener)

    # applied once, as version 2: the point the v1 message only had in its label, as numbers
    [(version, body)] = seen
    assert version == 2 and (body["latitude"], body["longitude"]) == (41.99, 121.65)
    with dispatch.uow() as uow:
        [instance] = uow.session.scalars(select(WorkflowInstance).where(WorkflowInstance.case_no == CASE_NO))
        data = dispatch.runtime.snapshot(uow.session, instance)["data"]
        assert uow.session.get(InboxMessage, old["id"]) is not None
    assert data["description"] == "路口信号灯不亮"  # registered by the diagram

    reason = letter.headers["x-fzt-reason"]
    assert reason.startswith("unknown version: intake.case_submitted version 3 is newer")
    assert json.loads(letter.body)["id"] == future["id"]  # the original, to replay after an upgrade
    assert count(dispatch, WorkflowInstance, WorkflowInstance.case_no == future_no) == 0
    assert count(dispatch, InboxMessage) == 1
