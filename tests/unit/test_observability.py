"""Health, readiness, Prometheus metrics and JSON logs (SQLite + the in-memory bus)."""
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from services.common import config
from services.common.bus.consumer import ServiceConsumer
from services.common.bus.messages import make_envelope
from services.common.db import make_engine
from services.common.models import InboxMessage
from services.common.observability import (JsonFormatter, case_context, current_case_no, log_handler,
                                           metrics_for, short_error)
from services.common.web.app import create_app
from services.common.worker import Worker
from services.intake.requests import submit_request
from tests.support.http import wait_for

REPO = Path(__file__).resolve().parents[2]
VALID = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}
CASE_NO = "210902-20261102-0001"


def submission(case_no=CASE_NO):
    return {"case_no": case_no, "district": "210902", "name": "张三", "phone": "13800001234",
            "description": "楼上漏水，天花板一直滴水", "category": "", "channel": "web", "location": "",
            "submitted_at": "2026-11-02T09:00:00+00:00"}


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text, name, **labels):
    return samples(text).get((name, frozenset(labels.items())))


def counted(service, what):
    return metrics_for(service).registry.get_sample_value(
        f"fzt_bus_messages_{what}_total", {"service": service.name})


@pytest.fixture
def json_log():
    """Root logger also writes JSON lines to a buffer; returns a function giving the parsed lines."""
    buffer = io.StringIO()
    handler = log_handler(json_format=True, stream=buffer)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


# ---------------------------------------------------------------- health and readiness

def test_readyz_checks_database_and_broker(build_service):
    client = create_app(build_service("intake")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_the_database_cannot_be_opened_but_healthz_stays_200(build_service, tmp_path):
    service = build_service("intake")
    service.engine = make_engine(f"sqlite:///{tmp_path}/no/such/dir/intake.db")
    client = create_app(service).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["database"].startswith("OperationalError: unable to open database file")
    assert client.get("/healthz").status_code == 200  # liveness does no I/O


def test_readyz_is_503_when_the_broker_is_unreachable_and_hides_the_password(build_service):
    service = build_service("intake", broker_url="amqp://fzt:s3cret@127.0.0.1:1//")
    response = create_app(service).test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"] != "ok" and "refused" in checks["broker"].lower()
    assert "s3cret" not in response.get_data(as_text=True)


def test_short_error_is_one_line_without_credentials():
    err = RuntimeError("cannot reach amqp://fzt:pa55@rabbit:5672/fzt\nsecond line")
    assert short_error(err) == "RuntimeError: cannot reach amqp://***@rabbit:5672/fzt"
    assert len(short_error(ValueError("x" * 500))) == 200


# ---------------------------------------------------------------- metrics

def test_metrics_show_requests_and_the_outbox_backlog(build_service):
    intake = build_service("intake")
    client = create_app(intake).test_client()
    assert client.post("/api/v1/requests", json=VALID).status_code == 201
    intake.clock.advance(timedelta(seconds=90))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert value(text, "fzt_outbox_backlog", service="intake") == 1
    assert value(text, "fzt_outbox_oldest_unsent_age_seconds", service="intake") == 90
    assert value(text, "fzt_database_up", service="intake") == 1
    assert value(text, "fzt_http_requests_total", service="intake", endpoint="api.create_request",
                 method="POST", status="201") == 1
    assert value(text, "fzt_http_request_duration_seconds_count", service="intake",
                 endpoint="api.create_request") == 1
    client.get("/no-such-page")
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "fzt_http_requests_total", service="intake", endpoint="unmatched",
                 method="GET", status="404") == 1


def test_metrics_show_open_work_items_and_due_timers(build_service):
    dispatch = build_service("dispatch")
    with dispatch.uow() as uow:
        dispatch.runtime.deliver(uow, "intake.case_submitted", submission(), CASE_NO)
        uow.commit()
    client = create_app(dispatch).test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "fzt_work_items_open", service="dispatch", task_name="assign") == 1
    assert value(text, "fzt_timers_due", service="dispatch") == 0
    dispatch.clock.advance(timedelta(days=3))  # the assign deadline has passed
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "fzt_timers_due", service="dispatch") == 1


def test_a_database_failure_at_scrape_time_is_a_gauge_not_an_error(build_service, tmp_path):
    service = build_service("intake")
    service.engine = make_engine(f"sqlite:///{tmp_path}/no/such/dir/intake.db")
    response = create_app(service).test_client().get("/metrics")
    assert response.status_code == 200
    assert value(response.get_data(as_text=True), "fzt_database_up", service="intake") == 0


