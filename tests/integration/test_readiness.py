"""/readyz and /metrics against the real PostgreSQL and RabbitMQ."""
import json
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from services.common.db import make_engine
from services.common.web.app import create_app
from services.common.worker import Worker

VALID = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}


def gauge(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_readyz_is_ready_on_postgresql_and_rabbitmq(pg_service):
    client = create_app(pg_service("intake")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_the_broker_when_its_port_is_closed(build_service, make_pg_database):
    service = build_service("intake", database_url=make_pg_database("intake"),
                            broker_url="amqp://guest:s3cret@127.0.0.1:1//")
    response = create_app(service).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert "refused" in body["checks"]["broker"].lower()
    assert "s3cret" not in response.get_data(as_text=True)


def test_readyz_names_the_database_when_it_is_gone(pg_service):
    service = pg_service("intake")
    service.engine = make_engine(service.engine.url.set(database="fzt_no_such_database")
                                 .render_as_string(hide_password=False))
    response = create_app(service).test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["broker"] == "ok"
    assert checks["database"].startswith("OperationalError") and "fzt_no_such_database" in checks["database"]


def test_metrics_backlog_drains_when_the_worker_runs(pg_service):
    intake = pg_service("intake")
    client = create_app(intake).test_client()
    for _ in range(3):
        assert client.post("/api/v1/requests", json=VALID).status_code == 201
    text = client.get("/metrics").get_data(as_text=True)
    assert gauge(text, "fzt_outbox_backlog", service="intake") == 3
    worker = Worker(intake).start()
    server = worker.serve_http("127.0.0.1", 0)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = client.get("/metrics").get_data(as_text=True)
            if gauge(text, "fzt_outbox_backlog", service="intake") == 0:
                break
            time.sleep(0.1)
        assert gauge(text, "fzt_outbox_backlog", service="intake") == 0
        assert gauge(text, "fzt_outbox_published_total", service="intake") == 3  # same registry
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/readyz", timeout=10) as response:
            assert json.load(response)["status"] == "ready"
    finally:
        worker.stop()
