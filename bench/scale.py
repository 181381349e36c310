"""Scale benchmark: what staff pages and the timer sweep cost at 10 k and at 1 M open cases.

    .venv/bin/python bench/scale.py --sizes 10000,1000000 --keep     # load once, keep the databases
    .venv/bin/python bench/scale.py --sizes 10000,1000000 --reuse    # measure the kept databases again
    .venv/bin/python bench/scale.py --sizes 10000 --explain          # and EXPLAIN (ANALYZE) every SELECT

For each size it creates the intake, dispatch and supervision databases
``<prefix>_<size>_<service>`` on the local PostgreSQL (user postgres, trust), migrates them
(``alembic upgrade heads``: the indexes under test come with the migrations), deploys the
diagrams, adds the demo accounts and loads the cases with the bulk generator
(bench/bulkgen.py: real template cases, then COPY). ``--keep`` keeps the databases for
``--reuse``, which skips loading (and applies new migrations); without ``--keep`` they are
dropped at the end.

Then, through the real Flask apps (``app.test_client()``, logged in through the login form
like a browser) and the real runtime, it times each of ``PAGES`` ``--repeat`` times after
two unmeasured calls and prints median and p95 per size side by side. ``--explain`` prints
the PostgreSQL plan of every SELECT a page ran and flags sequential scans and sorts of
large inputs.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import event  # noqa: E402

from bench import bulkgen  # noqa: E402
from bench.journey import PG, machine, server_versions  # noqa: E402
from services.common.clock import FrozenClock, SystemClock  # noqa: E402
from services.common.config import from_env  # noqa: E402
from services.common.demo import DEMO_PASSWORD, load_demo_accounts  # noqa: E402
from services.common.platform import load_service, prepare  # noqa: E402
from services.common.web.app import create_app  # noqa: E402

SCALE_SERVICES = ("intake", "dispatch", "supervision")


# -- databases --------------------------------------------------------------------------

def admin_connection():
    import psycopg
    return psycopg.connect(dbname="postgres", autocommit=True, **PG)


def db_name(prefix, size, service):
    return f"{prefix}_{size}_{service}"


def url_of(name):
    return f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"


def existing(admin, name) -> bool:
    return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def settings_for(prefix, size, var_dir):
    return from_env({}, env="test", var_dir=Path(var_dir),
                    database_urls={s: url_of(db_name(prefix, size, s)) for s in SCALE_SERVICES},
                    broker_url="memory://localhost//", bus_prefix=f"{prefix}_{size}")


def services_for(settings, clock=None):
    return {s: load_service(s, settings, clock=clock) for s in SCALE_SERVICES}


def open_cases(service) -> int:
    with service.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM workflow_instances WHERE status = 'waiting'").scalar()


def build(admin, prefix, size, var_dir, log):
    """Create, migrate and fill the databases of one size. Returns the load time in s."""
    for service in SCALE_SERVICES:
        admin.execute(f'CREATE DATABASE "{db_name(prefix, size, service)}"')
    settings = settings_for(prefix, size, var_dir)
    clock = FrozenClock(SystemClock().now())
    services = services_for(settings, clock)
    for service in services.values():
        prepare(service)
        load_demo_accounts(service)
    started = time.monotonic()
    templates = bulkgen.make_templates(services, clock)
    log(f"  {len(templates['dispatch'])} template cases through the code in {time.monotonic() - started:.1f} s")
    for service in services.values():
        service.engine.dispose()
    started = time.monotonic()
    generator = bulkgen.Generator(templates, SystemClock().now())
    conns = connections(prefix, size)
    try:
        step = max(size // 10, 2000)

        def progress(done):
            if done % step < 2000 or done == size:
                elapsed = time.monotonic() - started
                log(f"  {done:>9,} cases  {elapsed:6.0f} s  {done / elapsed:,.0f} cases/s")
        bulkgen.load(conns, generator, size, progress=progress, rebuild_indexes=True)
    finally:
        for conn in conns.values():
            conn.close()
    loaded = time.monotonic() - started
    vacuum(prefix, size)
    return loaded


def connections(prefix, size):
    import psycopg
    return {s: psycopg.connect(dbname=db_name(prefix, size, s), **PG) for s in SCALE_SERVICES}


def vacuum(prefix, size):
    import psycopg
    for service in SCALE_SERVICES:
        with psycopg.connect(dbname=db_name(prefix, size, service), autocommit=True, **PG) as conn:
            conn.execute("VACUUM (ANALYZE)")


def database_sizes(admin, prefix, size) -> dict:
    return {s: admin.execute("SELECT pg_database_size(%s)", (db_name(prefix, size, s),)).fetchone()[0]
            for s in SCALE_SERVICES}


# -- measuring --------------------------------------------------------------------------

def login(client, username):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise SystemExit(f"login as {username} failed: {response.status_code}")


class Statements:
    """Records the SQL an engine runs while active (for --explain)."""

    def __init__(self, engine):
        self.engine, self.seen, self.active = engine, [], False
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.active and statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, parameters))

    @contextmanager
    def recording(self):
        self.seen, self.active = [], True
        try:
            yield self.seen
        finally:
            self.active = False


def explain(engine, statements) -> list[str]:
    """The plans of ``statements`` (rolled back), each with the notable nodes."""
    out = []
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in statements:
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = [row[0] for row in cur.fetchall()]
            raw.rollback()
            out.append(" ".join(statement.split())[:300])
            out.extend(f"    {line}" for line in plan)
    return out


def timed(call, repeat) -> dict:
    for _ in range(2):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {"p50": statistics.median(samples), "p95": samples[min(len(samples) - 1, int(len(samples) * 0.95))]}


def sample_case(service, status):
    """A generated (not template) case waiting in dispatch's ``status`` step."""
    with service.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT case_no FROM work_items WHERE task_name = %(t)s ORDER BY id LIMIT 1 OFFSET 500",
            {"t": status}).scalar()


