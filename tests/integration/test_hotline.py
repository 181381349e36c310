"""The 12345 hotline gateway on real RabbitMQ and PostgreSQL: orders in, status back.

A fake hotline (pika) owns a test-specific exchange and publishes work orders to it; the
gateway stores them as intake cases and reports status to the same exchange, where the test
reads it from a queue bound to ``order.status``. Everything declared is deleted afterwards.
"""
import json
import time
import uuid

import pika
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from services.common.bus.deadletters import pika_parameters
from services.common.bus.messages import make_envelope
from services.common.models import OutboxMessage
from services.intake import hotline
from services.intake.hotline import HotlineGateway, InvalidOrder, parse_order
from services.intake.models import CitizenRequest, HotlineOrder, HotlineStatus
from services.intake.requests import submit_request
from tests.support.db import count
from tests.support.http import wait_for


def order(order_id=None, **changes):
    data = {"order_id": order_id or f"12345-{uuid.uuid4().hex[:12]}",
            "received_at": "2026-11-02T16:30:00+08:00", "caller_name": "李四",
            "caller_phone": "13912345678", "district": "210902",
            "content": "小区供暖温度不达标，室内只有十四度", "category": "heating",
            "address": "海州区中华路12号"}
    data.update(changes)
    return data


class FakeHotline:
    """The hotline's side: its exchange, a publisher with confirms, a queue for our statuses."""

    def __init__(self, amqp_url, prefix):
        self.exchange = f"{prefix}.hotline12345"
        self.status_queue = f"{prefix}.hotline.status"
        self.connection = pika.BlockingConnection(pika_parameters(amqp_url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)

    def listen_for_status(self):
        self.channel.queue_declare(self.status_queue, durable=True)
        self.channel.queue_bind(self.status_queue, self.exchange, routing_key="order.status")

    def publish(self, body, content_type="application/json"):
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.channel.basic_publish(self.exchange, "order.created", body, mandatory=True,
                                   properties=pika.BasicProperties(content_type=content_type,
                                                                   delivery_mode=2))

    def take(self, queue, expected, timeout=20):
        """Take ``expected`` messages from ``queue`` (acked): [(properties, body)]."""
        got, deadline = [], time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.1)
                continue
            got.append((properties, body))
        return got

    def statuses(self, expected, timeout=20):
        return [json.loads(body) for _props, body in self.take(self.status_queue, expected, timeout)]

    def ready_count(self, queue):
        return self.channel.queue_declare(queue, passive=True).method.message_count


@pytest.fixture
def intake(pg_service):
    return pg_service("intake")


@pytest.fixture
def fake_hotline(pg_service):
    fake = FakeHotline(pg_service.amqp_url, pg_service.prefix)
    yield fake
    # The broker is shared: delete what this test (and the gateway) declared.
    queues = [fake.status_queue, f"{pg_service.prefix}.intake.hotline",
              f"{pg_service.prefix}.intake.hotline.dead"]
    connection = pika.BlockingConnection(pika_parameters(pg_service.amqp_url))
    for queue in queues:
        connection.channel().queue_delete(queue)
    connection.channel().exchange_delete(fake.exchange)
    connection.close()
    if fake.connection.is_open:
        fake.connection.close()


@pytest.fixture
def gateways(intake, fake_hotline, pg_service):
    """Factory: a started gateway on the test prefix and exchange; all stopped afterwards."""
    started = []

    def start(**options):
        gateway = HotlineGateway(intake, url=pg_service.amqp_url, exchange=fake_hotline.exchange,
                                 prefix=pg_service.prefix, relay_interval=0.1, retry_delay=0.05,
                                 max_retry_delay=0.5, **options)
        started.append(gateway.start())
        assert gateway.ready.wait(20), "gateway did not start consuming"
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def stored(intake, n):
    return wait_for(lambda: count(intake, HotlineOrder) >= n, what=f"{n} stored orders")


# ---------------------------------------------------------------------------- tests


def test_orders_become_hotline_cases_and_accepted_is_reported_back(intake, fake_hotline, gateways):
    fake_hotline.listen_for_status()
    gateway = gateways()
    orders = [order(), order(district="海州区", category="供暖"),
              order(category="热线自定义分类", address=None, unknown_field="kept out")]
    for data in orders:
        fake_hotline.publish(data)
    statuses = fake_hotline.statuses(3)
    with intake.uow() as uow:
        mapping = {o.order_id: o.case_no for o in uow.session.scalars(select(HotlineOrder))}
        requests = {r.case_no: r for r in uow.session.scalars(select(CitizenRequest))}
    assert set(mapping) == {o["order_id"] for o in orders}
    assert len(requests) == 3 and all(r.channel == "hotline_12345" for r in requests.values())
    first = requests[mapping[orders[0]["order_id"]]]
    assert (first.name, first.phone, first.district, first.category, first.location) == (
        "李四", "13912345678", "210902", "heating", "海州区中华路12号")
    assert first.description == orders[0]["content"]
    assert requests[mapping[orders[1]["order_id"]]].district == "210902"  # name → code
    assert requests[mapping[orders[1]["order_id"]]].category == "heating"  # label → code
    assert requests[mapping[orders[2]["order_id"]]].category == ""  # unknown → left to dispatch
    # Each case started intake.bpmn: the submission is in the outbox for dispatch.
    assert count(intake, OutboxMessage, OutboxMessage.routing_key == "intake.case_submitted") == 3
    assert sorted((s["order_id"], s["case_no"], s["status"]) for s in statuses) == sorted(
        (order_id, case_no, "accepted") for order_id, case_no in mapping.items())
    assert all(s["at"].endswith("+08:00") and s["note"] for s in statuses)
    wait_for(lambda: count(intake, HotlineStatus, HotlineStatus.sent_at.is_(None)) == 0, what="marked sent")
    gateway.stop()
    assert fake_hotline.ready_count(gateway.queue) == 0  # every order acknowledged


