"""The per-day request counts (services/intake/volume_counts.py) equal the GROUP BY over
``citizen_requests`` they replace: after submissions through every channel, across China
midnight, after a rolled-back submission, under concurrent submissions (PostgreSQL), and
after the migration that fills them from the requests already stored (both databases)."""
import json
import threading
from collections import Counter
from datetime import UTC, date, datetime

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, create_engine, select
from sqlalchemy.pool import NullPool

from services.common.clock import FrozenClock
from services.common.demo import load_demo_accounts
from services.common.migrations import alembic_config, upgrade
from services.common.web.app import create_app
from services.common.web.auth import make_token
from services.common.workdays import CHINA_TZ
from services.intake.hotline import parse_order, store_order
from services.intake.models import CitizenRequest, RequestCount
from services.intake.requests import submit_request
from services.intake.stats import daily_volume
from tests.unit.test_roles import csrf_from, logged_in

CITIZEN = {"name": "张三", "phone": "13800001234", "description": "小区门口路灯坏了一个多月"}
OPEN311 = {"api_key": "fzt-open311-dev", "service_code": "housing", "attribute[district]": "210902",
           "first_name": "三丰", "last_name": "张", "phone": "13800001234",
           "description": "楼上漏水，天花板一直滴水", "address_string": "海州区中华路12号"}
# 23:59:59 on 11-01 in China, then 23:30 UTC: 07:30 on 11-02 in China, the next China day.
BEFORE_MIDNIGHT = datetime(2026, 11, 1, 15, 59, 59, tzinfo=UTC)
LATE_UTC = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
PREVIOUS_HEAD = "i0006_callback"  # the intake revision before request_counts


def counts(service) -> Counter:
    with service.uow() as uow:
        return Counter({(r.day, r.district, r.channel): r.n for r in uow.session.scalars(select(RequestCount))})


def grouped(service) -> Counter:
    """What ``GROUP BY china day, district, channel`` over citizen_requests gives."""
    with service.uow() as uow:
        return Counter((r.created_at.astimezone(CHINA_TZ).date(), r.district, r.channel)
                       for r in uow.session.scalars(select(CitizenRequest)))


def submit_everywhere(intake, app, n: int) -> None:
    """One request through each channel (and a retry of two of them, which must not count)."""
    citizen = app.test_client()
    token = csrf_from(citizen.get("/").get_data(as_text=True))
    assert citizen.post("/", data={"csrf_token": token, "district": "210902", **CITIZEN}).status_code == 302
    key = {"Idempotency-Key": f"retry-{n}"}
    for _ in range(2):
        assert citizen.post("/api/v1/requests", json={"district": "210911", **CITIZEN},
                            headers=key).status_code == 201
    staff = {"Authorization": f"Bearer {make_token(app.config['SECRET_KEY'], 'operator')}"}
    assert citizen.post("/api/v1/requests", json={"district": "210904", "channel": "phone", **CITIZEN},
                        headers=staff).status_code == 201
    assert citizen.post("/open311/v2/requests.json", data=OPEN311).status_code == 200
    grid = logged_in(app, "wangge_haizhou")
    filed = grid.post("/staff/file", data={"csrf_token": csrf_from(grid.get("/staff/file").get_data(as_text=True)),
                                           "channel": "grid", **CITIZEN})
    assert filed.status_code == 302
    order = parse_order(json.dumps({"order_id": f"12345-{n}", "received_at": "2026-11-02T07:00:00+08:00",
                                    "caller_name": "李四", "caller_phone": "13912345678", "district": "210902",
                                    "content": "小区供暖温度不达标，室内只有十四度"}).encode())
    assert store_order(intake, order)[0] == "stored"
    assert store_order(intake, order)[0] == "duplicate"


