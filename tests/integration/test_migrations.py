"""Upgrading from the previous release's schema loses nothing, and the service works on it.

For each service: a PostgreSQL database is migrated to the previous release's revisions
(``PREVIOUS_RELEASE``; docs/operations.md, "Upgrades"), filled with representative rows — a
case in its workflow with its work item, timeline, outbox and inbox rows, the deployed
diagram, a staff account — then upgraded to heads as ``fzt db upgrade`` does. Every row must
still be there with every old column unchanged, and the current code must carry the case on
(dispatch: shown and assigned through the API by the old account; intake: the citizen's
lookup and the next event, and the request counts of 受理量统计, a table the upgrade fills,
equal those the current code kept; mediation and supervision: the next message applied). Then the
database is downgraded back to the previous release (every migration has a downgrade; what
the newer revisions added is dropped, branches born since go back to their base) and
upgraded again, and the case is still there.

The rows are made by the current code on a database at heads and copied column by column
into the old schema (the workflow tables' columns have not changed since; what was added
since, e.g. ``work_items.due_at``, is simply absent, as in a real old database).
"""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, func, inspect, select, text
from sqlalchemy.pool import NullPool

from services.common.bus.messages import make_envelope
from services.common.demo import save_staff
from services.common.migrations import alembic_config, upgrade
from services.common.models import WorkflowInstance, WorkItem
from services.common.platform import load_service, prepare

# The schema a deployment of the previous release has: the first release, i.e. the heads
# of commit 65c4c5c (no release is tagged yet; move these to the heads of each release).
PREVIOUS_RELEASE = {"common": "c0001", "intake": "i0001"}

CASE_NO = "210902-20261125-0001"
CO_HANDLED_CASE = "210902-20261125-0002"
SUBMITTED = {"case_no": CASE_NO, "district": "210902", "name": "张三", "phone": "13800001234",
             "description": "楼上卫生间漏水，天花板渗水", "category": "", "channel": "web",
             "location": "海州区解放路12号", "submitted_at": "2026-11-25T09:00:00+00:00",
             "latitude": None, "longitude": None}
AT = datetime(2026, 11, 25, 9, 30, tzinfo=timezone.utc)


def message(service, message_type, **body):
    return make_envelope(message_type, {"case_no": CASE_NO, **body}, service, AT)


def previous_release(service: str) -> list[str]:
    return [PREVIOUS_RELEASE["common"]] + ([PREVIOUS_RELEASE[service]] if service in PREVIOUS_RELEASE else [])


def downgrade_to_previous_release(service: str, engine) -> None:
    """Branches born since the previous release go back to their base, then the others to
    the previous release's revisions."""
    cfg = alembic_config(service, engine)
    script = ScriptDirectory.from_config(cfg)
    then = {r.revision for target in previous_release(service)
            for r in script.iterate_revisions(target, "base")}
    for base in script.get_bases():
        if base not in then:
            command.downgrade(cfg, f"{base}@base")
    for revision in reversed(previous_release(service)):
        command.downgrade(cfg, revision)


def engine_for(url):
    return create_engine(url, poolclass=NullPool)


# ------------------------------------------------------------------ representative rows

def seed_intake(intake):
    from services.intake.requests import submit_request
    request = submit_request(intake, {k: SUBMITTED[k] for k in
                                      ("district", "name", "phone", "description", "channel", "location")})
    intake.apply_message(make_envelope("dispatch.case_assigned", {
        "case_no": request.case_no, "department": "zhujian", "department_name": "住建局"}, "dispatch", AT))
    return {"tracking_code": request.tracking_code, "case_no": request.case_no}


def seed_dispatch(dispatch):
    from services.dispatch import cases
    dispatch.apply_message(message("intake", "intake.case_submitted", **SUBMITTED))
    # a case in a department's hands with a co-handler: the 协办 list's table is filled from it
    dispatch.apply_message(make_envelope("intake.case_submitted", {**SUBMITTED, "case_no": CO_HANDLED_CASE},
                                         "intake", AT))
    admin = SimpleNamespace(role="admin", display_name="管理员", username="admin")
    cases.assign(dispatch, admin, CO_HANDLED_CASE, "zhujian", co_departments=["chengguan"])
    return {"co_handled": CO_HANDLED_CASE}


