"""A service's background worker: bus consumer, outbox relay and timer sweep (plus the
service's periodic jobs), one thread each.

``fzt worker <service>`` runs one; ``fzt run-all`` runs all four in the web process.
Stopping (Ctrl-C / SIGTERM) lets in-flight messages finish before threads exit: the consumer
checks ``should_stop`` only between messages, a prefetched message handed over after the stop
is requeued unapplied, and any other unacked one goes back to the queue when the connection
closes. Counters go to the service's ``Metrics``
(services/common/observability.py); ``serve_http`` exposes them with /healthz and /readyz.
"""
from __future__ import annotations

import logging
import threading

from kombu import Queue

from .bus.consumer import ServiceConsumer
from .bus.relay import OutboxListener, OutboxRelay
from .observability import bind_service, metrics_for, serve_worker_http
from .retention import Schedule

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, service, relay_interval: float = 0.05, sweep_interval: float = 1.0,
                 metrics=None, relay_idle_poll: float = 0.5):
        self.service = service
        self.metrics = metrics or metrics_for(service)  # shared with the web app of `run-all`
        self.relay_interval = relay_interval
        self.relay_idle_poll = relay_idle_poll
        self.sweep_interval = sweep_interval
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.outbox_has_work = threading.Event()
        self._threads: list[threading.Thread] = []
        self.retention = Schedule(service)  # daily anonymisation of archived cases (docs/privacy.md)
        self._consumer = None
        self._http = None

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
        log.info("%s worker started", self.service.name, extra={"service": self.service.name})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.outbox_has_work.set()
        if self._consumer is not None:
            self._consumer.should_stop = True
        for thread in self._threads:
            thread.join(timeout)
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            log.warning("%s worker: %s still running after %.0f s", self.service.name,
                        ", ".join(stuck), timeout, extra={"service": self.service.name})
        else:
            log.info("%s worker stopped", self.service.name, extra={"service": self.service.name})
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def alive(self) -> bool:
        """Started, not stopping, and every loop thread still running (the worker's /healthz)."""
        return (self.ready.is_set() and not self.stopping.is_set()
                and all(thread.is_alive() for thread in self._threads))

    def serve_http(self, host: str, port: int):
        """/healthz, /readyz and /metrics on ``host:port`` until ``stop``; returns the server."""
        self._http = serve_worker_http(self, host, port)
        return self._http

    def _declare(self):
        with self.service.topology.connection() as conn:
            self.service.topology.declare(conn.default_channel, self.service.name,
                                          self.service.routing_keys())

    def _guard(self, loop):
        def run():
            bind_service(self.service.name)  # log lines of this thread name the service
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
        # PostgreSQL: sleep until a commit NOTIFYs (polling only every relay_idle_poll s, a
        # safety net); other databases: poll every relay_interval.
        listener = OutboxListener(self.service.engine)
        try:
            with self.service.topology.connection() as conn:
                producer = conn.Producer()
                while not self.stopping.is_set():
                    sent = relay.relay_once(producer)
                    self.metrics.published(sent)
                    if sent == 0:
                        if listener.listening:
                            listener.wait(self.relay_idle_poll)
                        else:
                            self.outbox_has_work.wait(self.relay_interval)
                            self.outbox_has_work.clear()
                        if not self.service.topology.in_memory:
                            conn.heartbeat_check()  # keep an idle connection alive
        finally:
            listener.close()

    def _sweep_loop(self):
        while not self.stopping.is_set():
            if self.service.has_diagram:
                self.metrics.timers_fired(self.service.runtime.fire_due_timers(self.service.uow))
            self._run_periodic()
            self.retention.run_if_due()
            self.stopping.wait(self.sweep_interval)

    def _run_periodic(self):
        for job in self.service.definition.periodic:
            try:
                job(self.service)
            except Exception:  # a failing job (e.g. a mail server down) must not stop the timers
                log.exception("%s: periodic job %s failed", self.service.name, getattr(job, "__name__", job))

    def _consume_loop(self, routing_keys):
        queue: Queue = self.service.topology.service_queue(self.service.name, routing_keys)
        with self.service.topology.connection() as conn:
            self._consumer = ServiceConsumer(conn, self.service.topology, self.service.name, queue,
                                             self.service.apply_message, metrics=self.metrics,
                                             prefetch=self.service.settings.prefetch)
            if self.stopping.is_set():
                return
            self._consumer.run()