def test_each_service_object_has_one_registry_shared_by_app_and_worker(build_service):
    intake, dispatch = build_service("intake"), build_service("dispatch")
    assert metrics_for(intake) is metrics_for(intake)
    assert metrics_for(intake).registry is not metrics_for(dispatch).registry
    assert Worker(intake).metrics is metrics_for(intake)
    text = create_app(intake).test_client().get("/metrics").get_data(as_text=True)
    assert 'service="dispatch"' not in text


# ---------------------------------------------------------------- worker: counters, logs, stop

def test_worker_counts_messages_and_logs_json_with_the_case_number(build_service, json_log, monkeypatch):
    prefix = f"obs_{os.getpid()}_{time.monotonic_ns()}"
    intake, dispatch = build_service("intake", prefix=prefix), build_service("dispatch", prefix=prefix)
    applied = dispatch.apply_message

    def apply_and_log(envelope):
        applied(envelope)
        logging.getLogger("services.dispatch.test").info("applied in the handler")

    monkeypatch.setattr(dispatch, "apply_message", apply_and_log)
    workers = [Worker(dispatch).start(), Worker(intake).start()]
    try:
        case_no = submit_request(intake, {**VALID, "channel": "web"}).case_no
        wait_for(lambda: _inbox(dispatch) == 1, what="dispatch applied the submission")
        wait_for(lambda: counted(dispatch, "applied") == 1, what="applied counted")
    finally:
        for worker in workers:
            worker.stop()
    text = metrics_for(dispatch).render()[0].decode()
    assert value(text, "fzt_bus_messages_consumed_total", service="dispatch") == 1
    assert value(text, "fzt_bus_messages_applied_total", service="dispatch") == 1
    assert value(text, "fzt_bus_messages_dead_lettered_total", service="dispatch") == 0
    assert value(text, "fzt_bus_apply_duration_seconds_count", service="dispatch") == 1
    assert value(text, "fzt_bus_lag_seconds_count", service="dispatch") == 1
    published = metrics_for(intake).render()[0].decode()
    assert value(published, "fzt_outbox_published_total", service="intake") == 1
    [line] = [entry for entry in json_log() if entry["message"] == "applied in the handler"]
    assert line["case_no"] == case_no
    assert line["service"] == "dispatch"
    assert line["level"] == "INFO" and line["logger"] == "services.dispatch.test"
    assert line["ts"].endswith("+00:00")
    assert current_case_no() is None  # nothing leaks into the test's own context


def _inbox(service):
    with service.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(InboxMessage))


class FakeMessage:
    def __init__(self, body):
        self.body = json.dumps(body).encode()
        self.headers = {}
        self.delivery_info = {"routing_key": body["type"]}
        self.content_type = "application/json"
        self.content_encoding = "utf-8"
        self.acked = False

    def ack(self):
        self.acked = True


def test_a_dead_lettered_message_is_counted_and_logged_with_its_case(build_service, json_log):
    dispatch = build_service("dispatch")
    metrics = metrics_for(dispatch)
    envelope = make_envelope("intake.case_submitted", submission(), "intake", dispatch.clock.now())

    def fail(_envelope):
        raise RuntimeError("handler broke")

    with Connection("memory://localhost//") as conn:
        consumer = ServiceConsumer(conn, dispatch.topology, "dispatch",
                                   dispatch.topology.service_queue("dispatch", ["intake.case_submitted"]),
                                   fail, retries=2, retry_delay=0, metrics=metrics)
        message = FakeMessage(envelope)
        consumer.on_message(json.loads(message.body), message)
    assert message.acked  # safely in the dead-letter queue
    assert counted(dispatch, "consumed") == 1
    assert counted(dispatch, "dead_lettered") == 1
    assert counted(dispatch, "applied") == 0
    lines = [entry for entry in json_log() if entry["logger"] == "services.common.bus.consumer"]
    assert [entry["level"] for entry in lines] == ["WARNING", "WARNING", "ERROR"]
    assert all(entry["case_no"] == CASE_NO and entry["service"] == "dispatch" for entry in lines)


