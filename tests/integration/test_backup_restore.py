"""Backups as docs/operations.md tells: ``pg_dump -Fc`` of a service database, ``pg_restore``
into a fresh database, the service pointed at it reads the case and carries the workflow on."""
import shutil
import subprocess

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from services.common.bus.messages import make_envelope
from services.common.demo import save_staff
from services.common.models import InboxMessage, TimelineEntry, WorkflowInstance

from .test_migrations import AT, CASE_NO, SUBMITTED, works_dispatch

PG_DUMP, PG_RESTORE = shutil.which("pg_dump"), shutil.which("pg_restore")


def pg_args(url: str) -> list[str]:
    parsed = make_url(url)
    return ["-h", parsed.host, "-p", str(parsed.port or 5432), "-U", parsed.username]


def counts(service) -> dict:
    with service.uow() as uow:
        return {model.__tablename__: uow.session.scalar(select(func.count()).select_from(model))
                for model in (WorkflowInstance, TimelineEntry, InboxMessage)}


@pytest.mark.skipif(not (PG_DUMP and PG_RESTORE), reason="pg_dump/pg_restore not installed")
def test_dump_restore_into_a_fresh_database_and_carry_on(build_service, make_pg_database, tmp_path):
    live_url = make_pg_database("backup_live")
    live = build_service("dispatch", database_url=live_url)
    live.apply_message(make_envelope("intake.case_submitted", SUBMITTED, "intake", AT))
    save_staff(live, "fenbo_old", "海州区分拨员", "dispatcher", "210902", None, "pass-12345")
    before = counts(live)

    dump = tmp_path / "fzt_dispatch.dump"
    subprocess.run([PG_DUMP, *pg_args(live_url), "-Fc", "-f", str(dump),
                    make_url(live_url).database], check=True, capture_output=True, timeout=120)
    live.engine.dispose()

    restored_url = make_pg_database("backup_restored")  # empty, as `createdb` makes it
    subprocess.run([PG_RESTORE, *pg_args(restored_url), "--no-owner", "--exit-on-error",
                    "-d", make_url(restored_url).database, str(dump)],
                   check=True, capture_output=True, timeout=120)

    restored = build_service("dispatch", database_url=restored_url)  # `fzt db upgrade`: no-op
    assert counts(restored) == before
    works_dispatch(restored, {}, tmp_path)  # shown, assigned by the same account, audited
    with restored.uow() as uow:
        [instance] = uow.session.scalars(select(WorkflowInstance).where(WorkflowInstance.case_no == CASE_NO))
        assert instance.version >= 2  # saved again after the restore: sequences and locks work
    restored.engine.dispose()
