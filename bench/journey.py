"""Benchmark the citizen → dispatcher → department journey through the public HTTP API.

    .venv/bin/python bench/journey.py --mode one  -n 300 -c 8    # fzt run-all, SQLite + memory bus
    .venv/bin/python bench/journey.py --mode four -n 300 -c 8    # 8 processes, PostgreSQL + RabbitMQ
    .venv/bin/python bench/journey.py --mode four --rate 50 --rate-seconds 10   # (the defaults)

In four mode the *bare floor* runs first (bench/bare.py): the same N cases' database commits
and confirmed publishes with plain psycopg and kombu, no application code, on the run's own
databases and broker; the report gives application / bare. A warm-up (``--warmup`` cases,
default 16) goes through first, unmeasured. Phase 1 (submit → queue): C threads submit N
requests (spread over the seven districts and eleven topics, so the DMN suggests every
department); one poller thread lists the dispatcher queue of all districts as ``admin`` every
``--poll`` seconds, asking only for cases made since the last ones it saw, and records when
each case is first seen. Phase 2 (assign and accept):
C threads assign every case to its suggested department (admin's token), then accept it as
that department's handler (``bm_<department>``'s token); the poller watches the departments'
办理中 (resolve) lists. Phase 3 checks, coarsely, how long until every citizen sees
"assigned" (dispatch → bus → intake). The offered-load phase then submits ``--rate`` cases/s
for ``--rate-seconds`` in an open loop (a late response does not delay the next submit) and
reports submit → in queue at that rate. Last, the peak resident memory (VmHWM) of every
cluster process.

To show where the time goes it also prints, per phase: the bus hop from the services' own
timestamps (outbox row created → published → consumer's inbox mark → work item), the CPU
seconds of every cluster process (and, in four mode, of PostgreSQL and RabbitMQ, machine
wide), and with ``--py-spy DIR`` a py-spy profile of the busy processes (``pip install
py-spy`` into the venv; it is not a project dependency, and sampling costs CPU).

Four mode creates its own PostgreSQL databases (``fzt_bench_<random>_<service>``, as user
postgres on 127.0.0.1) and RabbitMQ prefix (``fzt_bench_<random>``) and removes them at the
end, as it removes the cluster's var directory (``--keep`` keeps it, e.g. for the logs).
The dispatch list API returns at most 200 cases, oldest first; the poller pages on with
``since`` after a full page.
"""
from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.config import SERVICES  # noqa: E402
from services.common.reference import DISTRICTS  # noqa: E402
from tests.support.cluster import FourProcessCluster, OneProcessCluster  # noqa: E402
from tests.support.http import HttpClient, url_with  # noqa: E402

PG = dict(host=os.environ.get("FZT_BENCH_PG_HOST", "127.0.0.1"), port=5432,
          user=os.environ.get("FZT_BENCH_PG_USER", "postgres"))
AMQP_URL = os.environ.get("FZT_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
API_LIST_LIMIT = 200

# (description, category, department the DMN should suggest)
TOPICS = [
    ("楼上卫生间漏水，我家天花板渗水严重", "", "zhujian"),
    ("小区门口长期占道经营，行人无法通行", "", "chengguan"),
    ("附近工地夜间施工噪音扰民", "", "huanbao"),
    ("小区已经停水两天，没有任何通知", "", "shuiwu"),
    ("公司拖欠工资三个月，多次讨要未果", "", "renshe"),
    ("公交线路调整后上下班出行很不方便", "traffic", "jiaotong"),
    ("超市出售过期食品，要求查处", "market", "shichang"),
    ("小区附近夜间经常有人聚集打架", "public_security", "gongan"),
    ("学校要求家长购买指定教辅资料", "education", "jiaoyu"),
    ("社区卫生服务中心排队时间太长", "health", "weijian"),
    ("申请低保已经两个月没有结果", "civil_affairs", "minzheng"),
]


# -- measurement helpers ----------------------------------------------------------------

def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": model,
            "cores": os.cpu_count(), "ram": ram, "python": platform.python_version(),
            "os": platform.platform()}


