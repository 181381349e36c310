"""Retention: archived cases' personal data anonymised after a set period (docs/privacy.md).

A case is *archived* in a service when every workflow instance it has there has ended
(``complete`` or ``cancelled``), nothing happened to it for ``FZT_RETENTION_DAYS`` days (the
latest ``updated_at`` of those instances, on the platform clock), and the service's own rule
agrees (intake: the request is closed, rejected, merged or handled). Each service decides from
its own data; services never ask each other.

Anonymising a case, in one transaction per case:

* in workflow state (task data, deltas, event payloads), work-item summaries and sent outbox
  messages: the values of ``name``, ``phone``, ``location`` and ``email`` become ``ANONYMISED``,
  and every other text has phone, ID-card numbers, e-mail addresses and the citizen's own
  name and phone masked (``privacy.mask_personal``, the rule of every public page);
* timeline details: masked the same way;
* the service's own tables: its ``personal_data`` hook (``ServiceDefinition.personal_data``);
* one ``privacy.anonymise`` audit entry: which fields and which records changed.

Statistics stay: district, category, channel, departments, every date and status. The run
is idempotent: a case with an audit entry newer than its last activity is skipped, and a
case where nothing changed gets no entry. ``fzt privacy anonymise [--dry-run]`` runs it by
hand; the worker runs it once a day (``Schedule``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta, timezone

from sqlalchemy import case, func, select

from . import audit
from .models import AuditEntry, OutboxMessage, TimelineEntry, WorkflowInstance, WorkItem
from .web.privacy import mask_personal

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 3 * 365
ANONYMISED = "［已匿名］"
ACTION = "privacy.anonymise"
ACTOR = "fzt-retention"
FINISHED = ("complete", "cancelled")
PERSONAL_KEYS = frozenset({"name", "phone", "location", "email"})  # the whole value goes
DATA_KEYS = frozenset({"data", "internal_data", "delta", "payload"})  # where a workflow keeps case data
RUN_EVERY = timedelta(days=1)


class Scrubber:
    """Anonymises one case's values; ``changed`` collects the keys whose values changed."""

    def __init__(self, name=None, phone=None):
        self.name = name if name and name != ANONYMISED else None
        self.phone = phone if phone and phone != ANONYMISED else None
        self.changed: set[str] = set()

    def text(self, key: str, value):
        """Free text: personal numbers, e-mails and the citizen's name and phone masked."""
        if not isinstance(value, str):
            return value
        masked = mask_personal(value, name=self.name, phone=self.phone)
        if masked != value:
            self.changed.add(key)
        return masked

    def personal(self, key: str, value):
        """A value that is personal as a whole (a name, a phone number, an address)."""
        if not value or value == ANONYMISED:
            return value
        self.changed.add(key)
        return ANONYMISED

    def data(self, value, key: str = "text"):
        """Case data (task data, message bodies, summaries), nested dicts and lists included."""
        if isinstance(value, dict):
            return {k: self.personal(k, v) if k in PERSONAL_KEYS and isinstance(v, str) else self.data(v, k)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v, key) for v in value]
        return self.text(key, value)

    def state(self, value):
        """A serialized workflow: only its data parts; ids, specs and states are left alone."""
        if isinstance(value, dict):
            return {k: self.data(v) if k in DATA_KEYS else self.state(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.state(v) for v in value]
        return value


def contact_in(state: dict) -> tuple[str | None, str | None]:
    """The citizen's name and phone as the case data holds them (workflow data first)."""
    parts = [state.get("data") or {}, *((t.get("data") or {}) for t in (state.get("tasks") or {}).values())]
    for data in parts:
        if isinstance(data, dict) and (data.get("name") or data.get("phone")):
            return data.get("name"), data.get("phone")
    return None, None


@dataclass
class Anonymised:
    case_no: str
    fields: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)


def candidates(session, cutoff) -> list[tuple[str, object]]:
    """(case number, last activity) of cases whose instances all ended before ``cutoff`` and
    that were not anonymised since."""
    last = func.max(WorkflowInstance.updated_at)
    still_open = func.sum(case((WorkflowInstance.status.in_(FINISHED), 0), else_=1))
    ended = session.execute(select(WorkflowInstance.case_no, last).group_by(WorkflowInstance.case_no)
                            .having(still_open == 0, last < cutoff)).all()
    if not ended:
        return []
    done = dict(session.execute(select(AuditEntry.case_no, func.max(AuditEntry.at))
                                .where(AuditEntry.action == ACTION).group_by(AuditEntry.case_no)).all())
    return sorted((no, at) for no, at in ended if no not in done or _aware(done[no]) < _aware(at))


