"""Outbox relay: publishes committed outbox rows with publisher confirms, then marks them sent.

A crash between publish and mark means the row is published again; consumers' inbox makes
that harmless. With several relays, ``SKIP LOCKED`` (PostgreSQL) keeps them on separate rows.
On PostgreSQL the transaction that writes outbox rows also NOTIFYs; an idle relay waits for
that instead of polling (``OutboxListener``), with a slow poll as a safety net.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, text

from ..models import OutboxMessage

log = logging.getLogger(__name__)
CHANNEL = "fzt_outbox"


def notify_outbox(session) -> None:
    """Wake the relays listening on this database when the transaction commits (PostgreSQL
    delivers NOTIFY only on commit, once per transaction and channel). Elsewhere a no-op.
    On the session's connection, not ``session.execute``: that would flush what is pending
    first, an extra flush per transaction (the rows go in with the commit's flush instead)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(text(f"NOTIFY {CHANNEL}"))


class OutboxListener:
    """LISTENs for ``notify_outbox`` on a connection of its own (PostgreSQL only), so an idle
    relay sleeps instead of querying the outbox every few milliseconds, and wakes at once
    when a commit wrote outbox rows. ``listening`` is False on other databases."""

    def __init__(self, engine):
        self.conn = None
        if engine.dialect.name == "postgresql":
            import psycopg
            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.conn = psycopg.connect(url, autocommit=True)
            self.conn.execute(f"LISTEN {CHANNEL}")

    @property
    def listening(self) -> bool:
        return self.conn is not None

    def wait(self, timeout: float) -> bool:
        """True when notified within ``timeout`` seconds."""
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class OutboxRelay:
    def __init__(self, topology, uow_factory, clock, batch_size: int = 200):
        self.topology = topology
        self.uow_factory = uow_factory
        self.clock = clock
        self.batch_size = batch_size

    def relay_once(self, producer) -> int:
        """Publish one batch; returns how many rows were sent."""
        with self.uow_factory() as uow:
            rows = uow.session.scalars(
                select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                .order_by(OutboxMessage.id).limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                producer.publish(
                    row.envelope, exchange=self.topology.exchange, routing_key=row.routing_key,
                    serializer="json", delivery_mode=2, message_id=row.message_id,
                    headers={"case_no": row.envelope.get("case_no", "")},
                )
                row.sent_at = self.clock.now()
            uow.commit()
            return len(rows)
