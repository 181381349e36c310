"""Operations: readiness checks, Prometheus metrics and structured logs with a correlation id.

* ``check_readiness(service)``: ``SELECT 1`` on the service's database and a connection to
  its broker; what ``GET /<service>/readyz`` and the worker's ``/readyz`` answer.
* ``metrics_for(service)``: the service's ``Metrics``, one ``CollectorRegistry`` per service
  object (not prometheus_client's global one: ``fzt run-all`` holds four services in one
  process). The web app and the worker of the same service object share it, so in
  ``fzt run-all`` ``/<service>/metrics`` shows the worker's counters too. Database gauges
  (outbox backlog, timers due, open work items) are read at scrape time.
* ``case_context(case_no, service)``: the case number as correlation id while a message is
  applied or a web request acts on a case; ``configure_logging`` adds it (and the service) to
  every log line, one JSON object per line with ``json_format=True``.
* ``serve_worker_http(worker, host, port)``: ``/healthz``, ``/readyz`` and ``/metrics`` of a
  worker process (``fzt worker <service> --metrics-port N``).

This is the only module that imports prometheus_client.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
import weakref
from datetime import datetime, timezone
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from .models import OutboxMessage, WorkflowInstance, WorkItem

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ correlation id

_case_no: contextvars.ContextVar[str | None] = contextvars.ContextVar("fzt_case_no", default=None)
_service: contextvars.ContextVar[str | None] = contextvars.ContextVar("fzt_service", default=None)


def current_case_no() -> str | None:
    return _case_no.get()


@contextlib.contextmanager
def case_context(case_no: str | None, service: str | None = None):
    """Log lines inside carry ``case_no`` (and ``service``, when given)."""
    tokens = bind_case(case_no, service)
    try:
        yield
    finally:
        unbind(tokens)


def bind_case(case_no: str | None, service: str | None = None):
    """Set the correlation id until ``unbind(tokens)`` (for before/teardown request hooks)."""
    tokens = [(_case_no, _case_no.set(case_no))]
    if service is not None:
        tokens.append((_service, _service.set(service)))
    return tokens


def unbind(tokens) -> None:
    for var, token in reversed(tokens):
        try:
            var.reset(token)
        except ValueError:  # set in another context (should not happen): just clear it
            var.set(None)


def bind_service(service: str) -> None:
    """Name the service for the rest of this thread's log lines (worker threads)."""
    _service.set(service)


# ------------------------------------------------------------------ logs

class ContextFilter(logging.Filter):
    """Adds ``service`` and ``case_no`` to every record (from the context, else the process's)."""

    def __init__(self, service: str | None = None):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "service", None):  # extra={"service": …} wins
            record.service = _service.get() or self.service
        record.case_no = _case_no.get()
        context = " ".join(v for v in (record.service, record.case_no) if v)
        record.context = f" [{context}]" if context else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, service, case_no, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        service = getattr(record, "service", None)
        case_no = getattr(record, "case_no", None)
        if service:
            entry["service"] = service
        if case_no:
            entry["case_no"] = case_no
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