def test_every_channel_counts_on_its_china_day(build_service):
    intake = build_service("intake", clock=FrozenClock(BEFORE_MIDNIGHT))
    load_demo_accounts(intake)
    app = create_app(intake)
    submit_everywhere(intake, app, 1)
    intake.clock.advance(LATE_UTC - BEFORE_MIDNIGHT)
    submit_everywhere(intake, app, 2)

    assert counts(intake) == grouped(intake)
    assert sum(counts(intake).values()) == 12  # six channels twice; retries not counted
    per_channel = {("210902", "web"): 1, ("210911", "web"): 1, ("210904", "phone"): 1,
                   ("210902", "open311"): 1, ("210902", "grid"): 1, ("210902", "hotline_12345"): 1}
    for day in (date(2026, 11, 1), date(2026, 11, 2)):  # the 23:30 UTC ones on the next China day
        assert {(d, c): n for _, d, c, n in daily_volume(intake, day, day, ["210902", "210904", "210911"])} \
            == per_channel


def test_a_rolled_back_submission_is_not_counted(build_service):
    intake = build_service("intake")
    with intake.uow() as uow:
        submit_request(intake, {"district": "210902", "channel": "web", **CITIZEN}, uow)
        uow.rollback()
    submit_request(intake, {"district": "210902", "channel": "web", **CITIZEN})
    assert counts(intake) == grouped(intake) == Counter({(date(2026, 11, 2), "210902", "web"): 1})


@pytest.mark.integration
def test_concurrent_submissions_of_one_day_and_channel_are_all_counted(build_service, make_pg_database):
    intake = build_service("intake", database_url=make_pg_database("intake_counts"))
    errors = []

    def submit_some():
        try:
            for _ in range(5):
                submit_request(intake, {"district": "210902", "channel": "web", **CITIZEN})
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=submit_some) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert counts(intake) == grouped(intake) == Counter({(date(2026, 11, 2), "210902", "web"): 30})


# -- the migration fills the counts from the requests already stored --------------------------

STORED = [  # (UTC time, district, channel)
    (datetime(2026, 11, 1, 15, 59, 59, tzinfo=UTC), "210902", "web"),    # 11-01 23:59:59 China
    (datetime(2026, 11, 1, 16, 0, tzinfo=UTC), "210902", "web"),         # 11-02 00:00 China
    (LATE_UTC, "210902", "web"),                                         # 11-02 07:30 China
    (LATE_UTC, "210902", "hotline_12345"),
    (datetime(2026, 11, 2, 2, 0, tzinfo=UTC), "210911", "open311"),
]


def store_before_the_migration(url: str) -> None:
    """A database at the revision before request_counts, holding STORED."""
    engine = create_engine(url, poolclass=NullPool)
    command.upgrade(alembic_config("intake", engine), PREVIOUS_HEAD)
    table = Table("citizen_requests", MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"case_no": f"{district}-old-{i:04d}", "tracking_code": "ABCDEFGH", "district": district,
             "name": "张三", "phone": "13800001234", "description": "测试诉求内容", "category": "",
             "channel": channel, "location": "", "status": "submitted", "created_at": at}
            for i, (at, district, channel) in enumerate(STORED)])
    upgrade("intake", engine)
    engine.dispose()


def check_backfill(build_service, url: str) -> None:
    store_before_the_migration(url)
    intake = build_service("intake", database_url=url)  # its clock: 2026-11-02 09:00 UTC
    assert counts(intake) == grouped(intake) == Counter({
        (date(2026, 11, 1), "210902", "web"): 1, (date(2026, 11, 2), "210902", "web"): 2,
        (date(2026, 11, 2), "210902", "hotline_12345"): 1, (date(2026, 11, 2), "210911", "open311"): 1})
    # a new request adds to the backfilled row (same key, however the database writes dates)
    submit_request(intake, {"district": "210902", "channel": "web", **CITIZEN})
    assert counts(intake)[(date(2026, 11, 2), "210902", "web")] == 3
    assert counts(intake) == grouped(intake)


def test_the_migration_counts_the_stored_requests_on_sqlite(build_service, tmp_path):
    check_backfill(build_service, f"sqlite:///{tmp_path}/intake.db")


@pytest.mark.integration
def test_the_migration_counts_the_stored_requests_on_postgresql(build_service, make_pg_database):
    check_backfill(build_service, make_pg_database("intake_backfill"))
