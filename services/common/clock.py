"""The platform clock, injectable everywhere time matters.

SpiffWorkflow computes timer due times with ``datetime.now(timezone.utc)`` inside its timer
module; ``use_clock`` makes that call read our clock for the duration of a workflow step.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from datetime import datetime, timedelta, timezone

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock for tests: time moves only when told."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class OffsetClock:
    """System time plus an offset stored in the service's database (``fzt clock advance``).

    The offset is re-read at most once per ``ttl`` seconds so every process of a
    deployment follows the same platform clock.
    """

    def __init__(self, read_offset, ttl: float = 1.0):
        self._read_offset = read_offset
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached = (0.0, timedelta(0))

    def now(self) -> datetime:
        with self._lock:
            read_at, offset = self._cached
            if time.monotonic() - read_at > self._ttl:
                offset = self._read_offset()
                self._cached = (time.monotonic(), offset)
        return datetime.now(timezone.utc) + offset


_current = contextvars.ContextVar("fzt_clock", default=SystemClock())


class _ClockedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        value = _current.get().now()
        return value.astimezone(tz) if tz else value.replace(tzinfo=None)


_spiff_timer.datetime = _ClockedDatetime


def current_clock():
    """The clock bound by ``use_clock`` (the system clock outside a workflow step).

    Code that runs inside engine steps (diagram helpers such as ``due_after_workdays``) reads
    the time from here, so it agrees with the timer arithmetic SpiffWorkflow does itself.
    """
    return _current.get()


@contextlib.contextmanager
def use_clock(clock):
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)