def log_handler(json_format: bool, service: str | None = None, stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(service))
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(json_format: bool, service: str | None = None, level=logging.INFO) -> None:
    """Root logging for an ``fzt`` process: one handler on stderr, text or JSON lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(log_handler(json_format, service))
    root.setLevel(level)
    logging.getLogger("spiff").setLevel(logging.WARNING)  # one line per task state otherwise


# ------------------------------------------------------------------ readiness

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def short_error(err: BaseException, limit: int = 200) -> str:
    """A one-line reason for an operator: type and first line, no credentials from URLs."""
    cause = getattr(err, "orig", None) or err  # SQLAlchemy wraps the driver's error
    lines = str(cause).strip().splitlines()
    message = f"{type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    message = _CREDENTIALS.sub("***@", message)
    return message if len(message) <= limit else message[:limit - 1] + "…"


def check_database(service) -> str:
    try:
        with service.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as err:
        return short_error(err)


def check_broker(service, timeout: float = 3.0) -> str:
    topology = service.topology
    if topology.in_memory:
        return "ok"  # in-process transport: nothing to reach
    from kombu import Connection
    try:
        with Connection(topology.broker_url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return "ok"
    except Exception as err:
        return short_error(err)


def check_readiness(service, timeout: float = 3.0) -> tuple[bool, dict]:
    """``(ready, {"database": "ok"|reason, "broker": "ok"|reason})``."""
    checks = {"database": check_database(service), "broker": check_broker(service, timeout)}
    return all(v == "ok" for v in checks.values()), checks


def readiness_response(service) -> tuple[dict, int]:
    ready, checks = check_readiness(service)
    if not ready:
        log.warning("%s not ready: %s", service.name, checks)
    return {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503


# ------------------------------------------------------------------ metrics

disable_created_metrics()  # no *_created series: half the output, no use for dashboards here

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    """Everything one service measures; web app and worker call the small methods below."""

    def __init__(self, service):
        name = service.name
        self.service_name = name
        self._clock = service.clock
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter("fzt_http_requests", "HTTP requests answered",
                                 ["service", "endpoint", "method", "status"], registry=r)
        self._latency = Histogram("fzt_http_request_duration_seconds", "HTTP request latency",
                                  ["service", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self._consumed = Counter("fzt_bus_messages_consumed", "Bus messages received by the consumer",
                                 ["service"], registry=r).labels(name)
        self._applied = Counter("fzt_bus_messages_applied", "Bus messages applied and acked",
                                ["service"], registry=r).labels(name)
        self._dead = Counter("fzt_bus_messages_dead_lettered", "Bus messages sent to the dead-letter queue",
                             ["service"], registry=r).labels(name)
        self._apply_seconds = Histogram("fzt_bus_apply_duration_seconds", "Time to apply one message",
                                        ["service"], buckets=LATENCY_BUCKETS, registry=r).labels(name)
        self._lag = Histogram("fzt_bus_lag_seconds", "Platform time from a message's occurred_at to its apply",
                              ["service"], buckets=LAG_BUCKETS, registry=r).labels(name)
        self._published = Counter("fzt_outbox_published", "Outbox rows the relay published",
                                  ["service"], registry=r).labels(name)
        self._timers = Counter("fzt_timers_fired", "Workflow timers fired by the sweep",
                               ["service"], registry=r).labels(name)
        r.register(DatabaseCollector(service))

    # web
    def request_done(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(self.service_name, endpoint, method, str(status)).inc()
        self._latency.labels(self.service_name, endpoint).observe(seconds)

    # worker
    def consumed(self) -> None:
        self._consumed.inc()

    def applied(self, envelope: dict, seconds: float) -> None:
        self._applied.inc()
        self._apply_seconds.observe(seconds)
        try:  # occurred_at is an aware datetime once parse_envelope has loaded it
            occurred = envelope["occurred_at"]
            if isinstance(occurred, str):
                occurred = datetime.fromisoformat(occurred)
            self._lag.observe(max(0.0, (self._clock.now() - occurred).total_seconds()))
        except Exception as err:  # a metric never fails a message
            log.debug("bus lag not measured: %s", err)

    def dead_lettered(self) -> None:
        self._dead.inc()

    def published(self, count: int) -> None:
        if count:
            self._published.inc(count)

    def timers_fired(self, count: int) -> None:
        if count:
            self._timers.inc(count)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class NullMetrics:
    """For a consumer built without metrics (tests): every hook does nothing."""

    def consumed(self):
        pass

    def applied(self, envelope, seconds):
        pass

    def dead_lettered(self):
        pass


class DatabaseCollector(Collector):
    """Gauges read from the service's database at scrape time."""

    def __init__(self, service):
        self.service = service

    def describe(self):
        return []  # nothing is read at registration; families are produced in collect()

    def collect(self):
        name = self.service.name
        up = GaugeMetricFamily("fzt_database_up", "1 when the scrape-time database queries worked",
                               labels=["service"])
        try:
            families = self._read()
        except Exception as err:
            log.warning("%s: metrics could not read the database: %s", name, short_error(err))
            up.add_metric([name], 0)
            yield up
            return
        up.add_metric([name], 1)
        yield up
        yield from families

    def _read(self):
        name = self.service.name
        now = self.service.clock.now()
        with self.service.engine.connect() as conn:
            backlog, oldest = conn.execute(
                select(func.count(), func.min(OutboxMessage.created_at))
                .where(OutboxMessage.sent_at.is_(None))).one()
            due = conn.execute(
                select(func.count()).select_from(WorkflowInstance)
                .where(WorkflowInstance.next_timer_at <= now, WorkflowInstance.status == "waiting")
            ).scalar_one()
            open_items = conn.execute(
                select(WorkItem.task_name, func.count()).group_by(WorkItem.task_name)).all()
        if isinstance(oldest, str):  # SQLite returns min() of a datetime column as text
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=timezone.utc)
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0

        def gauge(metric, help_text, value):
            family = GaugeMetricFamily(metric, help_text, labels=["service"])
            family.add_metric([name], value)
            return family

        items = GaugeMetricFamily("fzt_work_items_open", "Open user tasks by task", labels=["service", "task_name"])
        for task_name, count in open_items:
            items.add_metric([name, task_name], count)
        return [
            gauge("fzt_outbox_backlog", "Outbox rows not yet published", backlog),
            gauge("fzt_outbox_oldest_unsent_age_seconds", "Age of the oldest unpublished outbox row (0 if none)", age),
            gauge("fzt_timers_due", "Waiting workflow instances whose next timer is due now", due),
            items,
        ]


_metrics: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def metrics_for(service) -> Metrics:
    """The one ``Metrics`` of this service object (created on first use)."""
    with _metrics_lock:
        found = _metrics.get(service)
        if found is None:
            found = _metrics[service] = Metrics(service)
        return found


# ------------------------------------------------------------------ worker HTTP endpoint

class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every 15 s would flood the log
        pass


def worker_wsgi_app(worker):
    """``/healthz`` (threads alive, not stopping), ``/readyz`` (database, broker), ``/metrics``."""
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body, content_type = worker.metrics.render()
            status = "200 OK"
        elif path in ("/healthz", "/readyz"):
            if path == "/healthz":
                alive = worker.alive()
                payload, code = {"service": worker.service.name, "status": "ok" if alive else "stopped"}, \
                    200 if alive else 503
            else:
                payload, code = readiness_response(worker.service)
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            content_type = "application/json"
            status = "200 OK" if code == 200 else "503 Service Unavailable"
        else:
            body, content_type, status = b"not found\n", "text/plain", "404 Not Found"
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
    return app


def serve_worker_http(worker, host: str, port: int):
    """Serve the worker's endpoints on a daemon thread; returns the server (``shutdown()``)."""
    server = make_server(host, port, worker_wsgi_app(worker), server_class=_Server,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True,
                              name=f"{worker.service.name}-metrics-http")
    thread.start()
    return server
