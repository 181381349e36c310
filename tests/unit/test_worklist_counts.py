"""Work lists at scale (docs/benchmarks.md, "Scale"): per-task queries merged oldest first,
totals and badges counted up to a cap, shown as "<cap>+" beyond it, and the API's ``since``."""
from datetime import timedelta
from urllib.parse import quote

import pytest

from services.common.clock import FrozenClock
from services.common.demo import load_demo_accounts
from services.common.web.app import create_app
from services.common.web.auth import make_token
from services.dispatch import cases


def submission(n, district):
    return {"case_no": f"{district}-20261102-{n:04d}", "district": district, "name": "张三",
            "phone": "13800001234", "description": f"第{n}件：楼上漏水", "category": "", "channel": "web",
            "location": "", "submitted_at": "2026-11-02T09:00:00+00:00"}


@pytest.fixture
def dispatch(build_service):
    clock = FrozenClock()
    service = build_service("dispatch", clock=clock)
    for n, district in enumerate(["210902", "210903", "210902", "210902"], start=1):
        body = submission(n, district)
        with service.uow() as uow:
            service.runtime.deliver(uow, "intake.case_submitted", body, body["case_no"])
            uow.commit()
        clock.advance(timedelta(minutes=1))
    return service


def test_queue_lists_every_task_oldest_first_and_counts_in_scope(dispatch):
    items, total = cases.queue(dispatch, ("assign", "fallback", "approve_extension"), district="210902")
    assert [i.case_no for i in items] == ["210902-20261102-0001", "210902-20261102-0003", "210902-20261102-0004"]
    assert total == 3
    assert cases.counts(dispatch) == {"assign": 4}
    assert cases.counts(dispatch, district="210903") == {"assign": 1}
    assert cases.counts(dispatch, department="zhujian") == {}


def test_counts_stop_after_the_cap_and_read_as_a_lower_bound(dispatch, monkeypatch):
    monkeypatch.setattr(cases, "COUNT_CAP", 2)
    items, total = cases.queue(dispatch, "assign", limit=10)
    assert len(items) == 4  # the list itself is not capped
    assert total == 3  # counted up to cap + 1: "more than 2"
    assert cases.counts(dispatch)["assign"] == 3
    assert cases.count_label(total) == "2+"
    assert cases.count_label(2) == "2"


def test_api_lists_only_what_came_after_since_and_refuses_an_ambiguous_time(dispatch):
    load_demo_accounts(dispatch)
    client = create_app(dispatch).test_client()
    headers = {"Authorization": f"Bearer {make_token(dispatch.settings.secret_key, 'admin')}"}

    def listed(since):
        response = client.get(f"/api/v1/cases?status=assign&district=210902&since={quote(since)}", headers=headers)
        return response.status_code, response.get_json()

    code, everything = listed("2000-01-01T00:00:00+08:00")
    assert code == 200 and [c["case_no"][-4:] for c in everything["cases"]] == ["0001", "0003", "0004"]
    second = everything["cases"][1]["created_at"]  # the poller's "last seen": strictly after it
    code, newer = listed(second)
    assert code == 200 and [c["case_no"][-4:] for c in newer["cases"]] == ["0004"]
    assert newer["total"] == 3  # the total still counts the whole queue
    for bad in ("2026-11-02T09:00:00", "yesterday", "2026-11-02T09:00:00 08:00"):  # naive; not a time; "+" unencoded
        code, body = listed(bad)
        assert code == 400 and body["error"] == "invalid_since", bad
