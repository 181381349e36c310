"""Database engines, the declarative base, and the unit of work.

One Base for all models; every table says which service owns it in ``info['service']``
("common" tables exist in every service's database). A service never touches another's tables.
"""
from __future__ import annotations

import time
from datetime import timezone

from sqlalchemy import DateTime, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError


class Conflict(Exception):
    """Someone else changed the record first (optimistic lock); the user should reload."""

    def __init__(self, case_no: str | None = None):
        what = f"案件 {case_no} " if case_no else "该记录"
        super().__init__(f"{what}已被他人更新，请刷新后重试 (changed by someone else, reload)")
        self.case_no = case_no


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


def insert_for(dialect_name: str):
    """The ``insert`` with ``ON CONFLICT`` clauses for the dialect (both backends have them)."""
    return postgresql.insert if dialect_name == "postgresql" else sqlite.insert


def tables_for(service: str):
    return [t for t in Base.metadata.sorted_tables if t.info.get("service") in ("common", service)]


def make_engine(url: str):
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    ping_when_idle(engine)
    return engine


IDLE_BEFORE_PING = 2.0  # seconds


def ping_when_idle(engine, idle: float = IDLE_BEFORE_PING, monotonic=time.monotonic) -> None:
    """``pool_pre_ping``, but only for a connection that sat in the pool ``idle`` seconds or
    more: that is when a restarted server or a firewall may have dropped it. A connection
    returned moments ago is used without the extra round trip (a busy service takes one out
    for every transaction). Should its server have gone away in those moments, the statement
    fails, SQLAlchemy sees the disconnect and empties the pool, and the next checkout connects
    anew: the one transaction fails as it would have failed during the outage anyway."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _note_time(_dbapi_connection, record):
        record.info["idle_since"] = monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        if monotonic() - record.info.get("idle_since", 0.0) < idle:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            raise DisconnectionError(f"stale pooled connection: {err}") from err  # the pool connects anew


class UnitOfWork:
    """One transaction: state changes, outbox messages and inbox marks commit together."""

    def __init__(self, session_factory: sessionmaker):
        self._session_factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> "UnitOfWork":
        self.session = self._session_factory()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None:
                self.session.rollback()
        finally:
            self.session.close()

    def commit(self):
        try:
            self.session.commit()
        except StaleDataError:
            self.session.rollback()
            raise Conflict() from None

    def rollback(self):
        self.session.rollback()

    def add(self, obj):
        self.session.add(obj)

    def insert(self, model, **values) -> None:
        """Write a row that nothing changes or reads back as an object in this transaction
        (timeline entries, outbox messages, notifications): one Core INSERT on the
        transaction's connection, at once, without the ORM's bookkeeping (add + flush cost
        twice the CPU). No autoflush either: pending objects are flushed as before."""
        self.session.connection().execute(insert(model.__table__), values)
