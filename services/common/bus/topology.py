"""The bus topology: one durable topic exchange, one durable queue per consuming service,
and a dead-letter queue per service.

Names carry a prefix (FZT_BUS_PREFIX) so that test runs sharing one broker never meet.
Service queues are quorum queues: RabbitMQ counts deliveries and dead-letters a message
that crashed its consumer ``delivery_limit`` times. The main exchange has an alternate
exchange, so a message that no queue is bound for yet is kept, not dropped.
"""
from __future__ import annotations

from kombu import Connection, Exchange, Queue, binding


class Topology:
    def __init__(self, broker_url: str, prefix: str, delivery_limit: int = 5):
        self.broker_url = broker_url
        self.prefix = prefix
        self.delivery_limit = delivery_limit
        self.in_memory = broker_url.startswith("memory")
        self.unrouted = Exchange(f"{prefix}.unrouted", "fanout", durable=True)
        self.exchange = Exchange(
            f"{prefix}.events", "topic", durable=True,
            arguments=None if self.in_memory else {"alternate-exchange": self.unrouted.name},
        )
        self.dead_letters = Exchange(f"{prefix}.dead", "topic", durable=True)

    def connection(self) -> Connection:
        if self.in_memory:
            # The in-memory transport polls; its 1 s default would dominate latency.
            return Connection(self.broker_url, transport_options={"polling_interval": 0.01})
        return Connection(self.broker_url, transport_options={"confirm_publish": True}, heartbeat=30)

    def service_queue(self, service: str, routing_keys) -> Queue:
        arguments = None
        if not self.in_memory:
            arguments = {
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_letters.name,
                "x-dead-letter-routing-key": service,
            }
        return Queue(f"{self.prefix}.{service}", exchange=self.exchange, durable=True,
                     bindings=[binding(self.exchange, routing_key=k) for k in sorted(routing_keys)],
                     queue_arguments=arguments)

    def dead_letter_queue(self, service: str) -> Queue:
        return Queue(f"{self.prefix}.{service}.dead", exchange=self.dead_letters,
                     routing_key=service, durable=True)

    def unrouted_queue(self) -> Queue:
        return Queue(f"{self.prefix}.unrouted", exchange=self.unrouted, durable=True)

    def declare(self, channel, service: str | None = None, routing_keys=()) -> None:
        """Declare exchanges (and the service's queues) on ``channel``; idempotent."""
        for exchange in (self.unrouted, self.exchange, self.dead_letters):
            exchange(channel).declare()
        self.unrouted_queue()(channel).declare()
        if service:
            self.dead_letter_queue(service)(channel).declare()
            self.service_queue(service, routing_keys)(channel).declare()
