"""Load, chaos and bookkeeping for tests/fault/test_kill_anything.py.

* ``Load``: submitter threads POST citizen requests to intake, each logical request with a
  unique description; an assigner thread assigns a share of the created cases through the
  dispatch API as they appear there. Every HTTP call opens a fresh connection, and a call is
  retried *only* when it failed without a response. A failure after the request was sent is
  ambiguous (the server may have committed before it died), so every attempt of a logical
  request carries the same ``Idempotency-Key``: a retry answers the case the first attempt
  made, if it made one. A second case for one logical request is a failure of the platform.
* ``Chaos``: kills -9 a random process among the eight at random intervals and restarts it
  (``Cluster.restart``: same arguments, waits for /healthz or "worker running").
* ``wait_quiescent``: nothing left to do anywhere (no unsent outbox row, no ready message,
  row counts stable for a while).
* ``Figures``: what the summary prints and docs/reliability.md reports.
"""
from __future__ import annotations

import http.client
import json
import queue
import random
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field

from services.common.config import SERVICES

PROCESSES = [f"{s}-{kind}" for s in SERVICES for kind in ("web", "worker")]
DISTRICTS = ("210902", "210911", "210904", "210903", "210905", "210921", "210922")
DEPARTMENTS = ("zhujian", "gongan")


class NoResponse(Exception):
    """The call ended without an HTTP response; ``sent`` says whether the request may have
    reached the server (False only when the connection was refused)."""

    def __init__(self, error: BaseException, sent: bool):
        super().__init__(f"{type(error).__name__}: {error}")
        self.sent = sent


def call(method: str, url: str, body: dict | None = None, token: str | None = None,
         timeout: float = 15.0) -> tuple[int, dict | None]:
    """One HTTP call on a fresh connection, never retried here: (status, JSON body)."""
    status, _, parsed = exchange(method, url, body, token, timeout)
    return status, parsed


def call_submit(url: str, payload: dict, key: str) -> tuple[int, dict | None, bool]:
    """A submission with its Idempotency-Key: (status, JSON body, whether the answer was the
    case an earlier attempt made, given again)."""
    status, headers, parsed = exchange("POST", url, payload, idempotency_key=key)
    return status, parsed, headers.get("Idempotent-Replayed") == "true"


def exchange(method: str, url: str, body: dict | None = None, token: str | None = None,
             timeout: float = 15.0, idempotency_key: str | None = None):
    """(status, response headers, JSON body) of one call on a fresh connection."""
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": "application/json", "Connection": "close"}
    data = None
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json; charset=utf-8"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as err:  # refused (process down): the request never left
            raise NoResponse(err, sent=False) from None
        try:
            conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                         body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise NoResponse(err, sent=True) from None
    finally:
        conn.close()
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = {"raw": payload[:300].decode("utf-8", "replace")}
    return response.status, response.headers, parsed


@dataclass
class Submission:
    """One logical request: what the citizen meant to send once."""

    index: int
    description: str
    key: str = field(default_factory=lambda: str(uuid.uuid4()))  # Idempotency-Key of every attempt
    attempts: int = 0
    refused: int = 0      # attempts that never reached the server
    ambiguous: int = 0    # attempts sent but unanswered: may have committed
    status: int | None = None
    case_no: str | None = None
    answer: dict | None = None
    replayed: bool = False  # the answer was the first attempt's case, given again


@dataclass
class Assignment:
    case_no: str
    department: str
    attempts: int = 0
    ambiguous: int = 0
    outcome: str = ""     # ok | ok_after_ambiguous | error <status>
    answers: list = field(default_factory=list)


