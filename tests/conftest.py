"""Shared fixtures: real PostgreSQL and RabbitMQ for integration and e2e tests.

Each run creates its own databases (``fzt_test_<run>_<service>``) and prefixes every
exchange and queue with ``fzt_test_<run>``, and removes them afterwards, so runs sharing
this machine's broker and server never meet. Outside CI a missing server skips those tests
with the reason; with CI=true it fails them.
"""
from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_HOST, PG_PORT = os.environ.get("FZT_TEST_PG_HOST", "127.0.0.1"), 5432
PG_USER = os.environ.get("FZT_TEST_PG_USER", "postgres")
AMQP_URL = os.environ.get("FZT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
RUN_ID = f"fzt_test_{secrets.token_hex(4)}"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host, port) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require(host, port, what):
    if not _reachable(host, port):
        message = f"{what} is not reachable at {host}:{port}"
        if IN_CI:
            pytest.fail(message + " (CI requires it)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_admin():
    require(PG_HOST, PG_PORT, "PostgreSQL")
    import psycopg
    conn = psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def make_pg_database(postgres_admin):
    """Factory: a fresh database for this run; dropped at the end of the session."""
    created = []

    def make(suffix: str) -> str:
        name = f"{RUN_ID}_{len(created)}_{suffix}"
        postgres_admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    yield make
    for name in created:
        postgres_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def rabbitmq():
    """(broker URL, a fresh prefix factory); every queue and exchange made is deleted after."""
    require("127.0.0.1", 5672, "RabbitMQ")
    from kombu import Connection
    prefixes = []

    def new_prefix() -> str:
        prefix = f"{RUN_ID}_{len(prefixes)}"
        prefixes.append(prefix)
        return prefix

    yield AMQP_URL, new_prefix
    with Connection(AMQP_URL) as conn:
        for prefix in prefixes:
            delete_topology(conn, prefix)


def delete_topology(conn, prefix):
    """Delete the queues and exchanges a test prefix may have created (missing ones are fine)."""
    from services.common.config import SERVICES
    queues = [f"{prefix}.{s}" for s in SERVICES] + [f"{prefix}.{s}.dead" for s in SERVICES]
    for name in queues + [f"{prefix}.unrouted"]:
        with conn.channel() as channel:
            try:
                channel.queue_delete(name)
            except Exception:
                pass  # never declared by this test
    for name in (f"{prefix}.events", f"{prefix}.dead", f"{prefix}.unrouted"):
        with conn.channel() as channel:
            try:
                channel.exchange_delete(name)
            except Exception:
                pass


def _unthrottled():
    from services.common.config import RateLimitSettings
    high = "100000/hour"
    return RateLimitSettings(submit_ip=high, submit_phone=high, lookup_ip=high, login_ip=high)


UNTHROTTLED = _unthrottled()


@pytest.fixture
def build_service(tmp_path):
    """Factory for a migrated, deployed Service on test settings (SQLite + memory bus by default)."""
    from services.common.clock import FrozenClock
    from services.common.config import from_env
    from services.common.platform import load_service, prepare

    def build(name, database_url=None, broker_url=None, prefix=None, clock=None, **overrides):
        # Limits on, but out of reach: tests of the limits pass their own (low) ones.
        overrides.setdefault("rate_limits", UNTHROTTLED)
        settings = from_env({}, env="test", var_dir=tmp_path,
                            database_urls={name: database_url or f"sqlite:///{tmp_path}/{name}.db"},
                            broker_url=broker_url or "memory://localhost//",
                            bus_prefix=prefix or f"{RUN_ID}_{secrets.token_hex(3)}", **overrides)
        service = load_service(name, settings, clock=clock or FrozenClock())
        prepare(service)
        return service

    return build
