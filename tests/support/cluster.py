"""Run the platform as real processes for e2e tests, benchmarks and fault tests.

``OneProcessCluster``: ``fzt run-all`` (SQLite + in-memory bus), as ``make run`` does.
``FourProcessCluster``: ``fzt serve`` + ``fzt worker`` per service (eight processes) on
PostgreSQL and RabbitMQ, each service on its own port.
Both expose ``url(service, path)``, ``fzt(...)`` (the CLI with the cluster's environment)
and ``token(service, user)``; logs go to ``<var_dir>/logs``.
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
                    "PYTHONUNBUFFERED": "1", **env}
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
