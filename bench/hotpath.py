"""Where the time goes on the hot path, in one process, with pyinstrument (the ``bench`` extra).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/hotpath.py -n 200            # summary per phase
    .venv/bin/python bench/hotpath.py -n 200 --tree     # and pyinstrument's call tree

The services' own code on PostgreSQL (databases ``fzt_hot_<random>_<service>``, dropped at the
end), without HTTP servers and without RabbitMQ, so the profile shows the application's cost
and nothing else:

1. **submit**: ``POST /api/v1/requests`` through intake's Flask app (test client);
2. **apply**: each outbox message of intake handed to dispatch's ``apply_message`` (what its
   consumer does per delivery: inbox, engine steps, DMN, save, work item), marked sent;
3. **list**: ``GET /api/v1/cases?status=assign&district=…`` with a bearer token (the poller's
   call, once per case);
4. **assign + accept**: ``POST …/assign`` (admin's token), ``POST …/accept`` (the department's).
5. **apply in intake**: dispatch's outbox (``case_assigned``, ``case_accepted``) handed to
   intake's ``apply_message`` (what intake's consumer does in the journey's phase 2).

Per phase: ms of wall time and of this process's CPU per case, and where it went: self time per
package (the innermost frame's package, so shares add up; psycopg's share is mostly waiting for
PostgreSQL) and the inclusive share of a few functions of ours. Times vary with the machine;
the counts per case that it also prints do not: SQL statements sent, connections taken from
the pools, the ``SELECT 1`` pings among them (services/common/db.py pings a connection that sat
idle before handing it out) and ORM flushes that wrote something (each costs Python time of
its own). At the end: the stored workflow state's mean size and task count per service.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.journey import PG, TOPICS, machine, server_versions  # noqa: E402
from services.common.config import from_env  # noqa: E402
from tests.support.cluster import UNTHROTTLED  # noqa: E402
from services.common.demo import load_demo_accounts  # noqa: E402
from services.common.models import OutboxMessage  # noqa: E402
from services.common.platform import load_service, prepare  # noqa: E402
from services.common.reference import DISTRICTS  # noqa: E402
from services.common.web.app import create_app  # noqa: E402
from services.common.web.auth import make_token  # noqa: E402

PACKAGES = ("sqlalchemy", "SpiffWorkflow", "psycopg", "werkzeug", "flask", "jinja2", "marshmallow",
            "itsdangerous", "flask_login", "flask_wtf", "lxml", "json", "kombu", "logging")
FUNCTIONS = {"specs.latest/by_hash": ("specs.py", ("latest", "by_hash")),
             "auth: token → user": ("auth.py", ("_load_from_bearer", "find_staff")),
             "load_state (deserialize)": ("serializer.py", ("load_state",)),
             "dump_state (serialize)": ("serializer.py", ("dump_state",)),
             "engine steps": ("workflow.py", ("do_engine_steps",)),
             "UnitOfWork.commit": ("db.py", ("commit",)),
             "work items refresh": ("runtime.py", ("_refresh_work_items",)),
             "next_case_no": ("requests.py", ("next_case_no",)),
             "audit.record": ("audit.py", ("record",)),
             "rate-limit storage": ("ratelimits.py", ("*",)),
             "duplicates": ("duplicates.py", ("register_case",)),
             "metrics/observability": ("observability.py", ("*",))}


def package_of(path: str) -> str:
    if "/services/" in path:
        return "fzt (services/)"
    for package in PACKAGES:
        if f"/{package}/" in path or path.endswith(f"/{package}.py"):
            return package
    return "other (stdlib, …)"


def summarize(session) -> dict:
    """Self time per package and inclusive time of FUNCTIONS, from pyinstrument's frame tree."""
    packages, functions = {}, {}

    def walk(frame, active, parent_path=""):
        own = frame.time - sum(child.time for child in frame.children)
        path = frame.file_path or parent_path  # pyinstrument's "[self]" frames have no file
        package = package_of(path)
        packages[package] = packages.get(package, 0) + own
        mine = set(active)
        for label, (file_name, names) in FUNCTIONS.items():
            if (frame.file_path or "").endswith(file_name) and ("*" in names or frame.function in names):
                mine.add(label)
        for label in mine - set(active):
            functions[label] = functions.get(label, 0) + frame.time
        for child in frame.children:
            walk(child, mine, path)

    root = session.root_frame()
    if root is not None:
        walk(root, set())
    return {"total": session.duration, "packages": packages, "functions": functions}