class Load:
    def __init__(self, cluster, requests: int, run_tag: str, rng: random.Random,
                 submitters: int = 2, assign_share: float = 0.5, rate: float = 0.0,
                 deadline: float = 900.0):
        self.cluster = cluster
        self.rng = rng
        self.submissions = [Submission(i, f"故障演练诉求 {run_tag}-{i:05d}：小区楼道灯损坏，夜间出行不便")
                            for i in range(requests)]
        self.assignments: dict[str, Assignment] = {}
        self.assign_share = assign_share
        self.submitters = submitters
        self.deadline = time.monotonic() + deadline
        self.token = cluster.token("dispatch", "admin")
        self._next = iter(self.submissions)
        self._next_lock = threading.Lock()
        self._to_assign: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []
        self.rate = rate  # logical requests per second over all submitters; 0: flat out
        self.started = time.monotonic()
        self.submitted_by: float | None = None  # seconds from start to the last submission's answer

    # -- running ----------------------------------------------------------------------

    def start(self):
        self.started = time.monotonic()
        for n in range(self.submitters):
            self.threads.append(self._thread(self._submit_loop, f"submit-{n}"))
        self._assigner = self._thread(self._assign_loop, "assign")
        return self

    def join(self):
        for thread in self.threads:
            thread.join()
        self.submitted_by = time.monotonic() - self.started
        self._to_assign.put(None)
        self._assigner.join()

    def _thread(self, target, name):
        def run():
            try:
                target()
            except Exception as err:  # reported in the figures, fails the test
                self.errors.append(f"{name}: {type(err).__name__}: {err}")
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def _take(self):
        with self._next_lock:
            return next(self._next, None)

    def _submit_loop(self):
        url = self.cluster.url("intake", "/api/v1/requests")
        while (item := self._take()) is not None:
            if self.rate:  # request i is due at i / rate seconds
                time.sleep(max(0.0, self.started + item.index / self.rate - time.monotonic()))
            payload = {"district": self.rng.choice(DISTRICTS), "name": "测试员", "phone": "13800138000",
                       "description": item.description, "category": "housing",
                       "location": f"演练路{item.index}号"}
            while True:
                self._check_deadline(f"submitting request {item.index}")
                item.attempts += 1
                try:
                    item.status, item.answer, item.replayed = call_submit(url, payload, item.key)
                except NoResponse as err:
                    if err.sent:
                        item.ambiguous += 1
                    else:
                        item.refused += 1
                    time.sleep(0.1)
                    continue  # retried only when there was no response
                break
            if item.status == 201:
                item.case_no = item.answer["case_no"]
                if self.rng.random() < self.assign_share:
                    self._to_assign.put(Assignment(item.case_no, self.rng.choice(DEPARTMENTS)))

    def _assign_loop(self):
        while (job := self._to_assign.get()) is not None:
            self.assignments[job.case_no] = job
            self._assign(job)

    def _assign(self, job: Assignment):
        case_url = self.cluster.url("dispatch", f"/api/v1/cases/{job.case_no}")
        while True:  # until dispatch has the case and it waits for assignment
            self._check_deadline(f"{job.case_no} in dispatch")
            try:
                status, body = call("GET", case_url, token=self.token)
            except NoResponse:
                time.sleep(0.1)
                continue
            if status == 200 and any(w["status"] == "assign" for w in body["waiting"]):
                break
            if status not in (200, 404):
                job.answers.append((status, body))
            time.sleep(0.05)
        while True:
            self._check_deadline(f"assigning {job.case_no}")
            job.attempts += 1
            try:
                status, body = call("POST", f"{case_url}/assign", {"department": job.department},
                                    token=self.token)
            except NoResponse as err:
                job.ambiguous += err.sent
                time.sleep(0.1)
                continue
            job.answers.append((status, (body or {}).get("error")))
            if status == 200:
                job.outcome = "ok"
            elif status == 404 and job.ambiguous:
                job.outcome = "ok_after_ambiguous"  # an unanswered attempt did assign it
            else:
                job.outcome = f"error {status}"
            return

    def _check_deadline(self, what):
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"load deadline passed while {what}")