def tracking_code(service, case_no):
    with service.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT tracking_code FROM citizen_requests WHERE case_no = %(c)s",
                                    {"c": case_no}).scalar()


def add_due_timers(prefix, size, generator_templates, count):
    """``count`` more cases whose first timer fell due a minute ago (for the sweep)."""
    conns = connections(prefix, size)
    try:
        generator = bulkgen.Generator(generator_templates, SystemClock().now(), seed=time.monotonic_ns())
        conns.pop("supervision").close()
        return bulkgen.load(conns, generator, count, due_in=timedelta(minutes=-1))
    finally:
        for conn in conns.values():
            conn.close()


def measure(prefix, size, var_dir, args, templates):
    settings = settings_for(prefix, size, var_dir)
    services = services_for(settings)
    for service in services.values():
        prepare(service)  # new migrations (indexes) reach kept databases too
    apps = {name: create_app(service, {"TESTING": True}) for name, service in services.items()}
    clients = {}

    def client(service, user):
        if (service, user) not in clients:
            clients[service, user] = apps[service].test_client()
            login(clients[service, user], user)
        return clients[service, user]

    def page(service, user, path):
        def get():
            response = client(service, user).get(path)
            if response.status_code != 200:
                raise SystemExit(f"{service} {path} as {user}: {response.status_code}")
        return get

    dispatch, intake = services["dispatch"], services["intake"]
    case_no = sample_case(dispatch, "resolve")
    code = tracking_code(intake, case_no)
    sweep_rows = []

    def sweep_due():
        """One sweep pass with ``--due`` due timers (new cases made due just before)."""
        add_due_timers(prefix, size, templates, args.due)
        started = time.perf_counter()
        fired = dispatch.runtime.fire_due_timers(dispatch.uow)
        sweep_rows.append(fired)
        return time.perf_counter() - started

    pages = [
        ("dispatch", "timer sweep, nothing due", None, lambda: dispatch.runtime.fire_due_timers(dispatch.uow)),
        ("dispatch", "queue, first page (admin, all districts)", "admin", "/queue"),
        ("dispatch", "queue, filtered (district + 待交办)", "admin", "/queue?district=210902&task=assign"),
        ("dispatch", "queue, a district's dispatcher", "fenbo_haizhou", "/queue"),
        ("dispatch", "department inbox (住建)", "bm_zhujian", "/inbox"),
        ("dispatch", "API list status=assign&district", "admin", "/api/v1/cases?status=assign&district=210902"),
        ("dispatch", "case page (admin: audit trail too)", "admin", f"/cases/{case_no}"),
        ("intake", "daily volume, 30 days, all districts", "admin", "/staff/volume"),
        ("intake", "daily volume, one district by channel", "admin", "/staff/volume?district=210902&by=channel"),
        ("intake", "citizen status API", None, f"/api/v1/requests/{case_no}?tracking_code={code}"),
        ("supervision", "supervision board (督办)", "supervisor", "/board"),
    ]
    results, plans = {}, []
    recorders = {name: Statements(service.engine) for name, service in services.items()}
    for service, title, user, target in pages:
        if callable(target):
            call = target
        elif user is None:
            anonymous = apps[service].test_client()
            call = lambda anonymous=anonymous, target=target: anonymous.get(target)  # noqa: E731
        else:
            call = page(service, user, target)
        results[title] = timed(call, args.repeat)
        if args.explain:
            with recorders[service].recording() as seen:
                call()
            plans.append(f"--- {title} ({service}) ---")
            plans.extend(explain(services[service].engine, seen))
    # The sweep with due timers: each pass sees fresh due rows, so it is timed by hand.
    sweep_due()
    samples = sorted(sweep_due() for _ in range(args.sweeps))
    results[f"timer sweep, {args.due} due timers fired"] = {
        "p50": statistics.median(samples), "p95": samples[-1]}
    results["_fired"] = sweep_rows
    results["_open"] = {name: open_cases(service) for name, service in services.items()}
    for service in services.values():
        service.engine.dispose()
    return results, plans


