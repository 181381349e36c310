"""What a service is made of, and how it is wired (the composition root).

Each service declares a ``ServiceDefinition``: its name, the service-task handlers its
diagrams may call, the bus messages it listens to, the forms for its user tasks, and its web
blueprints. ``bootstrap`` turns a definition plus settings into a running ``Service`` with
its database, clock, bus topology and workflow runtime; tests pass their own clock.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from .bus.topology import Topology
from .clock import OffsetClock
from .db import UnitOfWork, insert_for, make_engine
from .models import ClockOffset, InboxMessage
from .workdays import calendar_for, workday_helpers
from .workflow.handlers import HandlerRegistry
from .workflow.runtime import WorkflowRuntime
from .workflow.specs import SpecRepository, read_sources

log = logging.getLogger(__name__)


def mark_received(session, envelope: dict, now) -> bool:
    """Add the message's inbox mark; False when it has one already. One ``INSERT … ON CONFLICT
    DO NOTHING``: should another consumer be applying the same message, it waits for that
    transaction and finds the mark once it commits (or takes the message if it rolls back)."""
    inbox = InboxMessage.__table__
    insert = insert_for(session.get_bind().dialect.name)
    return session.execute(insert(inbox).values(
        message_id=envelope["id"], routing_key=envelope["type"], processed_at=now,
    ).on_conflict_do_nothing(index_elements=[inbox.c.message_id]).returning(inbox.c.message_id)).first() is not None


class Listeners:
    """Bus messages a service handles in code: ``@listeners.on("dispatch.case_assigned")``."""

    def __init__(self):
        self.by_type: dict[str, list[Callable]] = {}

    def on(self, *message_types: str):
        def register(func):
            for message_type in message_types:
                self.by_type.setdefault(message_type, []).append(func)
            return func
        return register


@dataclass
class ServiceDefinition:
    name: str
    title: str
    service_tasks: HandlerRegistry = field(default_factory=HandlerRegistry)
    listeners: Listeners = field(default_factory=Listeners)
    forms: dict = field(default_factory=dict)  # user task id -> form class
    summary_keys: tuple = ()
    home_endpoint: str = "auth.login"  # where /<service>/ leads
    blueprints: Callable = lambda: []  # returns the service's Flask blueprints
    # Personal data in the service's own tables, for retention (services/common/retention.py):
    # an object with archived(session, case_no), contact(session, case_no), anonymise(session, case_no, scrub).
    personal_data: object = None
    # Jobs the worker runs after each timer sweep, ``job(service) -> int`` (how much work was
    # done), e.g. intake's notification sender (services/intake/notify.py).
    periodic: tuple = ()
    # ``hook(uow, case_no, before, after)``: called in the same transaction whenever the
    # workflow runtime changes a case's work items (``before``/``after``: the instance's
    # WorkItem rows), e.g. dispatch's co-handler table (services/dispatch/co_handling.py).
    work_items_changed: Callable | None = None


class Service:
    def __init__(self, definition: ServiceDefinition, settings, clock=None, engine=None):
        self.definition = definition
        self.name = definition.name
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url_for(self.name))
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        # For single statements that need no transaction (one round trip, no BEGIN/COMMIT).
        self.autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.clock = clock or OffsetClock(self._read_clock_offset)
        self.topology = Topology(settings.broker_url, settings.bus_prefix, settings.delivery_limit)
        self.specs = SpecRepository(self.name, settings.bpmn_dir, self.clock)
        # Working-day deadline helpers for diagram timers (docs/workdays.md).
        self.calendar = calendar_for(settings)
        self.runtime = WorkflowRuntime(self.name, self.specs, definition.service_tasks, self.clock,
                                       summary_keys=definition.summary_keys,
                                       helpers=workday_helpers(self.calendar),
                                       work_items_changed=definition.work_items_changed)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    @property
    def has_diagram(self) -> bool:
        return (self.settings.bpmn_dir / f"{self.name}.bpmn").exists()

    def deploy(self, sources=None):
        """Validate and store the service's diagrams (DiagramError if invalid)."""
        if not self.has_diagram and sources is None:
            return None, False
        with self.uow() as uow:
            result = self.specs.deploy(uow.session, self.definition.service_tasks.names(),
                                       set(self.definition.forms), sources)
            uow.commit()
        return result

    def routing_keys(self) -> set[str]:
        keys = set(self.definition.listeners.by_type)
        if self.has_diagram:
            process = self.specs.check(self.definition.service_tasks.names(), set(self.definition.forms),
                                       read_sources(self.settings.bpmn_dir, self.name))
            keys |= process.message_starts | process.message_catches
        return keys

    def apply_message(self, envelope: dict) -> None:
        """Apply one received message exactly once: inbox mark, listeners and workflow
        delivery commit together."""
        with self.uow() as uow:
            if not mark_received(uow.session, envelope, self.clock.now()):
                return  # already applied: a redelivery, or another consumer's concurrent copy
            for listener in self.definition.listeners.by_type.get(envelope["type"], []):
                listener(self, uow, envelope)
            if self.has_diagram:
                self.runtime.deliver(uow, envelope["type"], envelope["body"], envelope["case_no"])
            uow.commit()

    def _read_clock_offset(self) -> timedelta:
        with self.uow() as uow:
            row = uow.session.scalars(select(ClockOffset)).first()
            return timedelta(seconds=row.seconds if row else 0)

    def set_clock_offset(self, seconds: int) -> None:
        if self.settings.production:
            raise PermissionError("生产环境不允许调整平台时钟 (clock control is refused in production)")
        with self.uow() as uow:
            row = uow.session.get(ClockOffset, 1) or ClockOffset(id=1, seconds=0)
            row.seconds = seconds
            uow.add(row)
            uow.commit()
