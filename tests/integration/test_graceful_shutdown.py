"""SIGTERM: a worker finishes the message in hand (committed and acknowledged), takes no
other, and exits 0; a web process exits 0. Real processes (``fzt worker`` / ``fzt serve``)
on PostgreSQL and RabbitMQ.

To catch the worker *while* it applies a message, the test holds an EXCLUSIVE lock on the
``inbox`` table: the worker's apply blocks on its inbox insert (seen in ``pg_locks``), the
test sends SIGTERM, checks that the worker waits, then lets the apply go on.
"""
import signal
import subprocess
import time
import urllib.request

import pytest
from kombu import Connection, Producer
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from services.common.bus.messages import make_envelope
from tests.support.cluster import Cluster, free_port, wait_until

from .test_migrations import AT, SUBMITTED

EXIT_BOUND = 20  # seconds from SIGTERM (after the lock is released) to exit


def submitted(case_no):
    return make_envelope("intake.case_submitted", {**SUBMITTED, "case_no": case_no}, "intake", AT)


@pytest.fixture
def dispatch_cluster(tmp_path, make_pg_database, rabbitmq):
    broker_url, new_prefix = rabbitmq
    url = make_pg_database("graceful_dispatch")
    cluster = Cluster(tmp_path, {"FZT_DATABASE_URL_DISPATCH": url, "FZT_BROKER_URL": broker_url,
                                 "FZT_BUS_PREFIX": new_prefix()})
    cluster.fzt("db", "upgrade", "dispatch")
    cluster.fzt("bpmn", "deploy", "dispatch")
    cluster.database_url = url
    try:
        yield cluster
    finally:
        cluster.stop()


def test_sigterm_lets_the_worker_finish_the_message_in_hand_then_exit_0(dispatch_cluster):
    cluster = dispatch_cluster
    engine = create_engine(cluster.database_url, poolclass=NullPool)
    prefix = cluster.env["FZT_BUS_PREFIX"]
    worker = cluster.spawn("dispatch-worker", "worker", "dispatch")
    wait_until(lambda: "worker running" in cluster.log_text("dispatch-worker"), 60, "the worker")

    in_hand, next_one = submitted("210902-20261125-0101"), submitted("210902-20261125-0102")
    with engine.connect() as lock:
        lock.execute(text("BEGIN; LOCK TABLE inbox IN EXCLUSIVE MODE"))
        with Connection(cluster.env["FZT_BROKER_URL"]) as conn:
            producer = Producer(conn.default_channel)
            for message in (in_hand, next_one):
                producer.publish(message, exchange=f"{prefix}.events", routing_key=message["type"],
                                 serializer="json")
        wait_until(lambda: waiting_on_inbox(engine), 30, "the worker to block on the inbox insert")
        worker.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the worker must wait for the message it is applying
        assert worker.poll() is None, "the worker left a message half-applied"
        lock.execute(text("COMMIT"))
        released = time.monotonic()
    code = worker.wait(EXIT_BOUND)
    took = time.monotonic() - released
    log = cluster.log_text("dispatch-worker")
    assert code == 0, log[-3000:]
    assert "worker stopped" in log and "still running" not in log
    with engine.connect() as conn:
        applied = conn.execute(text("SELECT message_id FROM inbox")).scalars().all()
        cases = conn.execute(text("SELECT case_no FROM workflow_instances")).scalars().all()
    assert applied == [in_hand["id"]] and cases == [in_hand["case_no"]]  # finished and committed
    ready, unacked = queue_counts(cluster.env["FZT_BROKER_URL"], f"{prefix}.dispatch")
    assert (ready, unacked) == (1, 0)  # acknowledged; the next one was left for the next worker
    print(f"\nworker exited 0 {took:.2f} s after the message in hand could go on")
    engine.dispose()


def test_sigterm_stops_the_web_process_with_exit_0(dispatch_cluster):
    cluster = dispatch_cluster
    port = free_port()
    web = cluster.spawn("dispatch-web", "serve", "dispatch", "--port", str(port))
    wait_until(lambda: healthy(f"http://127.0.0.1:{port}/dispatch/healthz"), 60, "dispatch-web",
               interval=0.2)
    started = time.monotonic()
    web.send_signal(signal.SIGTERM)
    try:
        code = web.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("fzt serve did not exit within 15 s of SIGTERM")
    assert code == 0, cluster.log_text("dispatch-web")[-2000:]
    assert "dispatch web stopped" in cluster.log_text("dispatch-web")
    print(f"\nweb exited 0 {time.monotonic() - started:.2f} s after SIGTERM")


def healthy(url) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def waiting_on_inbox(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'inbox' AND NOT l.granted")).scalar())


def queue_counts(broker_url, queue) -> tuple[int, int]:
    """(ready, unacknowledged) of a quorum queue, read with a passive declare: ready is the
    message count; nothing is unacknowledged once no consumer is left."""
    with Connection(broker_url) as conn:
        ok = conn.default_channel.queue_declare(queue, passive=True)
        return ok.message_count, 0 if ok.consumer_count == 0 else -1
