"""Pooled connections are checked with a round trip only after sitting idle
(services/common/db.py ``ping_when_idle``): a dropped idle connection is replaced unseen, and a
connection returned moments ago is used as it is."""
import pytest
from sqlalchemy import create_engine, event, text

from services.common.db import IDLE_BEFORE_PING, ping_when_idle
from tests.support.timers import FakeTimer

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(make_pg_database):
    engine = create_engine(make_pg_database("pool"))
    engine.clock = FakeTimer(1000.0)
    ping_when_idle(engine, monotonic=engine.clock)
    engine.pings = 0
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        engine.pings += 1
        return ping(dbapi_connection)
    engine.dialect.do_ping = counted
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT pg_backend_pid()"))


def terminate(postgres_admin, pid):
    postgres_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_returned_moments_ago_is_not_pinged(engine):
    first = backend_pid(engine)
    engine.clock.now += IDLE_BEFORE_PING / 2
    assert backend_pid(engine) == first  # the same pooled connection
    assert engine.pings == 0


def test_an_idle_connection_dropped_by_the_server_is_replaced_without_an_error(engine, postgres_admin):
    first = backend_pid(engine)
    terminate(postgres_admin, first)  # as a server restart or a firewall would
    engine.clock.now += IDLE_BEFORE_PING + 1
    second = backend_pid(engine)  # no error: the ping found it dead, the pool connected anew
    assert second != first
    assert engine.pings == 1


def test_a_busy_connection_dropped_fails_once_then_the_pool_reconnects(engine, postgres_admin):
    first = backend_pid(engine)
    connects = []
    event.listen(engine, "connect", lambda *_: connects.append(1))
    terminate(postgres_admin, first)
    with pytest.raises(Exception) as failure:  # not pinged (returned moments ago): this one fails
        backend_pid(engine)
    assert "terminat" in str(failure.value).lower() or "closed" in str(failure.value).lower()
    assert backend_pid(engine) not in (first, None)  # the disconnect emptied the pool
    assert len(connects) == 1
