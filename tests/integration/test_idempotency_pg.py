"""Two (or eight) identical requests with one Idempotency-Key at the same moment, on the real
PostgreSQL: exactly one case, and every caller gets its number (services/intake/idempotency.py)."""
import threading

import pytest
from sqlalchemy import func, select

from services.common.models import OutboxMessage
from services.common.web.app import create_app
from services.intake.idempotency import IdempotencyKey
from services.intake.models import CitizenRequest

pytestmark = pytest.mark.integration
VALID = {"district": "210902", "name": "张三", "phone": "13800001234", "description": "楼上漏水，天花板一直滴水"}


def test_concurrent_requests_with_one_key_make_exactly_one_case(build_service, make_pg_database):
    intake = build_service("intake", database_url=make_pg_database("idempotency"))
    app = create_app(intake)
    callers = 8
    start = threading.Barrier(callers)
    answers, errors = [], []

    def submit(n):
        try:
            client = app.test_client()
            start.wait(10)
            response = client.post("/api/v1/requests", json=VALID, headers={"Idempotency-Key": "same-key-1"})
            answers.append((response.status_code, response.get_json()))
        except Exception as err:  # reported below
            errors.append(repr(err))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(answers) == callers
    assert {status for status, _ in answers} == {201}
    assert len({body["case_no"] for _, body in answers}) == 1
    assert len({body["tracking_code"] for _, body in answers}) == 1
    with intake.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(CitizenRequest)) == 1
        assert uow.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        [key] = uow.session.scalars(select(IdempotencyKey)).all()
        assert key.case_no == answers[0][1]["case_no"]
    intake.engine.dispose()
