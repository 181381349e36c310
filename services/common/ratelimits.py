"""Rate-limit counters in the service's own database: a storage for the ``limits`` library.

Flask-Limiter (services/common/web/ratelimit.py) counts hits through a ``limits`` storage.
Its built-in ones are process memory (each web process would count alone, so N processes
would allow N times the limit) or servers this platform does not run (Redis, Memcached).
This storage keeps one row per key in the ``rate_limit_counters`` table of the service's
database, which every web process of the service shares: a fixed window per key, counted
with one atomic upsert (PostgreSQL and SQLite both have ``INSERT … ON CONFLICT``).

Windows are real time (``time.time``), not the platform clock: a limit protects the servers
now, whatever date tests or demos set the platform to. ``timer`` is injectable for tests.

Cost per submission (docs/benchmarks.md): every statement runs in autocommit (each is atomic
on its own), so it is one round trip, not BEGIN + statement + COMMIT. Within one web request
(``remember_within_request`` … ``forget``, hooked in by services/common/web/ratelimit.py) the
count and window end that an ``incr`` returned answer the ``get``/``get_expiry`` that
Flask-Limiter asks next for the X-RateLimit-* headers: 3 statements per submission instead
of 5. Such a value may miss a hit another process made in the same milliseconds; it only
feeds the headers, never the decision to refuse (that is the ``incr`` and the ``test``
before the request, whose keys were not written in the request yet).
"""
from __future__ import annotations

import threading
import time

from limits.storage import Storage
from sqlalchemy import Float, Integer, String, bindparam, case, delete, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, insert_for

STORAGE_URI = "fzt+sql://"
CLEANUP_EVERY = 60.0  # seconds between deletions of expired counters (per process)


class RateLimitCounter(Base):
    """One fixed window of one limit key: how many hits, and when the window ends."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = {"info": {"service": "common"}}
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # epoch seconds


_table = RateLimitCounter.__table__
# Statements built once with bound parameters (building one per hit cost more than running it).
_OPEN_WINDOW = select(_table.c.count, _table.c.expires_at).where(
    _table.c.key == bindparam("key"), _table.c.expires_at > bindparam("now"))


def _upsert(dialect_name: str):
    """Count a hit in ``key``'s window, or start a new window at this hit when the stored one
    has ended; returns (count, window end)."""
    insert = insert_for(dialect_name)
    amount, now, window_end = bindparam("amount"), bindparam("now"), bindparam("window_end")
    expired = _table.c.expires_at <= now
    return insert(_table).values(key=bindparam("key"), count=amount, expires_at=window_end).on_conflict_do_update(
        index_elements=[_table.c.key], set_={
            "count": case((expired, amount), else_=_table.c.count + amount),
            "expires_at": case((expired, window_end), else_=_table.c.expires_at),
        }).returning(_table.c.count, _table.c.expires_at)


class SqlStorage(Storage):
    """``limits`` storage on a SQLAlchemy engine: ``storage_from_string(STORAGE_URI,
    engine=engine)``. Supports the fixed-window strategy (what Flask-Limiter uses by default)."""

    STORAGE_SCHEME = ["fzt+sql"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, engine=None,
                 timer=time.time, **options):
        if engine is None:
            raise ValueError("SqlStorage needs the service's engine (storage option 'engine')")
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.timer = timer
        self._request = threading.local()  # .seen: {key: (count, expires_at)} of this request
        self._upsert = _upsert(engine.dialect.name)
        self._cleaned_at = 0.0

    @property
    def base_exceptions(self):
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.timer()
        with self.engine.connect() as conn:
            count, expires_at = conn.execute(self._upsert, {"key": key, "amount": amount, "now": now,
                                                            "window_end": now + expiry}).one()
            if now - self._cleaned_at > CLEANUP_EVERY:
                self._cleaned_at = now
                conn.execute(delete(_table).where(_table.c.expires_at <= now))
        seen = getattr(self._request, "seen", None)
        if seen is not None:
            seen[key] = (count, expires_at)
        return count

    def _current(self, key: str) -> tuple[int, float] | None:
        """(count, window end) of ``key``'s open window, None when it has none."""
        now = self.timer()
        seen = getattr(self._request, "seen", None)
        if seen is not None and key in seen:
            count, expires_at = seen[key]
            return (count, expires_at) if expires_at > now else None
        with self.engine.connect() as conn:
            row = conn.execute(_OPEN_WINDOW, {"key": key, "now": now}).first()
        return tuple(row) if row else None

    def get(self, key: str) -> int:
        current = self._current(key)
        return current[0] if current else 0

    def get_expiry(self, key: str) -> float:
        current = self._current(key)
        return current[1] if current else self.timer()

    def remember_within_request(self) -> None:
        self._request.seen = {}

    def forget(self) -> None:
        self._request.seen = None

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        self.forget()
        with self.engine.connect() as conn:
            return conn.execute(delete(_table)).rowcount

    def clear(self, key: str) -> None:
        (getattr(self._request, "seen", None) or {}).pop(key, None)
        with self.engine.connect() as conn:
            conn.execute(delete(_table).where(_table.c.key == key))