def test_stop_lets_the_message_in_flight_finish(build_service, monkeypatch):
    prefix = f"obs_{os.getpid()}_{time.monotonic_ns()}"
    dispatch = build_service("dispatch", prefix=prefix)
    started, real_apply = threading.Event(), dispatch.apply_message

    def slow_apply(envelope):
        started.set()
        time.sleep(1.0)
        real_apply(envelope)

    monkeypatch.setattr(dispatch, "apply_message", slow_apply)
    worker = Worker(dispatch).start()
    try:
        envelope = make_envelope("intake.case_submitted", submission(), "intake", dispatch.clock.now())
        with Connection("memory://localhost//") as conn:
            conn.Producer().publish(envelope, exchange=dispatch.topology.exchange,
                                    routing_key="intake.case_submitted", serializer="json")
        assert started.wait(10), "the message never arrived"
    finally:
        worker.stop()  # while the message is being applied
    assert _inbox(dispatch) == 1
    assert counted(dispatch, "applied") == 1
    assert not worker.alive()


def test_worker_http_endpoint_serves_health_readiness_and_metrics(build_service):
    dispatch = build_service("dispatch")
    worker = Worker(dispatch).start()
    server = worker.serve_http("127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert json.load(response) == {"service": "dispatch", "status": "ok"}
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            assert json.load(response)["checks"] == {"database": "ok", "broker": "ok"}
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert value(response.read().decode(), "fzt_database_up", service="dispatch") == 1
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/other", timeout=5)
        assert missing.value.code == 404
    finally:
        worker.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/healthz", timeout=2)


def test_fzt_worker_serves_metrics_logs_json_and_stops_on_sigterm(build_service, tmp_path):
    build_service("dispatch")  # migrated and deployed at tmp_path/dispatch.db
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FZT_ENV": "test", "FZT_VAR_DIR": str(tmp_path), "FZT_LOG_FORMAT": "json",
           "FZT_DATABASE_URL_DISPATCH": f"sqlite:///{tmp_path}/dispatch.db",
           "FZT_BROKER_URL": "memory://localhost//"}
    process = subprocess.Popen([sys.executable, "-m", "services.common.cli", "worker", "dispatch",
                                "--metrics-port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(healthy, timeout=30, what="the worker's /healthz")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert value(response.read().decode(), "fzt_database_up", service="dispatch") == 1
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "dispatch worker stopped" in stdout
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = {entry["message"] for entry in entries}
    assert {"dispatch worker started", "dispatch worker stopped"} <= messages, stderr
    assert all(entry["service"] == "dispatch" for entry in entries)


# ---------------------------------------------------------------- logs

def test_a_web_request_on_a_case_carries_its_number(build_service, json_log):
    app = create_app(build_service("dispatch"))

    @app.get("/probe/<case_no>")
    def probe(case_no):
        logging.getLogger("services.dispatch.probe").info("looking at the case")
        return {"case_no": current_case_no()}

    client = app.test_client()
    assert client.get(f"/probe/{CASE_NO}").get_json() == {"case_no": CASE_NO}
    [line] = [entry for entry in json_log() if entry["message"] == "looking at the case"]
    assert line["case_no"] == CASE_NO and line["service"] == "dispatch"
    assert current_case_no() is None


def test_json_lines_carry_the_traceback_and_text_lines_the_context():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    buffer = io.StringIO()
    handler = log_handler(json_format=True, service="intake", stream=buffer)
    with case_context(CASE_NO):
        handler.handle(record)
    entry = json.loads(buffer.getvalue())
    assert entry["message"] == "boom now" and entry["service"] == "intake"
    assert entry["case_no"] == CASE_NO
    assert "ValueError: bad" in entry["exc_info"]
    text = io.StringIO()
    with case_context(CASE_NO, "mediation"):
        log_handler(json_format=False, service="intake", stream=text).handle(
            logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None))
    assert f"x [mediation {CASE_NO}]: hello" in text.getvalue()
    assert isinstance(JsonFormatter(), logging.Formatter)


def test_log_format_is_json_in_production_text_otherwise():
    production = {"FZT_ENV": "production", "FZT_SECRET_KEY": "not-the-dev-one"}
    assert config.from_env(production).log_json
    assert not config.from_env({}).log_json
    assert not config.from_env({**production, "FZT_LOG_FORMAT": "text"}).log_json
    assert config.from_env({"FZT_LOG_FORMAT": "JSON"}).log_json
    with pytest.raises(RuntimeError, match="FZT_LOG_FORMAT"):
        config.from_env({"FZT_LOG_FORMAT": "xml"})