def server_versions() -> dict:
    """PostgreSQL's and RabbitMQ's versions, asked from the servers themselves."""
    found = {"postgresql": "PostgreSQL unreachable", "rabbitmq": "RabbitMQ unreachable"}
    try:
        import psycopg
        with psycopg.connect(dbname="postgres", connect_timeout=3, **PG) as conn:
            found["postgresql"] = conn.execute("SHOW server_version").fetchone()[0].split()[0]
            found["postgresql"] = f"PostgreSQL {found['postgresql']}"
    except Exception:
        pass
    try:
        from kombu import Connection
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.connect()
            props = conn.connection.server_properties
            found["rabbitmq"] = f"RabbitMQ {props.get('version', '?')} ({props.get('platform', '?')})"
    except Exception:
        pass
    return found


def percentiles(values) -> dict:
    values = sorted(values)
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": values[-1]}


def fmt_ms(stats: dict) -> str:
    return "  ".join(f"{k} {v * 1000:7.1f} ms" for k, v in stats.items()) if stats else "n/a"


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class CpuMeter:
    """CPU seconds used by each cluster process, this script, and (machine-wide) the servers."""

    def __init__(self, cluster, mode):
        self.cluster, self.mode = cluster, mode

    def sample(self) -> dict:
        usage = {name: cpu_seconds(p.pid) for name, p in self.cluster.processes.items()}
        usage["bench client (this script)"] = sum(os.times()[:2])
        if self.mode == "four":
            usage["postgres (all backends)"] = sum(cpu_seconds(p) for p in pids_named("postgres"))
            usage["rabbitmq (beam.smp)"] = sum(cpu_seconds(p) for p in pids_named("beam.smp"))
        return usage

    @staticmethod
    def diff(before, after) -> dict:
        return {k: after[k] - before.get(k, 0.0) for k in after}


