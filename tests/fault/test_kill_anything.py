"""Kill anything: the four services as eight processes under load, killed -9 at random.

Load (tests/fault/chaos.py): citizen requests through intake's API (a unique description
per logical request; a call is retried only when it got no response), and half of the cases
assigned through dispatch's API as they appear there. Chaos, meanwhile: every process of the
eight (intake-web, intake-worker, dispatch-web, dispatch-worker, … — a worker is the bus
consumer, the outbox relay and the timer sweep together) is killed -9 in turn, in a random
order, after random gaps, and restarted; half of the intake and dispatch worker kills wait
until the outbox relay holds a batch it has published but not yet marked sent, and half of
the killed workers are killed once more while they drain their backlog. Then, once every
process runs again and nothing is left to do, the databases must show:

* every accepted request is a case in intake, exactly once — a submission retried after a
  call that got no answer carries the same ``Idempotency-Key`` and gets the first case back,
  so a second case for one logical request is a failure, whatever its cause;
* every case has exactly one intake and one dispatch workflow instance, and each message
  between them was applied exactly once (one 登记诉求 entry per case in dispatch; per
  assignment one dispatch.case_assigned outbox row, one 分拨交办 entry in dispatch, one
  已交办 entry and status 'assigned' in intake; inbox rows = messages sent);
* an unassigned case waits with exactly one 'assign' work item, an assigned one with one
  'accept' item; no instance is stuck (running / error) and no timer is overdue;
* no outbox row unsent, every dead-letter queue and the unrouted queue empty — except
  messages RabbitMQ dead-lettered because their consumer was killed ``FZT_DELIVERY_LIMIT``
  times while holding them: those are replayed, as an operator would, and counted.

Timers: the platform clock is moved past every deadline (``fzt clock advance``) and the
dispatch worker is killed -9 in the middle of the timer sweep; every case must then have
exactly one dispatch.deadline_missed (stage assign or accept) and exactly one supervision
instance with one 'urge' work item.

The defaults (120 requests, 12 kills) take about a minute on two cores. The longer manual
run whose figures docs/reliability.md reports:

    FZT_FAULT_REQUESTS=1000 FZT_FAULT_KILLS=80 FZT_FAULT_TIMER_KILLS=3 \
    FZT_FAULT_REPORT=var/fault-report.json .venv/bin/python -m pytest -m fault -s tests/fault

Other knobs: FZT_FAULT_RATE (6 requests/s), FZT_FAULT_ASSIGN_SHARE (0.5),
FZT_FAULT_SUBMITTERS (2 threads), FZT_FAULT_SEED (the same random choices again; the
timing, and so the exact kill points, differ from run to run).
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.common.config import SERVICES

from .chaos import (
    Chaos,
    Load,
    dead_letters,
    log_errors,
    per_case,
    replay_delivery_limit_letters,
    wait_quiescent,
)

pytestmark = pytest.mark.fault

REQUESTS = int(os.environ.get("FZT_FAULT_REQUESTS", "120"))
KILLS = int(os.environ.get("FZT_FAULT_KILLS", "12"))
TIMER_KILLS = int(os.environ.get("FZT_FAULT_TIMER_KILLS", "1"))
ASSIGN_SHARE = float(os.environ.get("FZT_FAULT_ASSIGN_SHARE", "0.5"))
SUBMITTERS = int(os.environ.get("FZT_FAULT_SUBMITTERS", "2"))
RATE = float(os.environ.get("FZT_FAULT_RATE", "6"))  # logical requests per second
SEED = int(os.environ.get("FZT_FAULT_SEED") or secrets.randbelow(10**9))
REPORT = os.environ.get("FZT_FAULT_REPORT", "")
SWEEP_SLACK = timedelta(seconds=5)  # the sweep runs every second; a timer this late is stuck


def test_kill_anything(fault_cluster):
    cluster = fault_cluster
    rng = random.Random(SEED)
    started = time.monotonic()
    problems: list[str] = []
    figures = {"seed": SEED, "requests": REQUESTS, "kills_planned": KILLS}
    lost, duplicated = {}, {}  # what → how many cases (the figures the summary reports)
    print(f"\nfault run: seed {SEED}, {REQUESTS} requests, {KILLS} kills, prefix {cluster.bus_prefix}")

    # -- load under chaos ---------------------------------------------------------------
    load = Load(cluster, REQUESTS, f"{SEED}", rng, submitters=SUBMITTERS,
                assign_share=ASSIGN_SHARE, rate=RATE).start()
    # The kills spread over the planned load time: a random gap of 0.3 to 1.7 times the mean.
    mean_gap = (REQUESTS / RATE if RATE else 10.0) / max(KILLS, 1)
    chaos = Chaos(cluster, KILLS, random.Random(SEED + 1), gap=(0.3 * mean_gap, 1.7 * mean_gap)).start()
    load.join()
    chaos.join()
    load_seconds = time.monotonic() - started
    problems += load.errors + chaos.errors
    for name, process in cluster.processes.items():  # a process that died on its own
        if process.poll() is not None:
            problems.append(f"{name} exited by itself with {process.returncode}")
            cluster.restart(name)
    figures["quiescent_after_load_s"] = round(wait_quiescent(cluster), 1)
    # A message whose consumer was killed -9 `delivery_limit` (5) times while holding it is
    # dead-lettered by RabbitMQ: not lost, but waiting for an operator. Replay those, count them.
    figures["replayed_after_delivery_limit"] = replayed = replay_delivery_limit_letters(cluster)
    if replayed:
        print(f"replayed {len(replayed)} letters dead-lettered after the delivery limit: {replayed[:5]}")
        wait_quiescent(cluster)

    # -- the requests: lost, duplicated ---------------------------------------------------
    cases = cluster.query("intake", "SELECT case_no, description, status FROM citizen_requests")
    by_description = {}
    for case_no, description, status in cases:
        by_description.setdefault(description, []).append(case_no)
    accepted = [s for s in load.submissions if s.status == 201]
    refused = [s for s in load.submissions if s.status != 201]
    missing = [s for s in accepted if s.case_no not in by_description.get(s.description, [])]
    several = {s.index: by_description[s.description] for s in load.submissions
               if len(by_description.get(s.description, [])) > 1}
    lost["accepted requests"] = len(missing)
    duplicated["cases per logical request"] = sum(len(v) - 1 for v in several.values())
    phantom = [s.index for s in refused if by_description.get(s.description)]
    strangers = [c for c, d, _ in cases if d not in {s.description for s in load.submissions}]
    if missing:
        problems.append(f"{len(missing)} accepted requests have no case: {[s.index for s in missing][:10]}")
    if several:
        problems.append(f"requests with several cases (despite their Idempotency-Key): {list(several)[:10]}")
    if refused:
        answers = [(s.index, s.status, s.answer) for s in refused]
        problems.append(f"requests answered with an error: {answers[:5]}")
    if phantom or strangers:
        problems.append(f"cases nobody was told about: {phantom[:10]} {strangers[:10]}")
    case_nos = sorted(c for c, _, _ in cases)

    # -- every case exactly once in every service that should know it ---------------------
    def expect_each(what, counts: dict, expected: dict | int, tally: str = ""):
        """Each case's count must be as expected; ``tally``: count the cases with fewer as
        lost and those with more as duplicated under that name."""
        want = (lambda c: expected) if isinstance(expected, int) else expected.__getitem__
        wrong = {c: counts.get(c, 0) for c in case_nos if counts.get(c, 0) != want(c)}
        if wrong:
            problems.append(f"{what}: {len(wrong)} cases wrong, e.g. {dict(list(wrong.items())[:5])}")
        if tally:
            lost[tally] = sum(1 for c, n in wrong.items() if n < want(c))
            duplicated[tally] = sum(1 for c, n in wrong.items() if n > want(c))
        return wrong

    def counts(service, sql, **params):
        return per_case(cluster.query(service, sql, **params))

    instances = "SELECT case_no, count(*) FROM workflow_instances WHERE process_id = :p GROUP BY case_no"
    expect_each("intake instances per case", counts("intake", instances, p="intake"), 1)
    expect_each("dispatch instances per case", counts("dispatch", instances, p="dispatch"), 1,
                tally="intake.case_submitted → dispatch instance")
    expect_each("intake.case_submitted outbox rows per case", counts(
        "intake", "SELECT envelope->>'case_no', count(*) FROM outbox WHERE routing_key = "
        "'intake.case_submitted' GROUP BY 1"), 1)
    timeline = "SELECT case_no, count(*) FROM timeline WHERE title = :t GROUP BY case_no"
    expect_each("dispatch 登记诉求 entries per case (case_submitted applied once)",
                counts("dispatch", timeline, t="登记诉求"), 1)

    assigned_rows = counts("dispatch", "SELECT envelope->>'case_no', count(*) FROM outbox "
                                       "WHERE routing_key = 'dispatch.case_assigned' GROUP BY 1")
    meant = {c for c, job in load.assignments.items() if job.outcome.startswith("ok")}
    failed_assign = {c: (job.outcome, job.answers) for c, job in load.assignments.items()
                     if not job.outcome.startswith("ok")}
    if failed_assign:
        problems.append(f"assignments that failed: {dict(list(failed_assign.items())[:5])}")
    assigned = set(assigned_rows)
    if assigned != meant:
        problems.append(f"assigned in dispatch {len(assigned)} ≠ assignments answered ok {len(meant)}: "
                        f"only in dispatch {sorted(assigned - meant)[:5]}, "
                        f"only answered {sorted(meant - assigned)[:5]}")
    expect_each("dispatch.case_assigned outbox rows per case",
                assigned_rows, {c: int(c in assigned) for c in case_nos})
    items = "SELECT case_no, count(*) FROM work_items WHERE task_name = :t GROUP BY case_no"
    expect_each("'assign' work items per case", counts("dispatch", items, t="assign"),
                {c: int(c not in assigned) for c in case_nos})
    expect_each("'accept' work items per case", counts("dispatch", items, t="accept"),
                {c: int(c in assigned) for c in case_nos})
    status = {c: s for c, _, s in cases}
    wrong_status = [c for c in case_nos if status[c] != ("assigned" if c in assigned else "submitted")]
    if wrong_status:
        problems.append(f"intake status wrong for {len(wrong_status)} cases, e.g. "
                        f"{[(c, status[c], c in assigned) for c in wrong_status[:5]]}")
    expect_each("dispatch 分拨交办 entries per case (assigned once)",
                counts("dispatch", timeline, t="分拨交办"), {c: int(c in assigned) for c in case_nos})
    expect_each("intake 已交办 entries per case (case_assigned applied once)",
                counts("intake", timeline, t="已交办"), {c: int(c in assigned) for c in case_nos},
                tally="dispatch.case_assigned → intake")

    def inbox_matches_outbox(sender, receiver, message_type):
        sent = cluster.scalar(sender, "SELECT count(*) FROM outbox WHERE routing_key = :k",
                              k=message_type)
        applied = cluster.scalar(receiver, "SELECT count(*) FROM inbox WHERE routing_key = :k",
                                 k=message_type)
        if sent != applied:
            problems.append(f"{message_type}: {sent} sent by {sender}, {applied} applied by {receiver}")
        return applied

    figures["messages_applied"] = {
        "intake.case_submitted": inbox_matches_outbox("intake", "dispatch", "intake.case_submitted"),
        "dispatch.case_assigned": inbox_matches_outbox("dispatch", "intake", "dispatch.case_assigned"),
    }
    check_nothing_left(cluster, problems, "after the load")
    figures["load"] = {
        "logical_requests": len(load.submissions),
        "cases_in_intake": len(case_nos),
        "submission_attempts": sum(s.attempts for s in load.submissions),
        "attempts_refused": sum(s.refused for s in load.submissions),
        "attempts_unanswered": sum(s.ambiguous for s in load.submissions),
        # answered with the case an unanswered earlier attempt had made (Idempotency-Key)
        "answers_replayed": sum(s.replayed for s in load.submissions),
        "assignments": len(load.assignments),
        "assign_unanswered": sum(j.ambiguous for j in load.assignments.values()),
        "assigned_in_dispatch": len(assigned),
        "submitted_by_s": round(load.submitted_by, 1),
        "seconds": round(load_seconds, 1),
    }
    figures["faults"] = {"total": len(chaos.log), "per_process": chaos.per_process(),
                         "worker_killed_again_while_draining": chaos.rekills,
                         "relay_kills": dict(chaos.relay_kills),
                         "at_s": [round(at, 1) for at, _, _ in sorted(chaos.log)],
                         "restart_s_max": round(max((t for *_, t in chaos.log), default=0), 1)}

    # -- timers: every deadline fires once, with the dispatch worker killed mid-sweep -----
    figures["timers"] = fire_deadlines(cluster, case_nos, assigned, problems, rng, lost, duplicated)
    figures["lost"], figures["duplicated"] = lost, duplicated
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["problems"] = len(problems)
    figures["log_errors"] = log_errors(cluster)

    print(summary(figures))
    if REPORT:
        Path(REPORT).parent.mkdir(parents=True, exist_ok=True)
        Path(REPORT).write_text(json.dumps({**figures, "problem_list": problems, **machine()},
                                           ensure_ascii=False, indent=2))
    assert not problems, "\n".join(problems)


def fire_deadlines(cluster, case_nos, assigned, problems, rng, lost, duplicated) -> dict:
    """Move the clock past every deadline, kill the dispatch worker during the sweep, check."""
    total = len(case_nos)
    due = "SELECT max(next_timer_at) FROM workflow_instances WHERE status = 'waiting'"
    latest = cluster.scalar("dispatch", due)
    now = datetime.now(timezone.utc) + _offset(cluster)
    minutes = max(1, math.ceil((latest - now).total_seconds() / 60) + 1)
    # 1 working day from now: 1d on a weekday before a working day, more before weekends
    # and holidays; the minutes to the latest deadline make it right on any day.
    cluster.fzt("clock", "advance", f"{minutes}m")
    missed = "SELECT count(*) FROM outbox WHERE routing_key = 'dispatch.deadline_missed'"
    kills = []
    for k in range(TIMER_KILLS):
        # kill once some (k+1)/(n+1)-th of the deadlines have been reported
        target = max(1, total * (k + 1) // (TIMER_KILLS + 1) - rng.randrange(0, max(1, total // 10)))
        deadline = time.monotonic() + 60 + total * 0.2
        while (fired := cluster.scalar("dispatch", missed)) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        cluster.kill("dispatch-worker")
        kills.append(f"{fired}/{total}")
        cluster.restart("dispatch-worker")
    quiet = wait_quiescent(cluster)

    def counts(service, sql, **params):
        return per_case(cluster.query(service, sql, **params))

    reports = cluster.query("dispatch", "SELECT envelope->>'case_no', envelope->'body'->>'stage' FROM outbox "
                                        "WHERE routing_key = 'dispatch.deadline_missed'")
    by_case = {}
    for case_no, stage in reports:
        by_case.setdefault(case_no, []).append(stage)
    wrong = {c: by_case.get(c, []) for c in case_nos
             if by_case.get(c, []) != ["accept" if c in assigned else "assign"]}
    if wrong:
        problems.append(f"deadline_missed per case: {len(wrong)} wrong, e.g. {dict(list(wrong.items())[:5])}")
    lost["timer → dispatch.deadline_missed"] = sum(1 for c in case_nos if not by_case.get(c))
    duplicated["timer → dispatch.deadline_missed"] = sum(1 for c in case_nos if len(by_case.get(c, [])) > 1)
    per_instance = counts("supervision", "SELECT case_no, count(*) FROM workflow_instances "
                                         "WHERE process_id = 'supervision' GROUP BY case_no")
    urges = counts("supervision", "SELECT case_no, count(*) FROM work_items WHERE task_name = 'urge' "
                                  "GROUP BY case_no")
    for what, found in (("supervision instances", per_instance), ("'urge' work items", urges)):
        off = {c: found.get(c, 0) for c in case_nos if found.get(c, 0) != 1}
        lost[f"deadline_missed → {what}"] = sum(1 for n in off.values() if n < 1)
        duplicated[f"deadline_missed → {what}"] = sum(1 for n in off.values() if n > 1)
        if off:
            problems.append(f"{what} per case: {len(off)} wrong, e.g. {dict(list(off.items())[:5])}")
    sent = cluster.scalar("dispatch", missed)
    applied = cluster.scalar("supervision", "SELECT count(*) FROM inbox WHERE routing_key = "
                                            "'dispatch.deadline_missed'")
    if sent != applied:
        problems.append(f"dispatch.deadline_missed: {sent} sent, {applied} applied by supervision")
    check_nothing_left(cluster, problems, "after the timers")
    return {"clock_advanced_minutes": minutes, "dispatch_worker_killed_at": kills,
            "deadline_missed": sent, "urge_items": sum(urges.values()), "quiescent_s": round(quiet, 1)}


def check_nothing_left(cluster, problems, when):
    """No unsent outbox row, no stuck instance, no overdue timer, no dead or unrouted letter."""
    unsent = {s: n for s, n in cluster.count_rows("outbox", "sent_at IS NULL").items() if n}
    if unsent:
        problems.append(f"{when}: unsent outbox rows {unsent}")
    not_idle = "status NOT IN ('waiting', 'complete')"
    stuck = {s: n for s, n in cluster.count_rows("workflow_instances", not_idle).items() if n}
    for service in stuck:
        examples = cluster.query(service, "SELECT case_no, status, error FROM workflow_instances "
                                          f"WHERE {not_idle} LIMIT 3")
        problems.append(f"{when}: {stuck[service]} {service} instances running or in error, "
                        f"e.g. {examples}")
    offset = _offset(cluster)
    overdue = {}
    for service in SERVICES:
        now = datetime.now(timezone.utc) + offset - SWEEP_SLACK
        n = cluster.scalar(service, "SELECT count(*) FROM workflow_instances WHERE status = 'waiting' "
                                    "AND next_timer_at <= :now", now=now)
        if n:
            overdue[service] = n
    if overdue:
        problems.append(f"{when}: timers overdue and not fired {overdue}")
    letters = dead_letters(cluster)
    if letters:
        problems.append(f"{when}: dead or unrouted letters {letters}")


def _offset(cluster):
    return timedelta(seconds=cluster.scalar("dispatch", "SELECT coalesce(max(seconds), 0) FROM clock_offset"))




def summary(f) -> str:
    load, faults, timers = f["load"], f["faults"], f["timers"]
    lines = [
        "",
        "=== fault run summary ===",
        f"seed {f['seed']}: {load['logical_requests']} logical requests → {load['cases_in_intake']} cases "
        f"({load['submission_attempts']} attempts, {load['attempts_refused']} refused, "
        f"{load['attempts_unanswered']} unanswered, {load['answers_replayed']} answered by replay), "
        f"{load['assigned_in_dispatch']} assigned",
        f"faults injected: {faults['total']} {faults['per_process']} between "
        f"{' and '.join(map(str, faults['at_s'][::max(1, len(faults['at_s']) - 1)][:2]))} s "
        f"(submissions done at {load['submitted_by_s']} s); "
        f"restarts took ≤ {faults['restart_s_max']} s; "
        f"workers killed again while draining: {faults['worker_killed_again_while_draining']}; "
        f"kills aimed at a relay batch: {faults['relay_kills']}",
        f"dispatch worker killed during the timer sweep at {timers['dispatch_worker_killed_at']} "
        "deadlines reported",
        f"lost: {sum(f['lost'].values())} {f['lost']}",
        f"duplicated: {sum(f['duplicated'].values())} {f['duplicated']}",
        f"messages applied: {f['messages_applied']}; dead-lettered after the delivery limit and "
        f"replayed: {len(f['replayed_after_delivery_limit'])}",
        f"timers: {timers['deadline_missed']} deadline_missed for {load['cases_in_intake']} cases, "
        f"{timers['urge_items']} urge items",
        f"quiescent {f['quiescent_after_load_s']} s after the load ({load['seconds']} s); total "
        f"{f['seconds']} s; problems: {f['problems']}",
        *(f"  {name} log ERROR lines: {lines}" for name, lines in f["log_errors"].items()),
    ]
    return "\n".join(lines)


def machine() -> dict:
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.system()} {platform.release()} {platform.machine()}, "
                       f"{os.cpu_count()} CPUs, Python {platform.python_version()}"}
