"""A service's background worker: bus consumer, outbox relay and timer sweep, one thread each.

``fzt worker <service>`` runs one; ``fzt run-all`` runs all four in the web process.
Stopping (Ctrl-C / SIGTERM) lets in-flight messages finish before threads exit.
"""
from __future__ import annotations

import logging
import threading
import time

from kombu import Queue

from .bus.consumer import ServiceConsumer
from .bus.relay import OutboxRelay

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, service, relay_interval: float = 0.05, sweep_interval: float = 1.0):
        self.service = service
        self.relay_interval = relay_interval
        self.sweep_interval = sweep_interval
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.outbox_has_work = threading.Event()
        self._threads: list[threading.Thread] = []
        self._consumer = None

    def start(self) -> "Worker":
        self._declare()
        targets = [self._relay_loop, self._sweep_loop]
        routing_keys = self.service.routing_keys()
        if routing_keys:
            targets.append(lambda: self._consume_loop(routing_keys))
        for target in targets:
            thread = threading.Thread(target=self._guard(target), daemon=True,
                                      name=f"{self.service.name}-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        self.ready.set()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.outbox_has_work.set()
        if self._consumer is not None:
            self._consumer.should_stop = True
        for thread in self._threads:
            thread.join(timeout)

    def _declare(self):
        with self.service.topology.connection() as conn:
            self.service.topology.declare(conn.default_channel, self.service.name,
                                          self.service.routing_keys())

    def _guard(self, loop):
        def run():
            while not self.stopping.is_set():
                try:
                    loop()
                except Exception:  # keep the worker alive; the loop reconnects
                    log.exception("%s: %s crashed, restarting in 1 s", self.service.name,
                                  getattr(loop, "__name__", "loop"))
                    self.stopping.wait(1.0)
        run.__name__ = getattr(loop, "__name__", "loop")
        return run

    def _relay_loop(self):
        relay = OutboxRelay(self.service.topology, self.service.uow, self.service.clock)
        with self.service.topology.connection() as conn:
            producer = conn.Producer()
            while not self.stopping.is_set():
                if relay.relay_once(producer) == 0:
                    self.outbox_has_work.wait(self.relay_interval)
                    self.outbox_has_work.clear()
                    if not self.service.topology.in_memory:
                        conn.heartbeat_check()  # keep an idle connection alive

    def _sweep_loop(self):
        while not self.stopping.is_set():
            if self.service.has_diagram:
                self.service.runtime.fire_due_timers(self.service.uow)
            self.stopping.wait(self.sweep_interval)

    def _consume_loop(self, routing_keys):
        queue: Queue = self.service.topology.service_queue(self.service.name, routing_keys)
        with self.service.topology.connection() as conn:
            self._consumer = ServiceConsumer(conn, self.service.topology, self.service.name, queue,
                                             self.service.apply_message)
            if self.stopping.is_set():
                return
            self._consumer.run()
