"""Bulk generator: many open cases in the intake, dispatch and supervision databases, fast.

Rows are not invented: a few hundred *template* cases go through the real code first
(``submit_request`` in intake, the bus message applied by dispatch, assign and accept through
``services/dispatch/cases.py``, dispatch's messages applied by intake, a missed deadline
applied by supervision), so the workflow state JSON, work items, timeline, audit and outbox
rows are what the platform itself writes. Each template case's rows are then cut into
literal text and *slots* (task UUIDs, the case number, timestamps, instance ids) once, and
every generated case is the template's text with fresh slot values, streamed to PostgreSQL
with ``COPY``. About 25 µs of Python per case and table instead of the ~30 ms of CPU a case
costs through the services.

Distribution (``DISTRICT_WEIGHTS``, ``STATUS_WEIGHTS``; eleven topics evenly): the district
sets the case number and the work item's district; the status is the dispatch step the case
waits in (assign 25 %, accept 15 %, resolve 60 %); ``SUPERVISED`` of the cases also have an
urging task in supervision (a missed deadline). A case's age is exponential (mean 20 days,
at most 180): every timestamp of the template that lies in the template's past moves with
the age; every timestamp in its future (timer due times, the deadline of a work item,
``next_timer_at``) moves to between 1 hour and 7 days from now, so a generated case is open
and its timers are pending (``due_in`` overrides that, e.g. for due timers of the sweep
benchmark). Deadlines move by calendar time, not working days; the dispatch state of a
supervised case does not record the fired deadline timer. Both are irrelevant to what the
benchmark reads.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from sqlalchemy import select

from services.common.db import tables_for
from services.common.models import OutboxMessage, WorkItem
from services.common.reference import DISTRICTS

DISTRICT_WEIGHTS = {"210902": 22, "210903": 10, "210904": 12, "210905": 8, "210911": 13, "210921": 20,
                    "210922": 15}
STATUS_WEIGHTS = {"assign": 25, "accept": 15, "resolve": 60}
SUPERVISED = 0.10
MEAN_AGE_DAYS, MAX_AGE_DAYS = 20, 180

# (description, category) — the DMN routes each to another department.
TOPICS = [
    ("楼上卫生间漏水，我家天花板渗水严重", ""), ("小区门口长期占道经营，行人无法通行", ""),
    ("附近工地夜间施工噪音扰民", ""), ("小区已经停水两天，没有任何通知", ""),
    ("公司拖欠工资三个月，多次讨要未果", ""), ("公交线路调整后上下班出行很不方便", "traffic"),
    ("超市出售过期食品，要求查处", "market"), ("小区附近夜间经常有人聚集打架", "public_security"),
    ("学校要求家长购买指定教辅资料", "education"), ("社区卫生服务中心排队时间太长", "health"),
    ("申请低保已经两个月没有结果", "civil_affairs"),
]
ADMIN = SimpleNamespace(username="admin", display_name="系统管理员", role="admin", district=None,
                        department=None)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?")


# -- COPY text --------------------------------------------------------------------------

def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _cell(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (dict, list)):
        return _escape(json.dumps(value, ensure_ascii=False))
    return _escape(str(value))


# -- templates --------------------------------------------------------------------------

@dataclass
class Template:
    """One case's rows in one service's database as text with slots.

    ``parts`` per table: a list of literals and slots; a slot is ("uuid", k), ("case",),
    ("iid", k) or ("dt", base, future, style)."""

    district: str
    status: str
    now: datetime
    next_due: datetime | None = None  # the template instance's next_timer_at
    tables: dict[str, tuple[list[str], list]] = field(default_factory=dict)


def _tokenize(text: str, case_no: str, now: datetime, uuids: dict, out: list):
    """Append literals and slots of ``text`` to ``out``."""
    pattern = re.compile("|".join([_UUID.pattern, _DATETIME.pattern, re.escape(case_no)]))
    pos = 0
    for match in pattern.finditer(text):
        out.append(text[pos:match.start()])
        token = match.group(0)
        if token == case_no:
            out.append(("case",))
        elif _UUID.fullmatch(token):
            out.append(("uuid", uuids.setdefault(token, len(uuids))))
        else:
            value = datetime.fromisoformat(token.replace("Z", "+00:00"))
            aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            style = ("T" in token, "." in token, value.tzinfo is not None, token.endswith("Z"))
            out.append(("dt", aware, aware > now + timedelta(minutes=1), style))
        pos = match.end()
    out.append(text[pos:])


def capture(service, case_no: str, district: str, status: str, now: datetime) -> Template:
    """The rows of ``case_no`` in ``service``'s database, cut into literals and slots."""
    template = Template(district, status, now)
    uuids: dict[str, int] = {}
    with service.engine.connect() as conn:
        instance_ids = {}
        for table in tables_for(service.name):
            if table.name == "outbox":  # template cases come first: their rows have the low ids
                rows = [r for r in conn.execute(select(table).order_by(table.c.id).limit(5000)).mappings()
                        if r["envelope"].get("case_no") == case_no]
            elif "case_no" in table.c and table.name not in ("case_sequences",):
                rows = list(conn.execute(select(table).where(table.c.case_no == case_no)).mappings())
            else:
                continue
            if not rows:
                continue
            if table.name == "workflow_instances":
                dues = [r["next_timer_at"] for r in rows if r["next_timer_at"] is not None]
                template.next_due = min(dues) if dues else None
            serial = table.name != "workflow_instances" and "id" in table.c and \
                table.c.id.autoincrement is True and isinstance(rows[0]["id"], int)
            columns = [c.name for c in table.c if not (serial and c.name == "id")]
            parts: list = []
            for row in rows:
                for i, column in enumerate(columns):
                    if i:
                        parts.append("\t")
                    value = row[column]
                    if (table.name, column) in (("workflow_instances", "id"), ("work_items", "instance_id")):
                        parts.append(("iid", instance_ids.setdefault(value, len(instance_ids))))
                    else:
                        _tokenize(_cell(value), case_no, now, uuids, parts)
                parts.append("\n")
            template.tables[table.name] = (columns, _merge_literals(parts))
    template.uuid_count = len(uuids)
    template.instance_count = len(instance_ids)
    return template


