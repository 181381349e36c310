"""Outbox relay: publishes committed outbox rows with publisher confirms, then marks them sent.

A crash between publish and mark means the row is published again; consumers' inbox makes
that harmless. With several relays, ``SKIP LOCKED`` (PostgreSQL) keeps them on separate rows.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from ..models import OutboxMessage

log = logging.getLogger(__name__)


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