class Profiler:
    """Optional: ``py-spy record --gil`` (samples only the thread holding the GIL, i.e. Python
    CPU time) on the busy cluster processes for one phase; collapsed stacks go to ``out_dir``.
    The samplers themselves take CPU from the two cores: profile runs' figures are not
    comparable with plain runs."""

    BUSY = ("run-all", "intake-web", "intake-worker", "dispatch-web", "dispatch-worker")

    PACKAGES = ("SpiffWorkflow", "sqlalchemy", "psycopg", "sqlite3", "kombu", "amqp", "flask",
                "werkzeug", "jinja2", "waitress", "marshmallow", "itsdangerous", "lxml", "json",
                "flask_login", "flask_wtf")
    FUNCTIONS = {"runtime.load_state": "load_state (services/common/workflow/serializer.py",
                 "runtime.dump_state": "dump_state (services/common/workflow/serializer.py",
                 "runtime.do_engine_steps": "do_engine_steps (SpiffWorkflow/",
                 "auth: find_staff (token→user)": "find_staff (services/common/web/auth.py",
                 "clock offset re-read": "_read_clock_offset (",
                 "outbox relay loop": "_relay_loop (services/common/worker.py",
                 "timer sweep loop": "_sweep_loop (services/common/worker.py",
                 "commit": "UnitOfWork.commit ("}

    def __init__(self, cluster, out_dir):
        self.cluster, self.out_dir = cluster, Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.running = {}

    def start(self, phase):
        self.phase = phase
        for name, process in self.cluster.processes.items():
            if name not in self.BUSY:
                continue
            output = self.out_dir / f"{phase}-{name}.txt"
            self.running[name] = (output, subprocess.Popen(
                [self.exe, "record", "--pid", str(process.pid), "--rate", "50", "--format", "raw",
                 "--gil", "--nonblocking", "--output", str(output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> dict:
        for _, recorder in self.running.values():
            recorder.send_signal(signal.SIGINT)
        summary = {}
        for name, (output, recorder) in self.running.items():
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
            if output.exists():
                summary[name] = self.summarize(output)
        self.running = {}
        return summary

    @classmethod
    def package_of(cls, path: str) -> str | None:
        if path.startswith("services/"):
            return "fzt (services/)"
        for package in cls.PACKAGES:
            if path.startswith(f"{package}/") or f"/{package}/" in path or path.startswith(f"{package}.py"):
                return package
        return None

    @classmethod
    def summarize(cls, path: Path) -> dict:
        """Samples; each sample's package (the innermost frame in a known package, so shares
        add up to 100 %); inclusive shares of a few functions of ours; top leaf frames."""
        total, packages, functions, leaves = 0, {}, {}, {}
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            count = int(count)
            total += count
            frames = stack.split(";")
            owner = next((p for p in (cls.package_of(f.rpartition(" (")[2]) for f in reversed(frames))
                          if p), "other (stdlib)")
            packages[owner] = packages.get(owner, 0) + count
            for label, marker in cls.FUNCTIONS.items():
                if marker in stack:
                    functions[label] = functions.get(label, 0) + count
            leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
        if not total:
            return {"samples": 0, "packages": {}, "functions": {}, "top": []}
        return {"samples": total, "packages": {k: v / total for k, v in packages.items()},
                "functions": {k: v / total for k, v in functions.items()},
                "top": [(f, n / total) for f, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:5]]}


def print_profile(summary: dict):
    if not summary:
        return
    print("  py-spy --gil (50 Hz, samples holding the GIL):")
    for name, data in sorted(summary.items(), key=lambda kv: -kv[1]["samples"]):
        if data["samples"] < 20:
            continue
        def shares(d):
            return ", ".join(f"{k} {v:.0%}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v >= 0.03)
        print(f"    {name} ({data['samples']} samples)")
        print(f"      by package (innermost known frame): {shares(data['packages'])}")
        print(f"      inside (inclusive): {shares(data['functions'])}")


# -- infrastructure for four mode -----------------------------------------------------

@contextmanager
def pg_databases(run_id: str):
    import psycopg
    admin = psycopg.connect(dbname="postgres", autocommit=True, **PG)
    created = []
    try:
        urls = {}
        for service in SERVICES:
            name = f"{run_id}_{service}"
            admin.execute(f'CREATE DATABASE "{name}"')
            created.append(name)
            urls[service] = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
        yield urls
    finally:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def rabbitmq_prefix(prefix: str):
    from kombu import Connection

    from tests.conftest import delete_topology
    try:
        yield prefix
    finally:
        with Connection(AMQP_URL) as conn:
            delete_topology(conn, prefix)


# -- where the time went: the services' own timestamps ----------------------------------

def bus_hop(cluster_urls, source, target, routing_key, case_nos, work_task=None):
    """Per message from ``source`` to ``target``: outbox created → sent (relay), sent → the
    target's inbox mark (broker + consumer queueing), and, with ``work_task``, the inbox mark →
    the target's work item (applying: engine steps + save). Seconds, from the DB rows."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from services.common.db import make_engine
    from services.common.models import InboxMessage, OutboxMessage, WorkItem

    def rows(url, query):
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                return session.execute(query).all()
        finally:
            engine.dispose()

    sent = rows(cluster_urls[source], select(OutboxMessage.envelope, OutboxMessage.created_at,
                                             OutboxMessage.sent_at)
                .where(OutboxMessage.routing_key == routing_key))
    processed = dict(rows(cluster_urls[target], select(InboxMessage.message_id,
                                                       InboxMessage.processed_at)
                          .where(InboxMessage.routing_key == routing_key)))
    items = dict(rows(cluster_urls[target], select(WorkItem.case_no, WorkItem.created_at)
                      .where(WorkItem.task_name == work_task))) if work_task else {}
    relay, deliver, apply = [], [], []
    for envelope, created_at, sent_at in sent:
        if sent_at is None or envelope["case_no"] not in case_nos:
            continue
        relay.append((sent_at - created_at).total_seconds())
        if envelope["id"] in processed:
            deliver.append((processed[envelope["id"]] - sent_at).total_seconds())
            if envelope["case_no"] in items:
                apply.append((items[envelope["case_no"]] - processed[envelope["id"]]).total_seconds())
    return {"relay": percentiles(relay), "deliver": percentiles(deliver), "apply": percentiles(apply)}


def database_urls(cluster, var_dir):
    if isinstance(cluster, FourProcessCluster):
        return {s: cluster.env[f"FZT_DATABASE_URL_{s.upper()}"] for s in SERVICES}
    return {s: f"sqlite:///{var_dir / (s + '.db')}" for s in SERVICES}


# -- the benchmark ----------------------------------------------------------------------

class Poller(threading.Thread):
    """Lists the ``status`` queue of all districts (as ``admin``) every ``interval`` seconds;
    records when each case is first seen.

    Asks only for what is new, as a client of the API should (``since``: the latest
    ``created_at`` it saw, minus ``OVERLAP`` for items committed a little after they were
    made), so its own cost does not grow with the queue. A full page (``API_LIST_LIMIT``) is
    followed at once by the next, from its last item's ``created_at`` (the list is oldest
    first). One list for all districts, not one per district: seven lists every 20 ms were
    ≈ 13 % of the machine's CPU in the first rounds, load that seven dispatchers refreshing
    their pages never make."""

    # Dispatch commits a work item within ≈ 0.1 s of its created_at (apply p99 < 0.1 s in
    # every run); 3 s returned ≈ 75 cases per call at 25 cases/s, and decoding and encoding
    # them was a fifth of dispatch-web's CPU. A missed case would show as a timeout.
    OVERLAP = timedelta(seconds=1)

    def __init__(self, cluster, token, status, interval):
        super().__init__(daemon=True, name=f"poll-{status}")
        self.http = HttpClient(token=token)
        self.url = url_with(cluster.url("dispatch", "/api/v1/cases"), status=status)
        self.latest: datetime | None = None  # latest created_at seen
        self.interval = interval
        self.seen: dict[str, tuple[float, dict]] = {}
        self.stop = threading.Event()
        self.cycles, self.errors, self.pages = [], 0, 0

    def run(self):
        while not self.stop.is_set():
            started = time.monotonic()
            since = None if self.latest is None else self.latest - self.OVERLAP
            while not self.stop.is_set():
                response = self.http.get(self.url if since is None else url_with(self.url, since=since.isoformat()))
                now = time.monotonic()
                if response.status != 200:
                    self.errors += 1
                    break
                cases = response.json["cases"]
                for case in cases:
                    self.seen.setdefault(case["case_no"], (now, case))
                    made = datetime.fromisoformat(case["created_at"])
                    self.latest = made if self.latest is None else max(made, self.latest)
                if len(cases) < API_LIST_LIMIT:
                    break
                # A full page: read on from its last item (``since`` is exclusive, so from
                # just before it: items made in the same microsecond are not skipped).
                following = datetime.fromisoformat(cases[-1]["created_at"]) - timedelta(microseconds=1)
                if since is not None and following <= since:
                    self.errors += 1  # a page of one timestamp: cannot page on
                    break
                since, self.pages = following, self.pages + 1
            self.cycles.append(time.monotonic() - started)
            self.stop.wait(self.interval)

    def wait_for(self, case_nos, timeout) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c in self.seen for c in case_nos):
                return True
            time.sleep(0.05)
        return False

    def finish(self):
        self.stop.set()
        self.join(10)


def run_pool(concurrency, jobs, work):
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(work, jobs))


def phase_submit(cluster, args, admin_token, meter, profiler=None):
    districts = list(DISTRICTS)
    client = HttpClient()
    poller = Poller(cluster, admin_token, "assign", args.poll)
    poller.start()

    def submit(i):
        description, category, department = TOPICS[i % len(TOPICS)]
        payload = {"district": districts[i % len(districts)], "name": f"压测{i}",
                   "phone": f"138{i:08d}", "description": f"{description}（第{i}号）",
                   "category": category, "channel": "web"}
        wall, started = time.time(), time.monotonic()
        response = client.post(cluster.url("intake", "/api/v1/requests"), json=payload)
        done = time.monotonic()
        if response.status != 201:
            return {"error": f"{response.status} {response.text[:200]}"}
        return {"case_no": response.json["case_no"], "tracking_code": response.json["tracking_code"],
                "started": started, "wall": wall, "done": done, "expected": department}

    if profiler:
        profiler.start("submit")
    cpu_before = meter.sample()
    results = run_pool(args.concurrency, range(args.n), submit)
    ok = [r for r in results if "case_no" in r]
    if not ok:
        poller.finish()
        raise SystemExit(f"every submission failed, e.g. {results[0]['error']}")
    complete = poller.wait_for([r["case_no"] for r in ok], args.timeout)
    poller.finish()
    cpu = CpuMeter.diff(cpu_before, meter.sample())
    profile = profiler.stop() if profiler else {}
    seen = [r for r in ok if r["case_no"] in poller.seen]
    for r in seen:
        r["seen"], case = poller.seen[r["case_no"]]
        r["suggested"] = case.get("suggested_department")
    t0 = min(r["started"] for r in ok)
    return {
        "submitted": len(ok), "errors": [r["error"] for r in results if "error" in r],
        "complete": complete, "seen": len(seen),
        "submit_rate": len(ok) / (max(r["done"] for r in ok) - t0),
        "through_rate": len(seen) / (max(r["seen"] for r in seen) - t0) if seen else 0.0,
        "http": percentiles([r["done"] - r["started"] for r in ok]),
        "async": percentiles([r["seen"] - r["done"] for r in seen]),
        "end_to_end": percentiles([r["seen"] - r["started"] for r in seen]),
        "wrong_suggestion": sum(r["suggested"] != r["expected"] for r in seen),
        "poll_cycle": statistics.mean(poller.cycles) if poller.cycles else 0.0,
        "poll_errors": poller.errors, "poll_pages": poller.pages,
        "cpu": cpu, "cases": seen, "profile": profile,
    }


def phase_assign(cluster, args, admin_token, meter, cases, handler_tokens, profiler=None):
    """Each case: the dispatcher (admin) assigns it to the suggested department, then that
    department's handler (``bm_<department>``, its own token) accepts it, both through the API."""
    client = HttpClient(token=admin_token)
    handlers = {d: HttpClient(token=t) for d, t in handler_tokens.items()}
    poller = Poller(cluster, admin_token, "resolve", args.poll)
    poller.start()

    def assign(case):
        department = case["suggested"] or "zhujian"
        started = time.monotonic()
        response = client.post(cluster.url("dispatch", f"/api/v1/cases/{case['case_no']}/assign"),
                               json={"department": department})
        done = time.monotonic()
        if response.status != 200:
            return {"error": f"{case['case_no']}: assign {response.status} {response.text[:200]}"}
        response = handlers[department].post(cluster.url("dispatch", f"/api/v1/cases/{case['case_no']}/accept"),
                                             json={})
        accepted = time.monotonic()
        if response.status != 200:
            return {"error": f"{case['case_no']}: accept {response.status} {response.text[:200]}"}
        return {**case, "assign_started": started, "assign_done": done, "accept_done": accepted}

    if profiler:
        profiler.start("assign")
    cpu_before = meter.sample()
    results = run_pool(args.concurrency, cases, assign)
    ok = [r for r in results if "case_no" in r]
    if not ok:
        poller.finish()
        raise SystemExit(f"every assignment failed, e.g. {results[0]['error']}")
    complete = poller.wait_for([r["case_no"] for r in ok], args.timeout)
    poller.finish()
    assigns_done = time.monotonic()

    # Phase 3 (coarse): every citizen sees "assigned" once intake has consumed dispatch's message.
    intake = HttpClient()
    pending = {r["case_no"]: r["tracking_code"] for r in ok}
    deadline = time.monotonic() + args.timeout

    def assigned(item):
        case_no, code = item
        response = intake.get(url_with(cluster.url("intake", f"/api/v1/requests/{case_no}"),
                                       tracking_code=code))
        return case_no if response.status == 200 and response.json["status"] == "assigned" else None

    while pending and time.monotonic() < deadline:
        for case_no in run_pool(args.concurrency, list(pending.items()), assigned):
            pending.pop(case_no, None)
        if pending:
            time.sleep(0.1)
    citizens_done = time.monotonic()
    cpu = CpuMeter.diff(cpu_before, meter.sample())
    profile = profiler.stop() if profiler else {}

    seen = [r for r in ok if r["case_no"] in poller.seen]
    for r in seen:
        r["accept_seen"] = poller.seen[r["case_no"]][0]
    t0 = min(r["assign_started"] for r in ok)
    return {
        "assigned": len(ok), "errors": [r["error"] for r in results if "error" in r],
        "complete": complete, "seen": len(seen),
        "assign_rate": len(ok) / (max(r["accept_done"] for r in ok) - t0),
        "through_rate": len(seen) / (max(r["accept_seen"] for r in seen) - t0) if seen else 0.0,
        "http": percentiles([r["assign_done"] - r["assign_started"] for r in ok]),
        "accept_http": percentiles([r["accept_done"] - r["assign_done"] for r in ok]),
        "accepted": percentiles([r["accept_done"] - r["assign_started"] for r in ok]),
        "end_to_end": percentiles([r["accept_seen"] - r["assign_started"] for r in seen]),
        "citizens_pending": len(pending),
        "citizens_after_last_assign": citizens_done - max(r["assign_done"] for r in ok),
        "citizens_total": citizens_done - t0, "lists_done": assigns_done - t0,
        "poll_cycle": statistics.mean(poller.cycles) if poller.cycles else 0.0,
        "poll_errors": poller.errors, "poll_pages": poller.pages, "cpu": cpu,
        "profile": profile,
    }


def queued_at(urls, case_nos) -> dict:
    """When dispatch created each case's 交办 work item (the services' own clock, wall time;
    the commit that makes it visible follows within milliseconds). No poller resolution."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from services.common.db import make_engine
    from services.common.models import WorkItem
    engine = make_engine(urls["dispatch"])
    try:
        with Session(engine) as session:
            rows = session.execute(select(WorkItem.case_no, WorkItem.created_at)
                                   .where(WorkItem.task_name == "assign")).all()
    finally:
        engine.dispose()
    return {c: t.timestamp() for c, t in rows if c in case_nos}


def phase_offered(cluster, args, admin_token, urls):
    """Open loop: submit at ``--rate`` cases/s for ``--rate-seconds`` whatever the responses
    take (each on its own thread), so queueing shows as latency, not as a slower client."""
    client = HttpClient()
    poller = Poller(cluster, admin_token, "assign", args.poll if args.rate_poll is None else args.rate_poll)
    poller.start()
    districts = list(DISTRICTS)
    count = int(args.rate * args.rate_seconds)
    results = []

    def submit(i, started, wall):
        description, category, _ = TOPICS[i % len(TOPICS)]
        response = client.post(cluster.url("intake", "/api/v1/requests"), json={
            "district": districts[i % len(districts)], "name": f"定速{i}", "phone": f"139{i:08d}",
            "description": f"{description}（定速第{i}号）", "category": category, "channel": "web"})
        done = time.monotonic()
        results.append({"case_no": response.json["case_no"], "started": started, "wall": wall, "done": done}
                       if response.status == 201 else {"error": response.status})

    t0 = time.monotonic()
    with ThreadPoolExecutor(max(32, int(args.rate))) as pool:
        for i in range(count):
            due = t0 + i / args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            pool.submit(submit, i, max(due, now), time.time() - max(0.0, now - due))
    sent_for = time.monotonic() - t0
    ok = [r for r in results if "case_no" in r]
    poller.wait_for([r["case_no"] for r in ok], args.timeout)
    poller.finish()
    seen = [r for r in ok if r["case_no"] in poller.seen]
    created = queued_at(urls, {r["case_no"] for r in ok})
    return {"offered": args.rate, "count": count, "sent_for": sent_for, "errors": len(results) - len(ok),
            "own_clock": percentiles([created[r["case_no"]] - r["wall"] for r in ok if r["case_no"] in created]),
            "seen": len(seen), "http": percentiles([r["done"] - r["started"] for r in ok]),
            "end_to_end": percentiles([poller.seen[r["case_no"]][0] - r["started"] for r in seen]),
            "poll_cycle": statistics.mean(poller.cycles) if poller.cycles else 0.0}


def peak_rss(cluster) -> dict:
    """VmHWM (the kernel's high-water mark of resident memory) of every cluster process, MiB."""
    found = {}
    for name, process in cluster.processes.items():
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith(("VmHWM:", "VmRSS:")):
                    found.setdefault(name, {})[line[:5]] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return found


def print_cpu(cpu: dict, cases: int):
    total = sum(cpu.values())
    print(f"  CPU seconds by process (total {total:.1f} s, {total / max(cases, 1) * 1000:.1f} ms per case):")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<28} {seconds:7.2f} s  {seconds / max(total, 1e-9):6.1%}")


def print_hop(title, hop):
    print(f"  {title}, from the services' own timestamps:")
    print(f"    outbox row → published (relay):       {fmt_ms(hop['relay'])}")
    print(f"    published → consumer's inbox mark:    {fmt_ms(hop['deliver'])}")
    if hop["apply"]:
        print(f"    inbox mark → work item (apply):       {fmt_ms(hop['apply'])}")


def report(args, p1, p2):
    print("\nPhase 1: submit (POST /intake/api/v1/requests) → visible in the dispatcher queue")
    print(f"  submitted {p1['submitted']}/{args.n} (errors {len(p1['errors'])}), "
          f"seen in queue {p1['seen']}{'' if p1['complete'] else ' (TIMED OUT)'}")
    for error in p1["errors"][:5]:
        print(f"    error: {error}")
    print(f"  throughput: submitted {p1['submit_rate']:.1f} cases/s, "
          f"through to queue {p1['through_rate']:.1f} cases/s")
    print(f"  submit HTTP latency:          {fmt_ms(p1['http'])}")
    print(f"  201 response → in queue:      {fmt_ms(p1['async'])}")
    print(f"  submit sent → in queue:       {fmt_ms(p1['end_to_end'])}")
    print(f"  submit sent → work item made: {fmt_ms(p1['own_clock'])}  (dispatch's own timestamp, no poller)")
    print(f"  DMN suggestion differs from the expected department: {p1['wrong_suggestion']}")
    print(f"  poller: mean cycle {p1['poll_cycle'] * 1000:.1f} ms (resolution), errors {p1['poll_errors']}, extra pages {p1['poll_pages']}")
    print_hop("intake.case_submitted, intake → dispatch", p1["hop"])
    print_cpu(p1["cpu"], p1["submitted"])
    print_profile(p1["profile"])
    if p2 is None:
        return
    print("\nPhase 2: assign (POST …/cases/<no>/assign, dispatcher) then accept (POST …/accept, the "
          "department's handler) → in the department's 办理中 list")
    print(f"  assigned and accepted {p2['assigned']} (errors {len(p2['errors'])}), seen in resolve lists "
          f"{p2['seen']}{'' if p2['complete'] else ' (TIMED OUT)'}")
    for error in p2["errors"][:5]:
        print(f"    error: {error}")
    print(f"  throughput: assigned+accepted {p2['assign_rate']:.1f} cases/s, "
          f"through to resolve list {p2['through_rate']:.1f} cases/s")
    print(f"  assign HTTP latency:          {fmt_ms(p2['http'])}")
    print(f"  accept HTTP latency:          {fmt_ms(p2['accept_http'])}")
    print(f"  assign sent → accepted:       {fmt_ms(p2['accepted'])}")
    print(f"  assign sent → in resolve list: {fmt_ms(p2['end_to_end'])}")
    print(f"  poller: mean cycle {p2['poll_cycle'] * 1000:.1f} ms, errors {p2['poll_errors']}, "
          f"extra pages {p2['poll_pages']}")
    print("Phase 3 (coarse): the citizen sees \"assigned\" (dispatch → bus → intake)")
    print(f"  all {p2['assigned'] - p2['citizens_pending']}/{p2['assigned']} citizens see it "
          f"{p2['citizens_after_last_assign']:.2f} s after the last assign returned "
          f"({p2['citizens_total']:.2f} s after the first assign was sent)")
    print_hop("dispatch.case_assigned, dispatch → intake", p2["hop"])
    print_cpu(p2["cpu"], p2["assigned"])
    print_profile(p2["profile"])


def report_extra(args, p1, bare, offered, rss):
    if bare is not None:
        print("\nBare floor (same run, before the cluster started; bench/bare.py): the case's database commits")
        print("and confirmed publish with plain psycopg + kombu, no application code")
        print(f"  {bare['cases']}/{args.n} cases with {args.concurrency} clients: {bare['rate']:.1f} cases/s; "
              f"submit → committed in dispatch {fmt_ms(percentiles(bare['latencies']))}")
        print(f"  application / bare (through to queue): {p1['through_rate']:.1f} / {bare['rate']:.1f} = "
              f"{p1['through_rate'] / max(bare['rate'], 1e-9):.0%}  (goal ≥ 50 %)")
    if offered is not None:
        print(f"\nOffered load: {offered['offered']:.0f} cases/s for {args.rate_seconds:.0f} s (open loop, "
              f"{offered['count']} cases, sent in {offered['sent_for']:.1f} s, errors {offered['errors']}, "
              f"seen {offered['seen']})")
        print(f"  submit HTTP latency:          {fmt_ms(offered['http'])}")
        print(f"  submit sent → in queue:       {fmt_ms(offered['end_to_end'])}  (goal p95 < 200 ms)")
        print(f"  submit sent → work item made: {fmt_ms(offered['own_clock'])}  (dispatch's own timestamp)")
        pause = args.poll if args.rate_poll is None else args.rate_poll
        print(f"  poller: mean cycle {offered['poll_cycle'] * 1000:.1f} ms + pause {pause * 1000:.0f} ms "
              "(the resolution of \"in queue\"; the work item's own timestamp has none)")
    if rss:
        print("\nMemory per process (MiB): peak resident (VmHWM) / resident at the end (VmRSS)")
        for name, values in sorted(rss.items()):
            print(f"  {name:<22} {values.get('VmHWM', 0):7.1f} / {values.get('VmRSS', 0):7.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["one", "four"], default="one")
    parser.add_argument("-n", type=int, default=300, help="requests to submit (default 300)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--poll", type=float, default=0.02, help="poller pause between cycles, s")
    parser.add_argument("--timeout", type=float, default=120.0, help="per phase, s")
    parser.add_argument("--warmup", type=int, default=16, help="unmeasured cases first (default 16)")
    parser.add_argument("--no-assign", action="store_true", help="phase 1 only")
    parser.add_argument("--rate", type=float, default=50.0, help="offered load phase: cases/s (0: skip)")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="offered load phase: duration, s")
    parser.add_argument("--rate-poll", type=float, help="offered load phase: poller pause, s (default --poll); "
                        "the poller is load too: a list call per cycle")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare floor (four mode)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's var dir (logs)")
    parser.add_argument("--py-spy", metavar="DIR", help="profile every cluster process with py-spy "
                        "(pip install py-spy; not a project dependency), collapsed stacks to DIR")
    args = parser.parse_args(argv)

    m = machine()
    versions = server_versions()
    print(f"date: {m['date']}\nmachine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['os']}\n"
          f"python: {m['python']}; {versions['postgresql']}; {versions['rabbitmq']}\n"
          f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    run_id = f"fzt_bench_{secrets.token_hex(4)}"
    bare = None
    var_dir = Path(tempfile.mkdtemp(prefix=f"{run_id}_"))
    try:
        with ExitStack() as stack:
            if args.mode == "one":
                cluster = OneProcessCluster(var_dir)
            else:
                db_urls = stack.enter_context(pg_databases(run_id))
                prefix = stack.enter_context(rabbitmq_prefix(run_id))
                if not args.no_bare:
                    from bench import bare as bare_floor
                    print(f"\n== bare floor: {args.n} cases, concurrency {args.concurrency} ==")
                    bare = bare_floor.run(PG, {s: f"{run_id}_{s}" for s in ("intake", "dispatch")}, AMQP_URL,
                                          prefix, args.n, args.concurrency, args.timeout)
                    print(f"{bare['rate']:.1f} cases/s")
                cluster = FourProcessCluster(var_dir, db_urls, AMQP_URL, prefix)
            started = time.monotonic()
            stack.enter_context(cluster)
            print(f"\n== journey benchmark, mode {args.mode}: N={args.n} concurrency={args.concurrency} "
                  f"poll={args.poll * 1000:.0f} ms ==")
            print(f"cluster start: {time.monotonic() - started:.1f} s")
            admin_token = cluster.token("dispatch", "admin")
            handler_tokens = {d: cluster.token("dispatch", f"bm_{d}") for d in {t[2] for t in TOPICS} | {"zhujian"}}
            meter = CpuMeter(cluster, args.mode)
            profiler = Profiler(cluster, args.py_spy) if args.py_spy else None
            urls = database_urls(cluster, var_dir)
            if args.warmup:  # connection pools, parsed diagrams, first-request imports
                warm = argparse.Namespace(**{**vars(args), "n": args.warmup})
                warmed = phase_submit(cluster, warm, admin_token, meter)
                phase_assign(cluster, warm, admin_token, meter, warmed["cases"], handler_tokens)
                print(f"warm-up: {args.warmup} cases through both phases, slowest submit → queue "
                      f"{warmed['end_to_end'].get('max', 0) * 1000:.0f} ms")
            p1 = phase_submit(cluster, args, admin_token, meter, profiler)
            measured = {c["case_no"] for c in p1["cases"]}
            created = queued_at(urls, measured)
            p1["own_clock"] = percentiles([created[c["case_no"]] - c["wall"] for c in p1["cases"]
                                           if c["case_no"] in created])
            p1["hop"] = bus_hop(urls, "intake", "dispatch", "intake.case_submitted", measured, "assign")
            p2 = None
            if not args.no_assign and p1["cases"]:
                p2 = phase_assign(cluster, args, admin_token, meter, p1["cases"], handler_tokens, profiler)
                p2["hop"] = bus_hop(urls, "dispatch", "intake", "dispatch.case_assigned", measured)
            offered = phase_offered(cluster, args, admin_token, urls) if args.rate > 0 else None
            rss = peak_rss(cluster)
            report(args, p1, p2)
            report_extra(args, p1, bare, offered, rss)
    finally:
        if args.keep:
            print(f"\nkept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