def seed_mediation(mediation):
    mediation.apply_message(message("dispatch", "dispatch.mediation_requested", district="210902",
                                    description=SUBMITTED["description"], name="张三",
                                    phone="13800001234", reason="邻里纠纷，调解优先"))
    return {}


def seed_supervision(supervision):
    supervision.apply_message(message("dispatch", "dispatch.deadline_missed", stage="assign"))
    return {}


SEED = {"intake": seed_intake, "dispatch": seed_dispatch, "mediation": seed_mediation,
        "supervision": seed_supervision}


# ------------------------------------------------------------------ the service carries on

def works_intake(intake, seeded):
    from services.intake.models import CitizenRequest
    from services.intake.requests import find_request
    case_no = seeded["case_no"]
    found = find_request(intake, case_no, seeded["tracking_code"])  # the citizen's lookup
    assert found is not None and found.status == "assigned"
    intake.apply_message(make_envelope("dispatch.case_handled", {
        "case_no": case_no, "department": "zhujian", "reply": "已维修完毕"}, "dispatch", AT))
    with intake.uow() as uow:
        assert uow.session.get(CitizenRequest, case_no).status == "handled"


def works_dispatch(dispatch, seeded, tmp_path):
    from werkzeug.test import Client

    from services.common.web.app import create_app, prefixed
    from services.common.web.tokens import make_token
    app = prefixed({"dispatch": create_app(dispatch)})
    client = Client(app)
    # the dispatcher's account from the previous release still signs in (token = username)
    headers = {"Authorization": f"Bearer {make_token(dispatch.settings.secret_key, 'fenbo_old')}",
               "Accept": "application/json"}
    shown = client.get(f"/dispatch/api/v1/cases/{CASE_NO}", headers=headers)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.get_json()["description"] == SUBMITTED["description"]
    assert [w["status"] for w in shown.get_json()["waiting"]] == ["assign"]
    done = client.post(f"/dispatch/api/v1/cases/{CASE_NO}/assign", json={"department": "zhujian"},
                       headers=headers)
    assert done.status_code == 200, done.get_data(as_text=True)
    with dispatch.uow() as uow:
        tasks = uow.session.scalars(select(WorkItem.task_name).where(WorkItem.case_no == CASE_NO)).all()
        assert tasks == ["accept"]
        audited = uow.session.execute(text("SELECT count(*) FROM audit_log WHERE case_no = :c"),
                                      {"c": CASE_NO}).scalar()
        assert audited >= 1  # the act is audited in a table the previous release did not have
    if "co_handled" in seeded:  # seeded at the previous release's schema (not in a backup test)
        from services.dispatch import cases
        # the co-handler table (d0002_co_handlers) was filled from the open work items
        assert [i.case_no for i in cases.co_handled(dispatch, "chengguan")[0]] == [seeded["co_handled"]]
        assert cases.co_handled(dispatch, "zhujian") == ([], 0)


def works_mediation(mediation, seeded):
    with mediation.uow() as uow:
        [instance] = uow.session.scalars(select(WorkflowInstance).where(WorkflowInstance.case_no == CASE_NO))
        assert mediation.runtime.snapshot(uow.session, instance)["active"]  # the diagram loads
        assert uow.session.scalar(select(func.count()).select_from(WorkItem)
                                  .where(WorkItem.case_no == CASE_NO)) >= 1


def works_supervision(supervision, seeded):
    supervision.apply_message(message("dispatch", "dispatch.deadline_missed", stage="accept"))
    with supervision.uow() as uow:
        urges = uow.session.scalar(select(func.count()).select_from(WorkItem).where(
            WorkItem.case_no == CASE_NO, WorkItem.task_name == "urge"))
    assert urges == 2  # the old one and the new one


def works(name, service, seeded, tmp_path):
    if name == "dispatch":
        works_dispatch(service, seeded, tmp_path)
    else:
        {"intake": works_intake, "mediation": works_mediation,
         "supervision": works_supervision}[name](service, seeded)


# ------------------------------------------------------------------ copying rows into the old schema

def old_schema_rows(source_url, target_engine) -> dict:
    """Every row of the source database, restricted to the tables and columns of the
    target's (old) schema: {table: [row dict, …]} ordered by primary key."""
    old = MetaData()
    old.reflect(bind=target_engine)
    current = MetaData()
    source = engine_for(source_url)
    current.reflect(bind=source)
    rows = {}
    with source.connect() as conn:
        for name, table in old.tables.items():
            if name == "alembic_version":
                continue
            columns = [current.tables[name].c[c.name] for c in table.columns]
            order = [current.tables[name].c[c.name] for c in table.primary_key.columns]
            rows[name] = [dict(r._mapping) for r in conn.execute(select(*columns).order_by(*order))]
    source.dispose()
    return rows


