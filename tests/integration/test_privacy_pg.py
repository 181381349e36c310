"""On PostgreSQL: retention run by two workers at once (one anonymisation, one audit entry),
and hostile input answered with 400 — NUL and lone surrogates (which only PostgreSQL refuses
to store), bodies a generator does not make (too deep, huge numbers, wrong types and
encodings, a nameless multipart part); nothing is stored."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.common.clock import FrozenClock
from services.common.models import AuditEntry
from services.common.retention import ACTION, ANONYMISED, DEFAULT_RETENTION_DAYS, anonymise
from services.common.web.app import create_app
from services.intake.models import CitizenRequest
from services.intake.open311 import DEV_API_KEY
from tests.unit.test_retention import intake_with_cases

pytestmark = pytest.mark.integration


def test_two_workers_anonymise_a_case_once(pg_service):
    clock = FrozenClock()
    intake, handled, _ = intake_with_cases(pg_service, clock)
    twin = pg_service("intake", clock=clock)  # a second worker process on the same database
    clock.advance(timedelta(days=DEFAULT_RETENTION_DAYS + 1))
    results, start = [], threading.Barrier(2)

    def run(service):
        start.wait()
        results.append(len(anonymise(service)))

    threads = [threading.Thread(target=run, args=(s,)) for s in (intake, twin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [0, 1]
    with intake.uow() as uow:
        assert uow.session.get(CitizenRequest, handled["case_no"]).name == ANONYMISED
        assert len(uow.session.scalars(select(AuditEntry).where(AuditEntry.action == ACTION)).all()) == 1


GOOD = {"district": "海州区", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}


def test_text_postgresql_cannot_store_is_refused_with_400(pg_service):
    intake = pg_service("intake")
    client = create_app(intake).test_client()
    for body in ({**GOOD, "description": "楼上漏水\u0000天花板滴水"}, {**GOOD, "name": "张\u0000三"}):
        assert client.post("/api/v1/requests", json=body).status_code == 400
    surrogate = '{"district":"海州区","name":"张三","phone":"13800001234","description":"楼上漏水\\ud800滴水滴水"}'
    assert client.post("/api/v1/requests", data=surrogate, content_type="application/json").status_code == 400
    for raw, content_type in (("[" * 100_000 + "]" * 100_000, "application/json"),  # deeper than the parser goes
                              ('{"district": ' + "9" * 5000 + "}", "application/json"),  # Python refuses the int
                              ('{"district": "海州区", "category": 1e999999}', "application/json"),  # infinity
                              ("null", "application/json"), ("[1, 2]", "application/json"),
                              ("{not json", "application/json"), ('{"a": 1}', "text/plain"),
                              ('{"a": 1}'.encode("utf-16"), "application/json; charset=utf-16"),
                              (b'{"district": "\xff\xfe"}', "application/json"),
                              ("--x\r\nContent-Disposition: form-data; filename=\"a.jpg\"\r\n\r\nabc\r\n--x--\r\n",
                               "multipart/form-data; boundary=x")):  # a part without a name
        answer = client.post("/api/v1/requests", data=raw, content_type=content_type)
        assert answer.status_code == 400 and answer.is_json, (raw[:40], answer.status_code)
    assert client.get("/api/v1/requests/%00abc?tracking_code=x").status_code == 400
    assert client.get("/status?case_no=%00&tracking_code=x").status_code == 400
    open311 = client.post("/open311/v2/requests.json", data={
        "api_key": DEV_API_KEY, "service_code": "housing", "attribute[district]": "210902", "name": "张三",
        "phone": "13800001234", "description": "楼上漏水\u0000天花板滴水", "address_string": "中华路"})
    assert open311.status_code == 400 and open311.is_json
    # and nothing was stored
    with intake.uow() as uow:
        assert uow.session.scalars(select(CitizenRequest)).all() == []
    # a good one still goes through
    assert client.post("/api/v1/requests", json=GOOD).status_code == 201