def _aware(value):
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _still_due(session, case_no: str, cutoff) -> bool:
    """``candidates``' rule for one case, checked again inside its own transaction."""
    rows = session.execute(select(WorkflowInstance.status, WorkflowInstance.updated_at)
                           .where(WorkflowInstance.case_no == case_no)).all()
    if not rows or any(status not in FINISHED for status, _ in rows):
        return False
    last = max(_aware(at) for _, at in rows)
    marked = session.scalar(select(func.max(AuditEntry.at)).where(
        AuditEntry.action == ACTION, AuditEntry.case_no == case_no))
    return last < cutoff and (marked is None or _aware(marked) < last)


def anonymise_case(service, uow, case_no: str, cutoff) -> Anonymised | None:
    """Anonymise one case inside ``uow`` (not committed): what changed, or None if the case
    is not (or no longer) due."""
    session = uow.session
    hook = service.definition.personal_data
    # Locked first (PostgreSQL): a second worker waits here, then finds the audit entry.
    instances = session.scalars(select(WorkflowInstance).where(WorkflowInstance.case_no == case_no)
                                .with_for_update()).all()
    if not _still_due(session, case_no, cutoff) or (hook and not hook.archived(session, case_no)):
        return None
    name, phone = hook.contact(session, case_no) if hook else (None, None)
    for instance in instances:
        if name or phone:
            break
        name, phone = contact_in(instance.state or {})
    scrub = Scrubber(name, phone)
    records = []
    for instance in instances:
        new = scrub.state(instance.state)
        if new != instance.state:
            instance.state = new
            records.append("workflow")
    for item in session.scalars(select(WorkItem).where(WorkItem.case_no == case_no)):
        new = scrub.data(item.summary or {})
        if new != item.summary:
            item.summary = new
            records.append("work_items")
    for entry in session.scalars(select(TimelineEntry).where(TimelineEntry.case_no == case_no)):
        new = scrub.text("timeline", entry.detail)
        if new != entry.detail:
            entry.detail = new
            records.append("timeline")
    for message in session.scalars(select(OutboxMessage).where(
            OutboxMessage.sent_at.is_not(None), OutboxMessage.envelope["case_no"].as_string() == case_no)):
        new = {**message.envelope, "body": scrub.data(message.envelope.get("body") or {})}
        if new != message.envelope:
            message.envelope = new
            records.append("outbox")
    if hook:
        records += hook.anonymise(session, case_no, scrub)
    return Anonymised(case_no, sorted(scrub.changed), sorted(set(records)))


def anonymise(service, dry_run: bool = False, days: int | None = None) -> list[Anonymised]:
    """Anonymise every archived case of ``service``; with ``dry_run`` nothing is written.
    Returns what was (or would be) anonymised, one entry per case that had personal data."""
    days = service.settings.retention_days if days is None else days
    cutoff = service.clock.now() - timedelta(days=days)
    with service.uow() as uow:
        found = candidates(uow.session, cutoff)
    results = []
    for case_no, _last in found:
        with service.uow() as uow, audit.outside_request(service):
            result = anonymise_case(service, uow, case_no, cutoff)
            if result is None or not result.records:
                continue  # not due, or nothing personal left: no entry
            results.append(result)
            if dry_run:
                uow.rollback()
                continue
            audit.record(uow, ACTOR, ACTION, case_no, anonymised=result.fields, records=result.records,
                         retention_days=days)
            uow.commit()
    if results and not dry_run:
        log.info("%s: anonymised %d archived case(s)", service.name, len(results),
                 extra={"service": service.name})
    return results


class Schedule:
    """The worker's daily run: due at start, then ``RUN_EVERY`` after the last run, on the
    service's platform clock (so ``fzt clock advance 1d`` and tests move it)."""

    def __init__(self, service):
        self.service = service
        self.next_run = None

    def run_if_due(self) -> int:
        days = self.service.settings.retention_days
        now = self.service.clock.now()
        if days <= 0 or (self.next_run is not None and now < self.next_run):
            return 0
        self.next_run = now + RUN_EVERY
        return len(anonymise(self.service))


# -- for the services' hooks ---------------------------------------------------------------

PERSONAL, TEXT, DROP = "personal", "text", "drop"


def anonymise_rows(rows, columns: dict[str, str], scrub: Scrubber) -> bool:
    """Anonymise ``columns`` of ``rows`` (ORM objects): ``PERSONAL`` values are replaced,
    ``TEXT`` masked, ``DROP`` set to None. Whether anything changed."""
    changed = False
    for row in rows:
        for column, how in columns.items():
            value = getattr(row, column)
            new = (scrub.personal(column, value) if how == PERSONAL else scrub.text(column, value) if how == TEXT
                   else None)
            if how == DROP and value is not None:
                scrub.changed.add(column)
            if new != value:
                setattr(row, column, new)
                changed = True
    return changed