class Chaos:
    """kill -9 ``kills`` times a process (random order, each process as often as the others)
    after a random gap, and restart it after a random downtime, in the background; a share
    of the killed workers is killed once more soon after it runs again (not counted in
    ``kills``, counted in ``rekills`` and ``log``)."""

    def __init__(self, cluster, kills: int, rng: random.Random, gap=(0.3, 1.5), downtime=(0.0, 0.5),
                 rekill_share: float = 0.5, relay_share: float = 0.5,
                 relay_services=("intake", "dispatch"), processes=PROCESSES):
        self.cluster = cluster
        self.kills = kills
        self.rng = rng
        self.gap = gap
        self.downtime = downtime
        self.processes = list(processes)
        self.rekill_share = rekill_share  # of worker kills followed by a second one at restart
        self.rekills = 0
        self.relay_share = relay_share  # of those workers' kills aimed at a relay mid-batch
        self.relay_services = relay_services
        self.relay_kills = Counter()  # "mid-batch" (rows were locked) | "missed" (none seen)
        self.log: list[tuple[float, str, float]] = []  # (at, process, seconds until ready again)
        self.errors: list[str] = []
        self._down: set[str] = set()
        self._bag: list[str] = []
        self._lock = threading.Lock()
        self._restarters: list[threading.Thread] = []
        self.started = time.monotonic()

    def start(self):
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.thread.start()
        return self

    def join(self):
        self.thread.join()
        for thread in self._restarters:
            thread.join()

    def _run(self):
        for _ in range(self.kills):
            time.sleep(self.rng.uniform(*self.gap))
            with self._lock:
                name = self._pick()
                self._down.add(name)
            relay = (name.endswith("-worker") and name.split("-")[0] in self.relay_services
                     and self.rng.random() < self.relay_share)
            self.kill_and_restart(name, self.rng.uniform(*self.downtime), background=True,
                                  when_relaying=relay)

    def _pick(self) -> str:
        """The processes in a random order, each as often as the others; one already down
        (still restarting) waits for the next round."""
        if not [p for p in self._bag if p not in self._down]:
            self._bag = [p for p in self._bag if p in self._down]
            fresh = self.processes[:]
            self.rng.shuffle(fresh)
            self._bag += fresh
        name = next(p for p in self._bag if p not in self._down)
        self._bag.remove(name)
        return name

    def kill_and_restart(self, name: str, downtime: float = 0.0, background: bool = False,
                         when_relaying: bool = False):
        if when_relaying:
            self.relay_kills[relay_in_flight(self.cluster, name.split("-")[0])] += 1
        killed_at = time.monotonic()
        self.cluster.kill(name)

        def restart():
            try:
                time.sleep(downtime)
                self.cluster.restart(name)
                self.log.append((killed_at - self.started, name, time.monotonic() - killed_at))
                if name.endswith("-worker") and self.rng.random() < self.rekill_share:
                    # Again while it drains the backlog that built up while it was down:
                    # messages prefetched, applied but not yet acknowledged, relay batches.
                    time.sleep(self.rng.uniform(0.02, 0.5))
                    again = time.monotonic()
                    self.cluster.kill(name)
                    self.cluster.restart(name)
                    self.log.append((again - self.started, name, time.monotonic() - again))
                    self.rekills += 1
            except Exception as err:
                self.errors.append(f"restarting {name}: {type(err).__name__}: {err}")
            finally:
                with self._lock:
                    self._down.discard(name)
        if background:
            thread = threading.Thread(target=restart, name=f"restart-{name}", daemon=True)
            thread.start()
            self._restarters.append(thread)
        else:
            restart()

    def per_process(self) -> dict:
        return dict(sorted(Counter(name for _, name, _ in self.log).items()))


def relay_in_flight(cluster, service: str, timeout: float = 5.0) -> str:
    """Return as soon as ``service``'s outbox relay is in the middle of a batch — it holds
    unsent rows locked (``FOR UPDATE``) while it publishes them and waits for the broker's
    confirms; it marks them sent and commits only after that — so that a kill now makes it
    publish those messages again after the restart ("mid-batch"); "missed" if no batch was
    seen within ``timeout`` seconds. Probing locks the free unsent rows for a moment (the
    relay skips them meanwhile: a delay, nothing else)."""
    from sqlalchemy import text
    probe = text("SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL) - (SELECT count(*) FROM "
                 "(SELECT id FROM outbox WHERE sent_at IS NULL FOR UPDATE SKIP LOCKED) free)")
    deadline = time.monotonic() + timeout
    with cluster.engine(service).connect() as conn:
        while time.monotonic() < deadline:
            locked = conn.execute(probe).scalar()
            conn.rollback()
            if locked:
                return "mid-batch"
            time.sleep(0.002)
    return "missed"


# ---------------------------------------------------------------------------- reading state


