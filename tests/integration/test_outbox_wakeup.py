"""An idle relay on PostgreSQL sleeps until a commit that wrote outbox rows NOTIFYs it
(services/common/bus/relay.py), instead of querying the outbox every 50 ms."""
import time

import pytest

from services.common.bus.relay import OutboxListener

pytestmark = pytest.mark.integration


def submission(n):
    return {"case_no": f"210902-20261102-{n:04d}", "district": "210902", "name": "张三",
            "phone": "13800001234", "description": f"第{n}件：楼上漏水", "category": "", "channel": "web",
            "location": "", "submitted_at": "2026-11-02T09:00:00+00:00"}


def deliver(service, n, commit=True):
    with service.uow() as uow:
        service.runtime.deliver(uow, "intake.case_submitted", submission(n), submission(n)["case_no"])
        if commit:
            uow.commit()


def test_a_commit_that_throws_a_message_wakes_the_listener_and_a_rollback_does_not(pg_service):
    dispatch = pg_service("dispatch")
    listener = OutboxListener(dispatch.engine)
    try:
        assert listener.listening
        assert not listener.wait(0.2)  # nothing happened: it times out
        deliver(dispatch, 1, commit=False)  # rolled back: no notification
        assert not listener.wait(0.3)
        # Assigning throws dispatch.case_assigned (an outbox row): its commit notifies.
        deliver(dispatch, 2)
        while listener.wait(0.2):  # drain: starting the case may have thrown messages too
            pass
        from types import SimpleNamespace

        from services.dispatch import cases
        admin = SimpleNamespace(username="admin", display_name="管理员", role="admin", district=None,
                                department=None)
        started = time.monotonic()
        cases.assign(dispatch, admin, "210902-20261102-0002", "zhujian")
        assert listener.wait(5)
        assert time.monotonic() - started < 5
    finally:
        listener.close()


def test_other_databases_have_no_listener(build_service):
    service = build_service("dispatch")  # SQLite
    assert not OutboxListener(service.engine).listening