class Counts:
    """SQL statements, pool checkouts, pre-ping round trips and ORM flushes (that wrote
    something) on the given engines."""

    def __init__(self, engines):
        self.statements = self.checkouts = self.pings = self.flushes = 0
        event.listen(Session, "after_flush", self._flush)
        for engine in engines:
            event.listen(engine, "before_cursor_execute", self._statement)
            event.listen(engine.pool, "checkout", self._checkout)
            dialect = engine.dialect
            do_ping = dialect.do_ping

            def counted_ping(dbapi_connection, do_ping=do_ping):
                self.pings += 1
                return do_ping(dbapi_connection)
            dialect.do_ping = counted_ping

    def _statement(self, *_args):
        self.statements += 1

    def _checkout(self, *_args):
        self.checkouts += 1

    def _flush(self, *_args):
        self.flushes += 1

    def snapshot(self):
        return self.statements, self.checkouts, self.pings, self.flushes


def print_summary(title, cases, elapsed, cpu, counts, summary):
    total = max(summary["total"], 1e-9)
    statements, checkouts, pings, flushes = (n / cases for n in counts)
    print(f"\n{title}: {elapsed / cases * 1000:.2f} ms per case, CPU {cpu / cases * 1000:.2f} ms ({cases} cases)")
    print(f"  per case: {statements:.1f} SQL statements, {checkouts:.1f} connection checkouts, {pings:.1f} pings, "
          f"{flushes:.1f} ORM flushes")
    shares = sorted(summary["packages"].items(), key=lambda kv: -kv[1])
    print("  self time by package: " + ", ".join(f"{k} {v / total:.0%}" for k, v in shares if v / total >= 0.02))
    inner = sorted(summary["functions"].items(), key=lambda kv: -kv[1])
    print("  inside (inclusive):   " + ", ".join(f"{k} {v / total:.0%}" for k, v in inner if v / total >= 0.01))