def _merge_literals(parts):
    merged = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return merged


def make_templates(services: dict, clock) -> dict:
    """Run template cases through the real code; returns {service: [Template, ...]} where
    intake and dispatch lists are aligned (index i is the same case) and supervision's
    are the urging tasks per district. ``clock`` is the FrozenClock every service uses."""
    from services.dispatch import cases
    from services.intake.requests import submit_request

    intake, dispatch, supervision = services["intake"], services["dispatch"], services["supervision"]

    def forward(source, targets, case_nos, seen):
        """Apply ``source``'s new outbox messages of ``case_nos`` to the services routing them."""
        with source.uow() as uow:
            rows = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        for row in rows:
            if row.message_id in seen or row.envelope.get("case_no") not in case_nos:
                continue
            seen.add(row.message_id)
            for target in targets:
                if row.routing_key in routes[id(target)]:
                    target.apply_message(row.envelope)

    def submit(district, topic):
        description, category = TOPICS[topic]
        return submit_request(intake, {"district": district, "name": "张三", "phone": "13800000000",
                                       "description": description, "category": category,
                                       "channel": ["web", "hotline_12345", "grid", "phone"][topic % 4],
                                       "location": "建设街道幸福小区3号楼"}).case_no

    keys = {name: service.routing_keys() for name, service in services.items()}
    routes = {id(service): keys[name] for name, service in services.items()}
    seen: set[str] = set()
    # Missed deadlines first, three days back: supervision's urging tasks.
    breached = {}
    start = clock.now()
    clock.advance(timedelta(days=-3))
    for district in DISTRICTS:
        breached[district] = submit(district, 0)
    forward(intake, [dispatch], set(breached.values()), seen)
    clock.advance(timedelta(days=3))
    dispatch.runtime.fire_due_timers(dispatch.uow)
    forward(dispatch, [supervision], set(breached.values()), seen)
    assert clock.now() == start

    made = []  # (case_no, district, status)
    for district in DISTRICTS:
        for topic in range(len(TOPICS)):
            for status in STATUS_WEIGHTS:
                made.append((submit(district, topic), district, status))
    case_nos = {c for c, _, _ in made}
    forward(intake, [dispatch], case_nos, seen)
    for case_no, district, status in made:
        if status in ("accept", "resolve"):
            with dispatch.uow() as uow:
                item = uow.session.scalars(select(WorkItem).where(WorkItem.case_no == case_no)).one()
                suggestion = item.summary.get("suggested_department")
            lead = suggestion or "zhujian"
            # Half of them with a co-handler, so the 协办案件 list has rows at scale.
            helper = [] if int(case_no[-1]) % 2 else ["chengguan" if lead == "zhujian" else "zhujian"]
            cases.assign(dispatch, ADMIN, case_no, lead, co_departments=helper)
        if status == "resolve":
            cases.accept(dispatch, ADMIN, case_no)
    forward(dispatch, [intake, supervision], case_nos, seen)
    now = clock.now()
    templates = {"intake": [], "dispatch": [], "supervision": []}
    for case_no, district, status in made:
        templates["intake"].append(capture(intake, case_no, district, status, now))
        templates["dispatch"].append(capture(dispatch, case_no, district, status, now))
    for district, case_no in breached.items():
        templates["supervision"].append(capture(supervision, case_no, district, "urge", now))
    return templates


