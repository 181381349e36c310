"""A consumer in a crash loop: what happens to the healthy messages it had prefetched.

Every kill -9 of a worker returns the messages its consumer held unacknowledged (up to the
prefetch count, 20), and RabbitMQ (3.10 here) counts that as a delivery. After
``FZT_DELIVERY_LIMIT`` (5) such deliveries the quorum queue dead-letters a message, though
nothing was wrong with it. Nothing is lost — it waits in ``<prefix>.<service>.dead`` for
``fzt dead-letters replay`` — but its case is stuck until an operator replays it.

This test builds a backlog for dispatch, then starts its worker and kills it -9
``FZT_CRASH_LOOP_LIFETIME`` (0.02) s after it says it runs, ``FZT_CRASH_LOOP_KILLS`` (6)
times — a process that dies soon after it subscribes, as with a poison message that crashes
it, an out-of-memory kill or a failing liveness probe — then lets it run, replays what was
dead-lettered (as the operator would) and checks that every case reached dispatch exactly
once. It prints how many healthy messages were dead-lettered on the way (docs/reliability.md).

Opt-in (about 25 s): ``FZT_FAULT_CRASH_LOOP=1 .venv/bin/python -m pytest -s tests/fault/test_crash_loop.py``.
"""
from __future__ import annotations

import os
import time

import pytest

from services.common.bus.deadletters import DeadLetters

from .chaos import call, per_case, wait_quiescent

pytestmark = [pytest.mark.fault, pytest.mark.skipif(
    os.environ.get("FZT_FAULT_CRASH_LOOP", "") != "1", reason="opt-in: FZT_FAULT_CRASH_LOOP=1")]

BACKLOG = int(os.environ.get("FZT_CRASH_LOOP_BACKLOG", "60"))
KILLS = int(os.environ.get("FZT_CRASH_LOOP_KILLS", "6"))
# How long it runs before each kill: about long enough to subscribe and take its prefetch,
# too short to work through it.
LIFETIME = float(os.environ.get("FZT_CRASH_LOOP_LIFETIME", "0.02"))


def test_crash_loop_dead_letters_but_loses_nothing(fault_cluster):
    cluster = fault_cluster
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
    for _ in range(KILLS):  # the crash loop
        cluster.restart("dispatch-worker")
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
    print(f"\ncrash loop: {BACKLOG} messages waiting, worker killed {KILLS} times {LIFETIME} s "
          "after it said it runs; "
          f"(ready, dead) after each kill: {trail}; dead-lettered: {len(letters)} "
          f"({sorted({letter.reason for letter in letters})}); reached dispatch before the replay: "
          f"{len(reached)}")
    assert all(letter.reason.startswith("delivery_limit") for letter in letters)
    assert {letter.case_no for letter in letters} | set(reached) == set(case_nos)  # nothing lost

    DeadLetters(cluster.broker_url, cluster.bus_prefix, "dispatch", var_dir=cluster.var_dir).replay(all=True)
    wait_quiescent(cluster)
    reached = per_case(cluster.query("dispatch", "SELECT case_no, count(*) FROM workflow_instances "
                                                 "GROUP BY case_no"))
    assert reached == dict.fromkeys(case_nos, 1)
    assert cluster.queue_depths(suffixes=(".dead",))[dead] == 0