def test_a_repeated_order_id_gives_one_case_and_other_content_is_refused(intake, fake_hotline, gateways):
    fake_hotline.listen_for_status()
    gateway = gateways()
    data = order()
    fake_hotline.publish(data)
    fake_hotline.publish(data)  # the hotline's retry
    fake_hotline.publish({**data, "received_at": "2026-11-02T08:30:00Z"})  # the same instant
    fake_hotline.publish({**data, "content": "另一件事：路灯不亮已经一周了"})
    [letter] = fake_hotline.take(gateway.dead_queue, 1)
    time.sleep(0.5)  # let the gateway (not) store the duplicates
    assert count(intake, CitizenRequest) == 1 and count(intake, HotlineOrder) == 1
    [status] = fake_hotline.statuses(1)
    assert status["status"] == "accepted"
    properties, body = letter
    assert "already case" in properties.headers["x-fzt-reason"]
    assert properties.headers["x-fzt-order-id"] == data["order_id"]
    assert json.loads(body)["content"].startswith("另一件事")
    assert fake_hotline.take(fake_hotline.status_queue, 1, timeout=1) == []  # no second "accepted"


def test_bad_orders_go_to_the_dead_letter_queue_with_a_reason(intake, fake_hotline, gateways):
    gateway = gateways()
    cut_off = b'{"order_id": "A-1", "content": '
    not_utf8 = b"\xff\xfe not utf-8"
    fake_hotline.publish(cut_off)
    fake_hotline.publish(order("A-2", district="沈阳市和平区"))
    fake_hotline.publish(order("A-3", received_at="2026-11-02T16:30:00", caller_phone="12"))
    fake_hotline.publish(not_utf8, content_type="text/plain")
    letters = fake_hotline.take(gateway.dead_queue, 4)
    assert len(letters) == 4
    reason = {body: props.headers["x-fzt-reason"] for props, body in letters}
    reason.update({json.loads(body)["order_id"]: props.headers["x-fzt-reason"]
                   for props, body in letters if body.startswith(b'{"order_id": "A-') and body != cut_off})
    assert reason[cut_off].startswith("cannot decode: the body is not UTF-8 JSON")
    assert reason[not_utf8].startswith("cannot decode: the body is not UTF-8 JSON")
    assert reason["A-2"].startswith("invalid order A-2: district: ") and "未知的县区" in reason["A-2"]
    assert "caller_phone: " in reason["A-3"] and "received_at: " in reason["A-3"]
    assert all(props.headers["x-fzt-routing-key"] == "order.created" for props, _ in letters)
    assert {props.content_type for props, body in letters if body == not_utf8} == {"text/plain"}
    assert count(intake, CitizenRequest) == 0 and count(intake, HotlineOrder) == 0
    gateway.stop()
    assert fake_hotline.ready_count(gateway.queue) == 0


def test_assigned_handled_and_rejected_are_reported_back(intake, fake_hotline, gateways):
    fake_hotline.listen_for_status()
    gateways()
    first, second = order(), order()
    fake_hotline.publish(first)
    fake_hotline.publish(second)
    assert {s["status"] for s in fake_hotline.statuses(2)} == {"accepted"}
    web = submit_request(intake, {"district": "210902", "name": "王五", "phone": "13800001234",
                                  "description": "门口道路破损", "channel": "web"})
    with intake.uow() as uow:
        case_of = {o.order_id: o.case_no for o in uow.session.scalars(select(HotlineOrder))}

    def dispatch_event(message_type, case_no, **body):
        intake.apply_message(make_envelope(message_type, {"case_no": case_no, **body}, "dispatch",
                                           intake.clock.now()))

    dispatch_event("dispatch.case_assigned", case_of[first["order_id"]], department="zhujian",
                   department_name="市住房和城乡建设局")
    dispatch_event("dispatch.case_assigned", web.case_no, department="zhujian")  # not a hotline case
    dispatch_event("dispatch.case_handled", case_of[first["order_id"]], department="zhujian",
                   reply="已协调供热公司整改，室温恢复至十八度")
    dispatch_event("dispatch.case_rejected", case_of[second["order_id"]], reason="不属于政府职责范围")
    reports = fake_hotline.statuses(3)
    assert [(r["order_id"], r["case_no"], r["status"]) for r in reports] == [
        (first["order_id"], case_of[first["order_id"]], "assigned"),
        (first["order_id"], case_of[first["order_id"]], "handled"),
        (second["order_id"], case_of[second["order_id"]], "rejected")]
    assert "市住房和城乡建设局" in reports[0]["note"]
    assert reports[1]["note"] == "已协调供热公司整改，室温恢复至十八度"
    assert reports[2]["note"] == "不属于政府职责范围"
    assert count(intake, HotlineStatus) == 5  # 2 accepted + 3 reports, none for the web case
    assert fake_hotline.take(fake_hotline.status_queue, 1, timeout=1) == []


