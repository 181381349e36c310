"""A consumer in a crash loop: how many healthy messages it drags into the dead-letter queue.

Every kill -9 of a worker returns the messages its consumer held unacknowledged (at most
``FZT_PREFETCH`` of them), and RabbitMQ (3.10 here) counts each return as a delivery. A
message returned ``FZT_DELIVERY_LIMIT`` + 1 times is dead-lettered by the quorum queue,
though nothing was wrong with it. Nothing is lost — it waits in ``<prefix>.<service>.dead``
for ``fzt dead-letters replay`` — but its case is stuck until an operator replays it. So a
crash loop of K kills dead-letters at most ``prefetch × K // (delivery_limit + 1)`` messages:
the prefetch is the blast radius.

The test builds a backlog for dispatch, then starts its worker and kills it -9
``FZT_CRASH_LOOP_LIFETIME`` (0.02) s after its consumer subscribed (RabbitMQ pushes the
prefetch at once), ``FZT_CRASH_LOOP_KILLS`` (6) times — a process that dies soon after it subscribes, as with a poison message that crashes
it, an out-of-memory kill or a failing liveness probe — then lets it run, replays what was
dead-lettered (as the operator would) and checks that every case reached dispatch exactly
once and that no more messages were dead-lettered than the bound above.

* ``defaults`` (the normal suite, about 40 s on an idle machine): FZT_PREFETCH 4, FZT_DELIVERY_LIMIT 5.
* ``prefetch-20`` (opt-in, ``FZT_FAULT_CRASH_LOOP=1``): the former prefetch of 20, to show
  what it cost (docs/reliability.md).
"""
from __future__ import annotations

import os
import time

import pytest

from services.common import config
from services.common.bus.deadletters import DeadLetters

from .chaos import call, per_case, wait_quiescent

pytestmark = pytest.mark.fault

BACKLOG = int(os.environ.get("FZT_CRASH_LOOP_BACKLOG", "40"))
KILLS = int(os.environ.get("FZT_CRASH_LOOP_KILLS", "6"))
# How long it runs after subscribing, before each kill: long enough to take its prefetch,
# too short to work through it.
LIFETIME = float(os.environ.get("FZT_CRASH_LOOP_LIFETIME", "0.02"))
OPT_IN = pytest.mark.skipif(os.environ.get("FZT_FAULT_CRASH_LOOP", "") != "1",
                            reason="opt-in: FZT_FAULT_CRASH_LOOP=1")


@pytest.mark.parametrize("fault_cluster", [
    pytest.param({}, id="defaults"),
    pytest.param({"FZT_PREFETCH": "20"}, id="prefetch-20", marks=OPT_IN),
], indirect=True)
def test_a_crash_loop_dead_letters_at_most_the_prefetch_and_loses_nothing(fault_cluster):
    cluster = fault_cluster
    settings = config.from_env(cluster.env)  # what the worker runs with
    queue, dead = f"{cluster.bus_prefix}.dispatch", f"{cluster.bus_prefix}.dispatch.dead"
    cluster.kill("dispatch-worker")
    case_nos = []
    for i in range(BACKLOG):
        status, body = call("POST", cluster.url("intake", "/api/v1/requests"), {
            "district": "210902", "name": "测试员", "phone": "13800138000",
            "description": f"崩溃循环演练诉求 {i:04d}：小区楼道灯损坏", "category": "housing"})
        assert status == 201, body
        case_nos.append(body["case_no"])
    deadline = time.monotonic() + 60
    while cluster.queue_depths(suffixes=("",))[queue] < BACKLOG:
        assert time.monotonic() < deadline, "the backlog never reached dispatch's queue"
        time.sleep(0.1)

    trail = []
    with Subscribers(cluster.broker_url, queue) as subscribers:
        for _ in range(KILLS):  # the crash loop
            cluster.restart("dispatch-worker")
            subscribers.wait_for_one()
            time.sleep(LIFETIME)
            cluster.kill("dispatch-worker")
            depths = cluster.queue_depths(suffixes=("", ".dead"))
            trail.append((depths[queue], depths[dead]))
    cluster.restart("dispatch-worker")
    wait_quiescent(cluster)
    letters = DeadLetters(cluster.broker_url, cluster.bus_prefix, "dispatch",
                          var_dir=cluster.var_dir).list(limit=None).letters
    reached = per_case(cluster.query("dispatch", "SELECT case_no, count(*) FROM workflow_instances "
                                                 "GROUP BY case_no"))
    bound = settings.prefetch * KILLS // (settings.delivery_limit + 1)
    print(f"\ncrash loop (prefetch {settings.prefetch}, delivery limit {settings.delivery_limit}): "
          f"{BACKLOG} messages waiting, worker killed {KILLS} times {LIFETIME} s after it "
          f"subscribed; (ready, dead) after each kill: {trail}; dead-lettered: {len(letters)} "
          f"(bound {bound}; {sorted({letter.reason for letter in letters})}); reached dispatch "
          f"before the replay: {len(reached)}")
    assert all(letter.reason.startswith("delivery_limit") for letter in letters)
    assert len(letters) <= bound
    assert {letter.case_no for letter in letters} | set(reached) == set(case_nos)  # nothing lost

    DeadLetters(cluster.broker_url, cluster.bus_prefix, "dispatch", var_dir=cluster.var_dir).replay(all=True)
    wait_quiescent(cluster)
    reached = per_case(cluster.query("dispatch", "SELECT case_no, count(*) FROM workflow_instances "
                                                 "GROUP BY case_no"))
    assert reached == dict.fromkeys(case_nos, 1)
    assert cluster.queue_depths(suffixes=(".dead",))[dead] == 0


class Subscribers:
    """Watches a queue's consumer count on one connection (a passive declare per look)."""

    def __init__(self, broker_url: str, queue: str):
        self.broker_url, self.queue = broker_url, queue

    def __enter__(self):
        import pika

        from services.common.bus.deadletters import pika_parameters
        self.connection = pika.BlockingConnection(pika_parameters(self.broker_url))
        self.channel = self.connection.channel()
        return self

    def __exit__(self, *exc):
        self.connection.close()

    def wait_for_one(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.channel.queue_declare(self.queue, passive=True).method.consumer_count < 1:
            assert time.monotonic() < deadline, f"no consumer on {self.queue} after {timeout} s"
            time.sleep(0.002)
