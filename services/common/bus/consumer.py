"""Consuming one service's queue: validate, apply once, ack after commit, dead-letter the rest.

* undecodable or invalid messages (bad JSON, unknown type, invalid body) go straight to the
  service's dead-letter queue with the reason in ``x-fzt-reason``;
* a handler that fails is retried a few times in place, then the message is dead-lettered;
* a message that kills the process is redelivered by RabbitMQ and, after the quorum queue's
  delivery limit, dead-lettered by the broker itself.
Nothing is acked before it is applied and committed, or safely in the dead-letter queue.
"""
from __future__ import annotations

import logging
import time

from kombu.mixins import ConsumerMixin

from ..observability import NullMetrics, case_context
from .messages import InvalidMessage, parse_envelope

log = logging.getLogger(__name__)


class ServiceConsumer(ConsumerMixin):
    def __init__(self, connection, topology, service, queue, apply, retries: int = 3,
                 retry_delay: float = 0.2, metrics=None, prefetch: int = 1):
        self.connection = connection
        self.topology = topology
        self.service = service
        self.queue = queue
        self.apply = apply
        self.retries = retries
        self.retry_delay = retry_delay
        self.metrics = metrics or NullMetrics()  # consumed / applied / dead-lettered counters
        self.prefetch = prefetch  # FZT_PREFETCH: what a killed worker puts back, counted

    def get_consumers(self, Consumer, channel):
        self.topology.declare(channel, self.service, [b.routing_key for b in self.queue.bindings])
        return [Consumer(queues=[self.queue], callbacks=[self.on_message], accept=["json"],
                         prefetch_count=self.prefetch)]

    def on_message(self, body, message):
        if self.should_stop:
            # Stopping: a message prefetched with the one just applied arrives in the same
            # read; give it back at once for the next consumer rather than apply it.
            message.requeue()
            return
        self.metrics.consumed()
        try:
            envelope = parse_envelope(body)
        except InvalidMessage as err:
            self.dead_letter(message, str(err))
            return
        with case_context(envelope["case_no"], self.service):  # correlation id in log lines
            self._apply(envelope, message)

    def _apply(self, envelope, message):
        last_error = None
        for attempt in range(1, self.retries + 1):
            started = time.perf_counter()
            try:
                self.apply(envelope)
                message.ack()
            except Exception as err:  # retried, then dead-lettered with the reason
                last_error = err
                log.warning("handling %s (%s) failed, attempt %d: %s", envelope["type"],
                            envelope["case_no"], attempt, err)
                time.sleep(self.retry_delay * attempt)
            else:
                self.metrics.applied(envelope, time.perf_counter() - started)
                return
        self.dead_letter(message, f"handler failed {self.retries} times: "
                                  f"{type(last_error).__name__}: {last_error}")

    def on_decode_error(self, message, exc):
        # kombu's default acks (drops) the message; keep it instead.
        self.metrics.consumed()
        self.dead_letter(message, f"cannot decode: {type(exc).__name__}: {exc}")

    def dead_letter(self, message, reason: str):
        log.error("dead-lettering message on %s: %s", self.service, reason)
        self.metrics.dead_lettered()
        headers = dict(message.headers or {})
        headers.update({"x-fzt-reason": reason[:1000], "x-fzt-service": self.service,
                        "x-fzt-routing-key": message.delivery_info.get("routing_key", "")})
        producer = self.connection.Producer()
        producer.publish(message.body, exchange=self.topology.dead_letters,
                         routing_key=self.service, headers=headers,
                         content_type=message.content_type or "application/octet-stream",
                         content_encoding=message.content_encoding or "binary",
                         delivery_mode=2, timestamp=int(time.time()),  # "first seen" for ops
                         declare=[self.topology.dead_letter_queue(self.service)])
        message.ack()