def insert_rows(engine, rows: dict) -> None:
    old = MetaData()
    old.reflect(bind=engine)
    with engine.begin() as conn:
        for name, table_rows in rows.items():
            if table_rows:
                conn.execute(old.tables[name].insert(), table_rows)
            # as if the rows had been inserted one by one: serial ids continue after them
            for column in old.tables[name].primary_key.columns:
                if column.autoincrement is True or (column.autoincrement == "auto"
                                                     and column.type.python_type is int):
                    sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                            {"t": name, "c": column.name}).scalar()
                    if sequence and table_rows:
                        conn.execute(text("SELECT setval(:s, :v)"),
                                     {"s": sequence, "v": max(r[column.name] for r in table_rows)})


def assert_rows_kept(engine, rows: dict) -> None:
    current = MetaData()
    current.reflect(bind=engine)
    with engine.connect() as conn:
        for name, expected in rows.items():
            table = current.tables[name]
            columns = [table.c[c] for c in (expected[0] if expected else {})]
            if not columns:
                assert conn.execute(select(func.count()).select_from(table)).scalar() == 0, name
                continue
            order = [table.c[c.name] for c in table.primary_key.columns]
            got = [dict(r._mapping) for r in conn.execute(select(*columns).order_by(*order))]
            assert got[:len(expected)] == expected, f"{name}: rows changed by the migration"


def request_counts(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT day, district, channel, n FROM request_counts "
                                 "ORDER BY day, district, channel")).all()


def table_counts(engine, tables) -> dict:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}


# ------------------------------------------------------------------ the test

@pytest.mark.parametrize("name", ["intake", "dispatch", "mediation", "supervision"])
def test_upgrade_from_the_previous_release_keeps_every_row_and_the_case_goes_on(
        name, build_service, make_pg_database, tmp_path):
    # 1. representative rows, made by the current code
    source_url = make_pg_database(f"mig_src_{name}")
    source = build_service(name, database_url=source_url)
    seeded = SEED[name](source)
    save_staff(source, "fenbo_old", "海州区分拨员", "dispatcher", "210902", None, "old-pass-123")
    source.engine.dispose()

    # 2. a database at the previous release's schema, holding those rows
    old_url = make_pg_database(f"mig_old_{name}")
    old_engine = engine_for(old_url)
    for revision in previous_release(name):
        command.upgrade(alembic_config(name, old_engine), revision)
    rows = old_schema_rows(source_url, old_engine)
    assert rows["outbox"] or name != "intake"  # intake.case_submitted, published or not
    assert rows["workflow_instances"] and rows["inbox"] and rows["staff_users"] and rows["timeline"]
    insert_rows(old_engine, rows)

    # 3. `fzt db upgrade` (heads), then `fzt bpmn deploy`, with the current code
    upgrade(name, old_engine)
    script = ScriptDirectory.from_config(alembic_config(name, old_engine))
    with old_engine.connect() as conn:
        at = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    assert at == set(script.get_heads())
    assert_rows_kept(old_engine, rows)
    if name == "intake":  # the migration counted the requests as storing them does
        source_engine = engine_for(source_url)
        assert request_counts(old_engine) == request_counts(source_engine) != []
        source_engine.dispose()
    service = build_service(name, database_url=old_url)  # migrates (a no-op now) and deploys
    works(name, service, seeded, tmp_path)
    service.engine.dispose()

    # 4. downgrade to the previous release and up again: the case is still there
    kept = ("workflow_instances", "work_items", "timeline", "outbox", "inbox", "staff_users")
    counts = table_counts(old_engine, kept)
    downgrade_to_previous_release(name, old_engine)
    assert set(inspect(old_engine).get_table_names()) == set(rows) | {"alembic_version"}
    assert table_counts(old_engine, kept) == counts
    upgrade(name, old_engine)
    again = load_service(name, service.settings)
    prepare(again)
    with again.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(WorkflowInstance)) >= 1
    again.engine.dispose()
    old_engine.dispose()