# -- generating -------------------------------------------------------------------------

def _format(value: datetime, style) -> str:
    with_t, with_fraction, aware, zulu = style
    if not aware:
        value = value.replace(tzinfo=None)
    text = value.isoformat(sep="T" if with_t else " ", timespec="microseconds" if with_fraction else "seconds")
    return text[:-6] + "Z" if zulu and text.endswith("+00:00") else text


class Generator:
    """Draws generated cases (case number, district, status, age) and renders their rows."""

    def __init__(self, templates: dict, now: datetime, seed: int = 8):
        self.templates = templates
        self.now = now
        self.random = random.Random(seed)
        self.by_key: dict[tuple, list[int]] = {}
        for i, t in enumerate(templates["dispatch"]):
            self.by_key.setdefault((t.district, t.status), []).append(i)
        self.urge = {t.district: t for t in templates["supervision"]}
        self.sequence: dict[tuple[str, str], int] = {}
        self.next_instance = {s: 0 for s in templates}
        self.instance_base = {s: 0 for s in templates}

    def draw(self, due_in: timedelta | None = None):
        """(case_no, district, template index, created, past shift, future shift, supervised)."""
        r = self.random
        district = r.choices(list(DISTRICT_WEIGHTS), weights=list(DISTRICT_WEIGHTS.values()))[0]
        status = r.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
        index = r.choice(self.by_key[(district, status)])
        while due_in is not None and self._first_due(index) is None:  # a due timer needs a timer
            index = r.choice(self.by_key[(district, status)])
        age = timedelta(days=min(MAX_AGE_DAYS, r.expovariate(1 / MEAN_AGE_DAYS)))
        created = self.now - age
        day = (created + timedelta(hours=8)).strftime("%Y%m%d")
        seq = self.sequence[(district, day)] = self.sequence.get((district, day), 0) + 1
        case_no = f"{district}-{day}-{seq:04d}"
        template_now = self.templates["dispatch"][index].now
        past = created - template_now
        first_due = self._first_due(index)
        if due_in is None:
            due_in = timedelta(seconds=r.uniform(3600, 7 * 86400))
        future = (self.now + due_in - first_due) if first_due else timedelta(0)
        return case_no, district, index, created, past, future, r.random() < SUPERVISED

    def _first_due(self, index):
        return self.templates["dispatch"][index].next_due

    def render(self, service: str, template: Template, case_no, past, future, out: dict):
        """Append the template's rows, with fresh slot values, to ``out[table]`` (text)."""
        noise = os.urandom(11).hex()
        tail = f"-{noise[:4]}-4{noise[4:7]}-a{noise[7:10]}-{noise[10:22]}"
        base = self.instance_base[service] + self.next_instance[service]
        self.next_instance[service] += template.instance_count
        values = {}
        for table, (_, parts) in template.tables.items():
            text = list(parts)
            for i, part in _slots(parts):
                value = values.get(part)
                if value is None:
                    kind = part[0]
                    if kind == "uuid":
                        value = f"{part[1]:08x}{tail}"
                    elif kind == "case":
                        value = case_no
                    elif kind == "iid":
                        value = str(base + part[1])
                    else:
                        value = _format(part[1] + (future if part[2] else past), part[3])
                    values[part] = value
                text[i] = value
            out.setdefault(table, []).append("".join(text))


_slot_cache: dict[int, tuple] = {}


def _slots(parts):
    """(index, slot) of the non-literal parts of a template table (computed once)."""
    found = _slot_cache.get(id(parts))
    if found is None or found[0] is not parts:  # (an id is reused once its list is gone)
        found = _slot_cache[id(parts)] = (parts, [(i, p) for i, p in enumerate(parts) if p.__class__ is not str])
    return found[1]