def test_an_order_whose_storing_fails_is_redelivered_and_stored_once(intake, fake_hotline, gateways,
                                                                       monkeypatch):
    fake_hotline.listen_for_status()
    database_down = OperationalError("INSERT", {}, Exception("server closed the connection"))
    failures = [database_down] * 3 + [RuntimeError("bpmn engine hiccup")]
    real_submit = hotline.submit_request

    def flaky_submit(service, data, uow):
        request = real_submit(service, data, uow)  # the case is in the transaction …
        if failures:
            raise failures.pop(0)  # … and rolled back with it
        return request

    monkeypatch.setattr(hotline, "submit_request", flaky_submit)
    gateway = gateways(retries=2)  # the outage does not count: one error is not two
    data = order()
    fake_hotline.publish(data)
    [status] = fake_hotline.statuses(1)
    assert failures == []
    with intake.uow() as uow:
        [request] = uow.session.scalars(select(CitizenRequest)).all()
        [row] = uow.session.scalars(select(HotlineOrder)).all()
    assert (row.order_id, row.case_no) == (data["order_id"], request.case_no)
    assert status["case_no"] == request.case_no
    assert request.case_no.endswith("-0001")  # the failed attempts' case numbers were rolled back too
    assert count(intake, OutboxMessage, OutboxMessage.routing_key == "intake.case_submitted") == 1
    gateway.stop()
    assert fake_hotline.ready_count(gateway.queue) == 0


def test_an_order_that_keeps_failing_is_dead_lettered_after_the_retries(intake, fake_hotline, gateways,
                                                                         monkeypatch):
    def broken_submit(service, data, uow):
        raise RuntimeError("intake diagram not deployed")

    monkeypatch.setattr(hotline, "submit_request", broken_submit)
    gateway = gateways(retries=3)
    fake_hotline.publish(order("B-1"))
    [(properties, body)] = fake_hotline.take(gateway.dead_queue, 1)
    assert properties.headers["x-fzt-reason"] == ("storing failed 3 times: RuntimeError: "
                                                  "intake diagram not deployed")
    assert json.loads(body)["order_id"] == "B-1"
    assert count(intake, CitizenRequest) == 0


def test_a_crash_after_commit_before_ack_does_not_make_a_second_case(intake, fake_hotline, gateways,
                                                                       monkeypatch):
    fake_hotline.listen_for_status()
    crashed, acked = [], []
    real_ack = HotlineGateway._ack

    def crash_once(self, channel, delivery_tag):
        if not crashed:
            crashed.append(delivery_tag)
            raise ConnectionResetError("gateway killed after the commit, before the ack")
        real_ack(self, channel, delivery_tag)
        acked.append(delivery_tag)

    monkeypatch.setattr(HotlineGateway, "_ack", crash_once)
    gateway = gateways()
    data = order()
    fake_hotline.publish(data)
    [status] = fake_hotline.statuses(1)
    wait_for(lambda: acked, what="the redelivered order to be acknowledged")
    gateway.stop()
    assert count(intake, CitizenRequest) == 1 and count(intake, HotlineOrder) == 1
    assert status["status"] == "accepted"
    assert fake_hotline.ready_count(gateway.queue) == 0
    assert fake_hotline.take(fake_hotline.status_queue, 1, timeout=1) == []


def test_statuses_wait_in_the_outbox_until_the_hotline_listens(intake, fake_hotline, gateways):
    gateways()
    fake_hotline.publish(order("C-1"))
    stored(intake, 1)
    time.sleep(0.5)  # nobody is bound to order.status: the broker returns the report
    assert count(intake, HotlineStatus, HotlineStatus.sent_at.is_(None)) == 1
    fake_hotline.listen_for_status()  # the next round (after the back-off) delivers it
    [status] = fake_hotline.statuses(1)
    assert (status["order_id"], status["status"]) == ("C-1", "accepted")


def test_parse_order_reports_every_problem_at_once():
    with pytest.raises(InvalidOrder) as err:
        parse_order(json.dumps({"order_id": "D-1", "content": "短"}).encode())
    reason = str(err.value)
    for name in ("received_at", "caller_name", "caller_phone", "district", "content"):
        assert f"{name}: " in reason
    assert err.value.order_id == "D-1"
    with pytest.raises(InvalidOrder, match="not an object"):
        parse_order(b'["a list"]')
