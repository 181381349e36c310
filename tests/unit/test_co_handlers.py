"""dispatch's co_handlers table (services/dispatch/co_handling.py) on SQLite: the migration
that adds it (d0002_co_handlers) fills it from the open work items with the rows the runtime
keeps. The runtime's side, step by step, is in tests/integration/test_dispatch_flow.py."""
from __future__ import annotations

from types import SimpleNamespace

from alembic import command
from sqlalchemy import inspect, select

from services.common.bus.messages import make_envelope
from services.common.migrations import alembic_config, upgrade
from services.dispatch import cases
from services.dispatch.models import CoHandler

ADMIN = SimpleNamespace(role="admin", username="admin", display_name="管理员")
CASES = [f"210902-20261102-000{n}" for n in range(1, 5)]


def submit(dispatch, case_no):
    dispatch.apply_message(make_envelope("intake.case_submitted", {
        "case_no": case_no, "district": "210902", "name": "张三", "phone": "13800001234",
        "description": "楼上漏水，天花板一直滴水", "category": "", "channel": "web", "location": "",
        "submitted_at": "2026-11-02T09:00:00+00:00"}, "intake", dispatch.clock.now()))


def rows(service):
    with service.uow() as uow:
        return [(r.case_no, r.department, r.work_item_id, r.created_at) for r in uow.session.scalars(
            select(CoHandler).order_by(CoHandler.case_no, CoHandler.department))]


def test_the_migration_fills_the_table_with_the_rows_the_runtime_keeps(build_service):
    dispatch = build_service("dispatch")
    for case_no in CASES:
        submit(dispatch, case_no)
    first, second, third, _ = CASES  # the fourth waits for the dispatcher
    cases.assign(dispatch, ADMIN, first, "zhujian", co_departments=["chengguan", "gongan"])
    cases.assign(dispatch, ADMIN, second, "chengguan", co_departments=["zhujian"])
    cases.accept(dispatch, ADMIN, second)
    cases.assign(dispatch, ADMIN, third, "gongan")
    kept = rows(dispatch)
    assert [r[:2] for r in kept] == [(first, "chengguan"), (first, "gongan"), (second, "zhujian")]

    command.downgrade(alembic_config("dispatch", dispatch.engine), "d0001_case_files")
    assert "co_handlers" not in inspect(dispatch.engine).get_table_names()
    upgrade("dispatch", dispatch.engine)
    assert rows(dispatch) == kept
    assert [i.case_no for i in cases.co_handled(dispatch, "zhujian")[0]] == [second]