def load(conns: dict, generator: Generator, count: int, batch: int = 2000, due_in=None, progress=None,
         rebuild_indexes: bool = False):
    """Generate ``count`` cases into the open psycopg connections ``conns`` (service → conn)
    with COPY, committing every ``batch`` cases; one writer thread per database, so that
    PostgreSQL works while Python renders. ``rebuild_indexes``: drop the secondary indexes of
    the loaded tables first and build them again at the end (much faster for big loads).
    Returns the case numbers."""
    generator.instance_base = {s: _max_id(conn, "workflow_instances") for s, conn in conns.items()}
    generator.next_instance = {s: 1 for s in conns}
    with conns["intake"].cursor() as cur:  # case numbers continue the districts' sequences
        for district, day, last in cur.execute("SELECT district, day, last FROM case_sequences"):
            generator.sequence[(district, day)] = max(last, generator.sequence.get((district, day), 0))
    tables = {s: sorted({t for tpl in generator.templates[s] for t in tpl.tables} | {"inbox"}) for s in conns}
    dropped = {s: _drop_indexes(conn, tables[s]) for s, conn in conns.items()} if rebuild_indexes else {}
    writers = {s: _Writer(conn, generator.templates[s]) for s, conn in conns.items()}
    made = []
    done = 0
    try:
        while done < count:
            n = min(batch, count - done)
            out = {s: {} for s in conns}
            inbox = {s: [] for s in conns}
            for _ in range(n):
                case_no, district, index, created, past, future, supervised = generator.draw(due_in)
                made.append(case_no)
                for service in ("intake", "dispatch"):
                    generator.render(service, generator.templates[service][index], case_no, past, future,
                                     out[service])
                inbox["dispatch"].append(f"{os.urandom(16).hex()}\tintake.case_submitted\t{created.isoformat()}\n")
                if supervised and "supervision" in conns:
                    generator.render("supervision", generator.urge[district], case_no, past, future,
                                     out["supervision"])
                    inbox["supervision"].append(f"{os.urandom(16).hex()}\tdispatch.deadline_missed\t"
                                                f"{created.isoformat()}\n")
            for service, writer in writers.items():
                out[service]["inbox"] = inbox[service]
                writer.put(out[service])
            done += n
            if progress:
                progress(done)
    finally:
        for writer in writers.values():
            writer.close()
    for service, conn in conns.items():
        if service in dropped:
            _create_indexes(conn, dropped[service])
        _after_load(conn, generator if service == "intake" else None)
    return made


class _Writer:
    """COPYs batches to one database on its own thread (psycopg releases the GIL on I/O)."""

    def __init__(self, conn, templates):
        import queue
        import threading
        self.conn, self.templates = conn, templates
        self.batches = queue.Queue(maxsize=2)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, batch):
        if self.error:
            raise self.error
        self.batches.put(batch)

    def close(self):
        self.batches.put(None)
        self.thread.join()
        if self.error:
            raise self.error

    def _run(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute("SET synchronous_commit = off")  # this session only: bulk load
            while (batch := self.batches.get()) is not None:
                with self.conn.cursor() as cur:
                    for table, chunks in batch.items():
                        if not chunks:
                            continue
                        columns = ("message_id", "routing_key", "processed_at") if table == "inbox" \
                            else _columns(self.templates, table)
                        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                            copy.write("".join(chunks))
                self.conn.commit()
        except Exception as err:  # reported to the producer
            self.error = err
            while self.batches.get() is not None:
                pass


def _drop_indexes(conn, tables) -> list[str]:
    """Drop the non-unique indexes of ``tables``; returns their definitions."""
    with conn.cursor() as cur:
        rows = cur.execute("SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                           "JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                           "WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace "
                           "AND NOT x.indisunique", (list(tables),)).fetchall()
        for name, _ in rows:
            cur.execute(f'DROP INDEX "{name}"')
    conn.commit()
    return [definition for _, definition in rows]


def _create_indexes(conn, definitions):
    with conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
        for definition in definitions:
            cur.execute(definition)
    conn.commit()


def _columns(templates, table):
    for template in templates:
        if table in template.tables:
            return template.tables[table][0]
    raise KeyError(table)


def _max_id(conn, table) -> int:
    with conn.cursor() as cur:
        return cur.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]


def _after_load(conn, generator):
    """Move the instance id sequence past the explicit ids; intake: case-number sequences and
    the daily-volume counts."""
    with conn.cursor() as cur:
        cur.execute("SELECT setval(pg_get_serial_sequence('workflow_instances', 'id'), "
                    "(SELECT max(id) FROM workflow_instances))")
        if generator is not None:
            for (district, day), last in generator.sequence.items():
                cur.execute("INSERT INTO case_sequences (district, day, last) VALUES (%s, %s, %s) "
                            "ON CONFLICT (district, day) DO UPDATE SET last = greatest(case_sequences.last, "
                            "excluded.last)", (district, day, last))
            # The daily-volume rollup (services/intake/volume_counts.py) counted only the
            # template cases; count again over everything copied.
            cur.execute("DELETE FROM request_counts")
            cur.execute("INSERT INTO request_counts (day, district, channel, n) "
                        "SELECT ((created_at AT TIME ZONE 'UTC') + INTERVAL '8 hours')::date, district, channel, "
                        "count(*) FROM citizen_requests GROUP BY 1, 2, 3")
    conn.commit()


def expected_share(count: int) -> dict:
    """Expected number of cases per status (for the report)."""
    total = sum(STATUS_WEIGHTS.values())
    return {s: math.floor(count * w / total) for s, w in STATUS_WEIGHTS.items()}