def backlog(cluster) -> dict:
    """What is still to be done: unsent outbox rows per service and ready messages per
    service queue; plus the row counts that change while anything is applied."""
    unsent = cluster.count_rows("outbox", "sent_at IS NULL")
    depths = cluster.queue_depths(suffixes=("",))
    moving = {s: (cluster.scalar(s, "SELECT count(*) FROM inbox"),
                  cluster.scalar(s, "SELECT count(*) FROM outbox"),
                  cluster.scalar(s, "SELECT coalesce(sum(version), 0) FROM workflow_instances"))
              for s in SERVICES}
    return {"unsent": unsent, "ready": {k: v for k, v in depths.items() if not k.endswith(".unrouted")},
            "moving": moving}


def wait_quiescent(cluster, stable_for: float = 3.0, stalled_after: float = 120.0) -> float:
    """Wait until no outbox row is unsent, no service queue holds a ready message and no
    row count moved for ``stable_for`` seconds; returns the seconds waited. TimeoutError if
    work is left but nothing moved for ``stalled_after`` seconds (a stuck platform)."""
    started = time.monotonic()
    last, since = None, started
    while True:
        state = backlog(cluster)
        idle = not any(state["unsent"].values()) and not any(state["ready"].values())
        now = time.monotonic()
        if state != last:
            last, since = state, now
        elif idle and now - since >= stable_for:
            return now - started
        elif now - since > stalled_after:
            raise TimeoutError(f"nothing moved for {stalled_after}s with work left: {state}")
        time.sleep(0.25)


def per_case(rows) -> dict:
    """{case_no: count} from rows of (case_no, count)."""
    return {case_no: count for case_no, count in rows}


def dead_letters(cluster) -> dict:
    """Every dead or unrouted letter, by queue, as (type, case number, reason)."""
    from services.common.bus.deadletters import DeadLetters
    found = {}
    for name, depth in cluster.queue_depths(suffixes=(".dead",)).items():
        if not depth:
            continue
        service = name.removeprefix(cluster.bus_prefix + ".").removesuffix(".dead")
        listing = DeadLetters(cluster.broker_url, cluster.bus_prefix, service,
                              var_dir=cluster.var_dir).list(limit=None)
        found[name] = [(letter.type, letter.case_no, letter.reason) for letter in listing.letters]
    return found


def replay_delivery_limit_letters(cluster) -> list:
    """Replay (as an operator would: ``fzt dead-letters replay <service> --all``) the letters
    RabbitMQ dead-lettered because their consumer died ``delivery_limit`` times while holding
    them: a kill -9 returns the unacknowledged messages and counts as a delivery. Returns
    them as (service, type, case number, reason); other letters stay for the checks."""
    from services.common.bus.deadletters import DeadLetters
    replayed = []
    for service in SERVICES:
        tool = DeadLetters(cluster.broker_url, cluster.bus_prefix, service, var_dir=cluster.var_dir)
        if not cluster.queue_depths(suffixes=(".dead",)).get(tool.queue):
            continue
        letters = tool.list(limit=None).letters
        if letters and all(letter.reason.startswith("delivery_limit") for letter in letters):
            tool.replay(all=True)
            replayed += [(service, letter.type, letter.case_no, letter.reason) for letter in letters]
    return replayed


def log_errors(cluster) -> dict:
    """ERROR lines per process log (connection errors after a peer was killed, dead-lettering,
    a worker loop that crashed and restarted), each with the exception that ended its
    traceback, counted: reported, not judged."""
    found = {}
    for name in PROCESSES:
        lines = cluster.log_text(name).splitlines()
        seen = Counter()
        for n, line in enumerate(lines):
            if " ERROR " not in line:
                continue
            cause = ""
            for following in lines[n + 1:n + 200]:
                if following[:4].isdigit():  # the next log record: the traceback ended
                    break
                if following and not following[0].isspace() and not following.startswith(
                        ("Traceback", "During handling", "The above exception")):
                    cause = following.strip()
            seen[(line.split(" ERROR ", 1)[1][:100] + (f" ← {cause[:160]}" if cause else ""))] += 1
        if seen:
            found[name] = seen.most_common(5)
    return found