def print_state_sizes(service):
    """What every load and save of an instance carries: its stored workflow state."""
    with service.engine.connect() as connection:
        sizes = connection.execute(text(
            "SELECT length(state::text), (SELECT count(*) FROM json_object_keys(state::json -> 'tasks'))"
            " FROM workflow_instances")).all()
    if sizes:
        mean = sum(size for size, _ in sizes) / len(sizes)
        tasks = [n for _, n in sizes if n is not None]
        print(f"\n{service.name}: stored workflow state {mean / 1024:.1f} KiB per instance on average "
              f"({len(sizes)} instances, largest {max(size for size, _ in sizes) / 1024:.1f} KiB; "
              f"tasks per state {min(tasks, default=0)}–{max(tasks, default=0)})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="cases (default 200)")
    parser.add_argument("--tree", action="store_true", help="print pyinstrument's call tree per phase")
    args = parser.parse_args(argv)
    from pyinstrument import Profiler
    import psycopg

    m, versions = machine(), server_versions()
    print(f"date: {m['date']}\nmachine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; {versions['postgresql']}")
    run_id = f"fzt_hot_{secrets.token_hex(4)}"
    admin = psycopg.connect(dbname="postgres", autocommit=True, **PG)
    names = {s: f"{run_id}_{s}" for s in ("intake", "dispatch")}
    for name in names.values():
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # Limits as the benchmark cluster has them: counted (a cost of every submit), never hit.
        settings = from_env(dict(UNTHROTTLED), env="test", var_dir=Path(tempfile.mkdtemp(prefix=run_id)),
                            database_urls={s: f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{n}"
                                           for s, n in names.items()},
                            broker_url="memory://localhost//", bus_prefix=run_id)
        intake, dispatch = load_service("intake", settings), load_service("dispatch", settings)
        for service in (intake, dispatch):
            prepare(service)
            load_demo_accounts(service)
        intake_client = create_app(intake).test_client()
        dispatch_client = create_app(dispatch).test_client()

        def bearer(user):
            return {"Authorization": f"Bearer {make_token(settings.secret_key, user)}"}

        districts = list(DISTRICTS)

        def submit(i):
            description, category, _ = TOPICS[i % len(TOPICS)]
            response = intake_client.post("/api/v1/requests", json={
                "district": districts[i % len(districts)], "name": f"剖析{i}", "phone": f"138{i:08d}",
                "description": f"{description}（第{i}号）", "category": category, "channel": "web"})
            assert response.status_code == 201, response.get_data(as_text=True)
            return response.get_json()["case_no"]

        def apply_all(source=intake, target=dispatch):
            with source.uow() as uow:
                rows = uow.session.query(OutboxMessage).filter(OutboxMessage.sent_at.is_(None)) \
                    .order_by(OutboxMessage.id).all()
                envelopes = [row.envelope for row in rows]
                for row in rows:
                    row.sent_at = source.clock.now()
                uow.commit()
            for envelope in envelopes:
                target.apply_message(envelope)
            return len(envelopes)

        tokens = {"admin": bearer("admin"), **{d: bearer(f"bm_{d}") for d in {t[2] for t in TOPICS}}}
        suggestions = {}

        def list_queue(i):
            response = dispatch_client.get(f"/api/v1/cases?status=assign&district={districts[i % len(districts)]}",
                                           headers=tokens["admin"])
            assert response.status_code == 200
            for case in response.get_json()["cases"]:
                suggestions[case["case_no"]] = case.get("suggested_department") or "zhujian"

        def assign_accept(case_no):
            department = suggestions[case_no]
            response = dispatch_client.post(f"/api/v1/cases/{case_no}/assign", json={"department": department},
                                            headers=tokens["admin"])
            assert response.status_code == 200, response.get_data(as_text=True)
            response = dispatch_client.post(f"/api/v1/cases/{case_no}/accept", json={},
                                            headers=tokens.get(department) or bearer(f"bm_{department}"))
            assert response.status_code == 200, response.get_data(as_text=True)

        for i in range(10):  # warm-up: imports, pools, parsed diagrams
            submit(10_000 + i)
        apply_all()

        counts = Counts([intake.engine, dispatch.engine])

        def phase(title, work, items, cases=None):
            profiler = Profiler(interval=0.0005)
            before = counts.snapshot()
            started, cpu_started = time.perf_counter(), time.process_time()
            profiler.start()
            results = [work(i) for i in items]
            profiler.stop()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            after = counts.snapshot()
            print_summary(title, cases or len(items), elapsed, cpu, [a - b for a, b in zip(after, before)],
                          summarize(profiler.last_session))
            if args.tree:
                print(profiler.output_text(unicode=True, color=False, show_all=False))
            return results

        case_nos = phase("submit (intake API: validate, case number, start intake.bpmn, outbox)", submit,
                         list(range(args.n)))
        phase("apply in dispatch (inbox, start dispatch.bpmn, DMN, work item)", lambda _: apply_all(), [None],
              cases=args.n)
        phase("list queue (bearer token, 200 items)", list_queue, list(range(args.n)))
        phase("assign + accept (two API calls, two tokens)", assign_accept, case_nos)
        phase("apply in intake (dispatch.case_assigned and case_accepted: status, engine steps, notification)",
              lambda _: apply_all(dispatch, intake), [None], cases=args.n)
        for service in (intake, dispatch):
            print_state_sizes(service)
        for service in (intake, dispatch):
            service.engine.dispose()
    finally:
        for name in names.values():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
