"""The bare floor: what one case needs from PostgreSQL and RabbitMQ, with no application code.

A case through intake and into the dispatcher's queue costs, at the least:

1. intake's transaction: take the next case number (``UPDATE … RETURNING`` on a per-district
   row), insert the request, the workflow instance (its state: ``STATE_BYTES`` of JSON), a
   timeline entry and the outbox row; commit;
2. the relay: select unsent outbox rows ``FOR UPDATE SKIP LOCKED``, publish each with publisher
   confirms (kombu, ``confirm_publish``, persistent, to a durable topic exchange and a quorum
   queue), mark them sent; commit;
3. dispatch's transaction per delivered message (prefetch 1): look up the inbox, insert the
   inbox mark, the instance (``STATE_BYTES``), the work item and a timeline entry; commit; ack.

``run`` does exactly that with ``concurrency`` client threads, one relay thread and one
consumer thread (as the services do), on plain psycopg and kombu, in two databases of the
run, and reports cases/s (first submit → last dispatch commit) and the per-case latency.
The row sizes are those the platform writes (measured on the scale benchmark's template
cases): intake state ≈ 6.7 KB, dispatch state ≈ 7.7 KB, envelope ≈ 0.6 KB.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

STATE_BYTES = {"intake": 6700, "dispatch": 7700}
DISTRICTS = ("210902", "210903", "210904", "210905", "210911", "210921", "210922")

SCHEMA = {
    "intake": [
        "CREATE TABLE bare_sequence (district text PRIMARY KEY, last int NOT NULL)",
        "CREATE TABLE bare_request (case_no text PRIMARY KEY, district text, name text, phone text, "
        "description text, created_at timestamptz)",
        "CREATE TABLE bare_instance (id serial PRIMARY KEY, case_no text, state json, next_timer_at timestamptz, "
        "version int, updated_at timestamptz)",
        "CREATE INDEX ON bare_instance (case_no)",
        "CREATE TABLE bare_timeline (id serial PRIMARY KEY, case_no text, at timestamptz, title text)",
        "CREATE TABLE bare_outbox (id serial PRIMARY KEY, message_id text UNIQUE, routing_key text, "
        "envelope json, created_at timestamptz, sent_at timestamptz)",
        "CREATE INDEX ON bare_outbox (sent_at, id)",
    ],
    "dispatch": [
        "CREATE TABLE bare_inbox (message_id text PRIMARY KEY, processed_at timestamptz)",
        "CREATE TABLE bare_instance (id serial PRIMARY KEY, case_no text, state json, next_timer_at timestamptz, "
        "version int, updated_at timestamptz)",
        "CREATE INDEX ON bare_instance (case_no)",
        "CREATE TABLE bare_work_item (id text PRIMARY KEY, instance_id int, case_no text, task_name text, "
        "district text, summary json, created_at timestamptz)",
        "CREATE INDEX ON bare_work_item (task_name, district, created_at)",
        "CREATE TABLE bare_timeline (id serial PRIMARY KEY, case_no text, at timestamptz, title text)",
    ],
}


def _state(size: int) -> str:
    """A JSON document of about ``size`` bytes, shaped like a workflow state (many small tasks)."""
    tasks = {}
    while len(json.dumps(tasks)) < size - 200:
        task_id = str(uuid.uuid4())
        tasks[task_id] = {"id": task_id, "parent": task_id, "children": [], "state": 64,
                          "task_spec": f"Activity_{len(tasks)}", "data": {}, "internal_data": {},
                          "last_state_change": time.time()}
    return json.dumps({"tasks": tasks, "data": {"district": "210902"}, "state_version": "fzt-1"})


def run(pg: dict, databases: dict, amqp_url: str, prefix: str, n: int, concurrency: int,
        timeout: float = 120.0) -> dict:
    """Measure ``n`` bare cases; ``databases``: {"intake": name, "dispatch": name} (existing)."""
    import psycopg
    from kombu import Connection, Exchange, Producer, Queue

    for service, statements in SCHEMA.items():
        with psycopg.connect(dbname=databases[service], autocommit=True, **pg) as conn:
            for statement in statements:
                conn.execute(statement)
            if service == "intake":
                for district in DISTRICTS:
                    conn.execute("INSERT INTO bare_sequence VALUES (%s, 0)", (district,))
    states = {s: _state(size) for s, size in STATE_BYTES.items()}
    exchange = Exchange(f"{prefix}.bare", "topic", durable=True)
    queue = Queue(f"{prefix}.bare", exchange=exchange, routing_key="intake.case_submitted", durable=True,
                  queue_arguments={"x-queue-type": "quorum"})
    submitted: dict[str, float] = {}
    applied: dict[str, float] = {}
    stop = threading.Event()
    outbox_has_work = threading.Event()

    def submit(i):
        district = DISTRICTS[i % len(DISTRICTS)]
        started = time.monotonic()
        with pool_conn() as conn, conn.cursor() as cur:
            last = cur.execute("UPDATE bare_sequence SET last = last + 1 WHERE district = %s RETURNING last",
                               (district,)).fetchone()[0]
            case_no = f"{district}-{last:06d}"
            cur.execute("INSERT INTO bare_request VALUES (%s, %s, %s, %s, %s, now())",
                        (case_no, district, "压测", "13800000000", "楼上卫生间漏水，我家天花板渗水严重"))
            cur.execute("INSERT INTO bare_instance (case_no, state, next_timer_at, version, updated_at) "
                        "VALUES (%s, %s, now() + interval '1 day', 1, now())", (case_no, states["intake"]))
            cur.execute("INSERT INTO bare_timeline (case_no, at, title) VALUES (%s, now(), '已受理')", (case_no,))
            message_id = str(uuid.uuid4())
            envelope = json.dumps({"id": message_id, "type": "intake.case_submitted", "version": 1,
                                   "case_no": case_no, "occurred_at": "2026-11-26T00:00:00+00:00",
                                   "body": {"case_no": case_no, "district": district, "description": "x" * 300}})
            cur.execute("INSERT INTO bare_outbox (message_id, routing_key, envelope, created_at) "
                        "VALUES (%s, 'intake.case_submitted', %s, now())", (message_id, envelope))
            conn.commit()
        submitted[case_no] = started
        outbox_has_work.set()

    connections = []
    local = threading.local()

    class pool_conn:  # one intake connection per client thread, like a pool
        def __enter__(self):
            if not hasattr(local, "conn"):
                local.conn = psycopg.connect(dbname=databases["intake"], **pg)
                connections.append(local.conn)
            return local.conn

        def __exit__(self, *exc):
            if exc[0] is not None:
                local.conn.rollback()

    def relay():
        with psycopg.connect(dbname=databases["intake"], **pg) as conn, \
                Connection(amqp_url, transport_options={"confirm_publish": True}) as amqp:
            producer = Producer(amqp.default_channel)
            while not stop.is_set():
                with conn.cursor() as cur:
                    rows = cur.execute("SELECT id, message_id, envelope FROM bare_outbox WHERE sent_at IS NULL "
                                       "ORDER BY id LIMIT 200 FOR UPDATE SKIP LOCKED").fetchall()
                    for _, message_id, envelope in rows:
                        producer.publish(envelope, exchange=exchange, routing_key="intake.case_submitted",
                                         serializer="json", delivery_mode=2, message_id=message_id)
                    if rows:
                        cur.execute("UPDATE bare_outbox SET sent_at = now() WHERE id = ANY(%s)",
                                    ([r[0] for r in rows],))
                conn.commit()
                if not rows:
                    outbox_has_work.wait(0.05)
                    outbox_has_work.clear()

    def consume():
        with psycopg.connect(dbname=databases["dispatch"], **pg) as conn, Connection(amqp_url) as amqp:
            def on_message(body, message):
                with conn.cursor() as cur:
                    seen = cur.execute("SELECT 1 FROM bare_inbox WHERE message_id = %s", (body["id"],)).fetchone()
                    if seen is None:
                        cur.execute("INSERT INTO bare_inbox VALUES (%s, now())", (body["id"],))
                        instance = cur.execute(
                            "INSERT INTO bare_instance (case_no, state, next_timer_at, version, updated_at) "
                            "VALUES (%s, %s, now() + interval '1 day', 1, now()) RETURNING id",
                            (body["case_no"], states["dispatch"])).fetchone()[0]
                        cur.execute("INSERT INTO bare_work_item VALUES (%s, %s, %s, 'assign', %s, %s, now())",
                                    (str(uuid.uuid4()), instance, body["case_no"], body["body"]["district"],
                                     json.dumps({"description": body["body"]["description"]})))
                        cur.execute("INSERT INTO bare_timeline (case_no, at, title) VALUES (%s, now(), '待交办')",
                                    (body["case_no"],))
                conn.commit()
                message.ack()
                applied[body["case_no"]] = time.monotonic()

            with amqp.Consumer([queue], callbacks=[on_message], accept=["json"], prefetch_count=1):
                while not stop.is_set():
                    try:
                        amqp.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
                    except OSError:
                        if not stop.is_set():
                            raise

    with Connection(amqp_url) as amqp:
        queue(amqp.default_channel).declare()
    threads = [threading.Thread(target=relay, daemon=True), threading.Thread(target=consume, daemon=True)]
    try:
        for thread in threads:
            thread.start()
        with ThreadPoolExecutor(concurrency) as pool:
            warm = 2 * concurrency  # unmeasured: connections, the first publish, plans
            list(pool.map(submit, range(n, n + warm)))
            deadline = time.monotonic() + timeout
            while len(applied) < warm and time.monotonic() < deadline:
                time.sleep(0.01)
            applied.clear()
            submitted.clear()
            started = time.monotonic()
            list(pool.map(submit, range(n)))
        deadline = time.monotonic() + timeout
        while len(applied) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        finished = max(applied.values()) if applied else time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for conn in connections:
            conn.close()
        with Connection(amqp_url) as amqp:
            channel = amqp.default_channel
            queue(channel).delete()
            exchange(channel).delete()
    latencies = [applied[c] - submitted[c] for c in applied if c in submitted]
    return {"cases": len(applied), "rate": len(applied) / (finished - started) if applied else 0.0,
            "latencies": latencies}