def flag_plans(plans) -> list[str]:
    """Plan lines worth a look: sequential scans and sorts of more than 1,000 rows."""
    flagged = []
    for line in plans:
        rows = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", line)
        if ("Seq Scan" in line or "Sort " in line) and rows and int(rows.group(1)) > 1000:
            flagged.append(line.strip())
    return flagged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000", help="open cases per database set, comma-separated")
    parser.add_argument("--prefix", default="fzt_scale", help="database names: <prefix>_<size>_<service>")
    parser.add_argument("--keep", action="store_true", help="keep the databases (for --reuse)")
    parser.add_argument("--reuse", action="store_true", help="use kept databases of the same prefix and size")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per page (default 20)")
    parser.add_argument("--due", type=int, default=5, help="due timers per measured sweep pass (default 5)")
    parser.add_argument("--sweeps", type=int, default=5, help="measured sweep passes with due timers")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE) of every SELECT")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    m = machine()
    versions = server_versions()
    print(f"date: {m['date']}\nmachine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['os']}\n"
          f"python {m['python']}, {versions['postgresql']}\ncommand: {' '.join(sys.argv)}")
    admin = admin_connection()
    var_dir = Path(tempfile.mkdtemp(prefix="fzt_scale_"))
    made, results, all_plans = [], {}, {}
    try:
        for size in sizes:
            names = [db_name(args.prefix, size, s) for s in SCALE_SERVICES]
            present = [n for n in names if existing(admin, n)]
            if present and not args.reuse:
                raise SystemExit(f"{', '.join(present)} exist: pass --reuse to measure them, or drop them")
            if len(present) != len(names):
                for name in present:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                print(f"\n== loading {size:,} open cases ==")
                made.extend(names)
                seconds = build(admin, args.prefix, size, var_dir, print)
                print(f"  loaded in {seconds:.0f} s ({size / seconds:,.0f} cases/s), then VACUUM ANALYZE")
            sizes_now = database_sizes(admin, args.prefix, size)
            print(f"  database sizes: " + ", ".join(f"{s} {b / 2**30:.2f} GiB" for s, b in sizes_now.items()))
            print(f"== measuring at {size:,} ==")
            settings = settings_for(args.prefix, size, var_dir)
            templates = template_set(settings)
            results[size], all_plans[size] = measure(args.prefix, size, var_dir, args, templates)
            print("  open instances: " + ", ".join(f"{s} {n:,}" for s, n in results[size].pop("_open").items()))
            print(f"  timers fired per measured pass: {results[size].pop('_fired')}")
        report(sizes, results)
        for size, plans in all_plans.items():
            if plans:
                print(f"\n== plans at {size:,} ==")
                print("\n".join(plans))
                flagged = flag_plans(plans)
                print(f"\n== at {size:,}: {len(flagged)} sequential scans / sorts over 1,000 rows ==")
                print("\n".join(flagged))
    finally:
        if not args.keep:
            for name in made + ([db_name(args.prefix, s, x) for s in sizes for x in SCALE_SERVICES]
                                if args.reuse else []):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def template_set(settings):
    """Templates for the due-timer cases of the sweep: captured from the template cases
    already in the database (the first 231 dispatch cases, made by ``build``)."""
    from sqlalchemy import select

    from services.common.models import WorkflowInstance, WorkItem
    services = services_for(settings)
    for service in services.values():
        prepare(service)  # new migrations reach kept databases before anything reads them
    templates = {"intake": [], "dispatch": [], "supervision": []}
    with services["dispatch"].uow() as uow:
        rows = uow.session.execute(select(WorkflowInstance.case_no, WorkflowInstance.updated_at, WorkItem.district,
                                          WorkItem.task_name)
                                   .join(WorkItem, WorkItem.instance_id == WorkflowInstance.id)
                                   .where(WorkItem.task_name.in_(list(bulkgen.STATUS_WEIGHTS)))
                                   .order_by(WorkflowInstance.id).limit(3 * 7 * len(bulkgen.TOPICS))).all()
    for case_no, updated, district, status in rows:
        now = updated + timedelta(seconds=1)  # its last change: later timestamps are due times
        templates["intake"].append(bulkgen.capture(services["intake"], case_no, district, status, now))
        templates["dispatch"].append(bulkgen.capture(services["dispatch"], case_no, district, status, now))
    for service in services.values():
        service.engine.dispose()
    return templates


def report(sizes, results):
    print("\n== cost per call, median / p95 (ms) ==")
    titles = list(results[sizes[0]])
    header = f"{'':<46}" + "".join(f"{f'{s:,} open':>22}" for s in sizes)
    print(header)
    for title in titles:
        cells = "".join(f"{results[s][title]['p50'] * 1000:>11.1f} /{results[s][title]['p95'] * 1000:>7.1f}"
                        f"   " for s in sizes)
        print(f"{title:<46}{cells}")


if __name__ == "__main__":
    main()
