"""Run the platform as real processes for e2e tests, benchmarks and fault tests.

``OneProcessCluster``: ``fzt run-all`` (SQLite + in-memory bus), as ``make run`` does.
``FourProcessCluster``: ``fzt serve`` + ``fzt worker`` per service (eight processes) on
PostgreSQL and RabbitMQ, each service on its own port.
Both expose ``url(service, path)``, ``fzt(...)`` (the CLI with the cluster's environment)
and ``token(service, user)``; logs go to ``<var_dir>/logs``.
``restart(name)`` re-spawns one process with the arguments it was started with and waits
until it is ready again (fault tests kill -9 and restart); ``FourProcessCluster.query`` reads
a service's database directly and ``queue_depths`` counts ready messages per queue.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from services.common.config import SERVICES

FZT = [sys.executable, "-m", "services.common.cli"]
# Load from one address and one phone number: rate limits on, but out of reach (a cluster
# that tests the limits passes its own FZT_RATE_LIMIT_* in ``env``).
UNTHROTTLED = {f"FZT_RATE_LIMIT_{kind}": "1000000/hour" for kind in ("SUBMIT_IP", "SUBMIT_PHONE", "LOOKUP_IP", "LOGIN_IP")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class Cluster:
    def __init__(self, var_dir: Path, env: dict):
        self.var_dir = Path(var_dir)
        self.logs = self.var_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FZT_ENV": "test", "FZT_VAR_DIR": str(self.var_dir),
                    "PYTHONUNBUFFERED": "1", **UNTHROTTLED, **env}
        self.processes: dict[str, subprocess.Popen] = {}

    def fzt(self, *args, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([*FZT, *args], env=self.env, capture_output=True, text=True,
                              check=check, timeout=120)

    def token(self, service: str, username: str) -> str:
        return self.fzt("token", service, username).stdout.strip()

    def spawn(self, name: str, *args) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        process = subprocess.Popen([*FZT, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def log_text(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            process.wait(15)

    def restart(self, name: str, timeout: float = 60.0) -> subprocess.Popen:
        """Start ``name`` again with the arguments it was started with (killing it first if it
        still runs) and wait until it is ready: ``_ready(name, log_offset)``."""
        old = self.processes[name]
        if old.poll() is None:
            self.kill(name)
        log = self.logs / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        process = self.spawn(name, *old.args[len(FZT):])

        def ready():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} on restart:\n"
                                   f"{self.log_text(name)[offset:][-3000:]}")
            return self._ready(name, offset)
        wait_until(ready, timeout, f"{name} to be ready after a restart", interval=0.05)
        return process

    def _ready(self, name: str, log_offset: int) -> bool:
        """Whether process ``name`` serves again; its log from ``log_offset`` on is this run's."""
        return True

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _check_alive(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_text(name)[-3000:]}")


class OneProcessCluster(Cluster):
    def __init__(self, var_dir: Path, env: dict | None = None):
        super().__init__(var_dir, env or {})
        self.port = free_port()

    def url(self, service: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}/{service}{path}"

    def start(self):
        self.spawn("run-all", "run-all", "--port", str(self.port))

        def up():
            self._check_alive()
            return _healthy(self.url("intake", "/healthz")) and "running at" in self.log_text("run-all")
        wait_until(up, 90, "fzt run-all")


class FourProcessCluster(Cluster):
    """Eight processes on PostgreSQL (``database_urls`` per service) and RabbitMQ."""

    def __init__(self, var_dir: Path, database_urls: dict, broker_url: str, bus_prefix: str,
                 env: dict | None = None):
        db_env = {f"FZT_DATABASE_URL_{s.upper()}": url for s, url in database_urls.items()}
        super().__init__(var_dir, {"FZT_BROKER_URL": broker_url, "FZT_BUS_PREFIX": bus_prefix,
                                   **db_env, **(env or {})})
        self.ports = {service: free_port() for service in SERVICES}
        self.database_urls = dict(database_urls)
        self.broker_url = broker_url
        self.bus_prefix = bus_prefix
        self._engines: dict = {}

    def url(self, service: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[service]}/{service}{path}"

    def start(self):
        self.fzt("db", "upgrade")
        self.fzt("bpmn", "deploy")
        self.fzt("demo-data")
        for service in SERVICES:
            self.spawn(f"{service}-worker", "worker", service)
            self.spawn(f"{service}-web", "serve", service, "--port", str(self.ports[service]))

        def up():
            self._check_alive()
            return all(_healthy(self.url(s, "/healthz")) for s in SERVICES) and all(
                "worker running" in self.log_text(f"{s}-worker") for s in SERVICES)
        wait_until(up, 90, "four services and their workers")

    def _ready(self, name: str, log_offset: int) -> bool:
        service, kind = name.rsplit("-", 1)
        if kind == "worker":
            with open(self.logs / f"{name}.log", "rb") as log:
                log.seek(log_offset)
                return b"worker running" in log.read()
        return _healthy(self.url(service, "/healthz"))

    def engine(self, service: str):
        """A SQLAlchemy engine on ``service``'s database (no pool: nothing lingers)."""
        if service not in self._engines:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool
            self._engines[service] = create_engine(self.database_urls[service], poolclass=NullPool)
        return self._engines[service]

    def query(self, service: str, sql: str, **params) -> list:
        """Rows of ``sql`` (text, ``:name`` parameters) on ``service``'s database."""
        from sqlalchemy import text
        with self.engine(service).connect() as conn:
            return list(conn.execute(text(sql), params))

    def scalar(self, service: str, sql: str, **params):
        rows = self.query(service, sql, **params)
        return rows[0][0] if rows else None

    def count_rows(self, table: str, where: str = "TRUE", **params) -> dict:
        """``{service: count(*) of table where …}`` over the four databases."""
        return {s: self.scalar(s, f"SELECT count(*) FROM {table} WHERE {where}", **params)
                for s in SERVICES}

    def queue_depths(self, suffixes=("", ".dead")) -> dict:
        """Ready messages per queue ``<prefix>.<service><suffix>`` and ``<prefix>.unrouted``
        (passive declare: a queue never declared counts as absent, None). Unacknowledged
        messages a consumer holds are not counted."""
        import pika

        from services.common.bus.deadletters import pika_parameters
        names = [f"{self.bus_prefix}.{s}{x}" for s in SERVICES for x in suffixes]
        names.append(f"{self.bus_prefix}.unrouted")
        depths = {}
        connection = pika.BlockingConnection(pika_parameters(self.broker_url))
        try:
            for name in names:
                channel = connection.channel()
                try:
                    depths[name] = channel.queue_declare(name, passive=True).method.message_count
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:
                    depths[name] = None  # 404: never declared
        finally:
            connection.close()
        return depths

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
