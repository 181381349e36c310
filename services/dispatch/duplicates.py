"""疑似重复: flagging a new case that looks like an open one, for the dispatcher (docs/duplicates.md).

Dispatch knows which cases are open, so it compares when it registers a case
(``intake.case_submitted``, in the same transaction as the case's instance): against the
open cases of the same district submitted within ``window_days``, found by two indexed
queries on ``duplicate_fingerprints`` — the same phone (a keyed hash), place or map cell
(with its neighbours), and the district's most recent ``scan_limit`` cases for the text.
That stays cheap with a million cases: each query reads one district's recent rows only.

The rule (``judge``) is plain code with thresholds from ``Settings.duplicates``
(FZT_DUPLICATE_*), not a DMN table: it runs per candidate pair inside a bus listener, where
no workflow instance (and so no DMN engine) is at hand. Similar text is the Dice coefficient
of character bigrams, which works for Chinese without word segmentation.

A flag shows as a badge in the queue and a box on the case page with links to the
candidates; the dispatcher merges from there (the existing merge act) or dismisses the flags
(audited ``dispatch.duplicate_dismissed``).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Float, Index, Integer, String, UniqueConstraint, and_, exists, func, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from services.common import audit
from services.common.db import Base, UTCDateTime
from services.common.models import WorkflowInstance, WorkItem

DUPLICATES = {"info": {"service": "dispatch"}}
TEXT_KEPT = 500  # characters of the description kept for comparing (and showing)
KEYED_LIMIT = 50  # candidates read by phone / place / cell
REASON_NAMES = {"phone": "联系电话相同", "place": "地点相同", "near": "地点相近", "text": "内容相似"}
NOT_WORDS = re.compile(r"[\W_]+", re.UNICODE)  # spaces and punctuation, Chinese ones too


class CaseFingerprint(Base):
    """What a case is compared by; one row per case dispatch registered."""

    __tablename__ = "duplicate_fingerprints"
    __table_args__ = (Index("ix_duplicate_fingerprints_recent", "district", "submitted_at"),
                      Index("ix_duplicate_fingerprints_phone", "district", "phone_hash"),
                      Index("ix_duplicate_fingerprints_place", "district", "place"),
                      Index("ix_duplicate_fingerprints_cell", "district", "cell"), DUPLICATES)
    case_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    district: Mapped[str] = mapped_column(String(6))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    phone_hash: Mapped[str] = mapped_column(String(32))
    place: Mapped[str | None] = mapped_column(String(32), nullable=True)  # hash of the normalised address
    cell: Mapped[str | None] = mapped_column(String(40), nullable=True)  # grid cell of the map point
    text: Mapped[str] = mapped_column(String(TEXT_KEPT))


class DuplicateFlag(Base):
    """“``case_no`` may repeat ``candidate_no``”: open until dismissed."""

    __tablename__ = "duplicate_flags"
    __table_args__ = (UniqueConstraint("case_no", "candidate_no", name="uq_duplicate_flags_pair"),
                      Index("ix_duplicate_flags_open", "case_no", "status"), DUPLICATES)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    candidate_no: Mapped[str] = mapped_column(String(40))
    reasons: Mapped[str] = mapped_column(String(60))  # comma-separated REASON_NAMES keys
    similarity: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | dismissed
    resolved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def reason_names(self) -> list[str]:
        return [REASON_NAMES.get(r, r) for r in self.reasons.split(",") if r]


# -- the rule (pure functions) -------------------------------------------------------------

def bigrams(text: str) -> frozenset:
    """Overlapping character pairs of ``text`` without spaces and punctuation."""
    chars = NOT_WORDS.sub("", (text or "").lower())
    return frozenset(chars[i:i + 2] for i in range(len(chars) - 1)) or frozenset(chars)


def similarity(a: frozenset, b: frozenset) -> float:
    """Dice coefficient of two bigram sets: 1.0 the same, 0.0 nothing in common."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


def place_key(location: str) -> str | None:
    """The address without spaces and punctuation, hashed; None when there is none (or only
    a coordinates label, which the cell covers)."""
    text = NOT_WORDS.sub("", (location or "").lower())
    if len(text) < 4 or text.startswith("经纬度"):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cell_of(latitude, longitude, size: float) -> str | None:
    if latitude is None or longitude is None or size <= 0:
        return None
    return f"{math.floor(latitude / size)}:{math.floor(longitude / size)}"


def neighbour_cells(cell: str | None) -> list[str]:
    """The cell and the eight around it: a point near a cell edge is near its neighbour's."""
    if not cell:
        return []
    row, col = (int(part) for part in cell.split(":"))
    return [f"{row + dr}:{col + dc}" for dr in (-1, 0, 1) for dc in (-1, 0, 1)]


@dataclass(frozen=True)
class Fingerprint:
    phone_hash: str
    place: str | None
    cell: str | None
    text: str


def judge(new: Fingerprint, old: Fingerprint, rule, new_bigrams: frozenset | None = None,
          near: list[str] | None = None) -> tuple[list[str], float]:
    """(reasons, similarity): reasons empty means "not a duplicate". Same phone flags alone;
    same or near place flags with at least ``location_text_threshold`` similar text; text
    alone flags from ``text_threshold`` on. ``new_bigrams`` and ``near`` (the new case's
    bigrams and neighbour cells) may be passed in when judging one case against many."""
    new_bigrams = bigrams(new.text) if new_bigrams is None else new_bigrams
    score = similarity(new_bigrams, bigrams(old.text))
    reasons = []
    if new.phone_hash == old.phone_hash:
        reasons.append("phone")
    if new.place and new.place == old.place:
        reasons.append("place")
    elif new.cell and old.cell in (neighbour_cells(new.cell) if near is None else near):
        reasons.append("near")
    if score >= rule.text_threshold:
        reasons.append("text")
    located = "place" in reasons or "near" in reasons
    if "phone" in reasons or "text" in reasons or (located and score >= rule.location_text_threshold):
        return reasons, score
    return [], score


def phone_hash(secret: str, phone: str) -> str:
    digits = re.sub(r"\D", "", phone or "")
    return hmac.new(secret.encode(), digits.encode(), hashlib.sha256).hexdigest()[:32]


# -- registering a case (bus listener) -------------------------------------------------------

def fingerprint_of(service, body) -> Fingerprint:
    rule = service.settings.duplicates
    return Fingerprint(phone_hash=phone_hash(service.settings.secret_key, body.get("phone", "")),
                       place=place_key(body.get("location", "")),
                       cell=cell_of(body.get("latitude"), body.get("longitude"), rule.cell_degrees),
                       text=(body.get("description") or "")[:TEXT_KEPT])


def _open():
    return exists().where(and_(WorkflowInstance.case_no == CaseFingerprint.case_no,
                               WorkflowInstance.process_id == "dispatch",
                               WorkflowInstance.status != "complete"))


COMPARED = (CaseFingerprint.case_no, CaseFingerprint.phone_hash, CaseFingerprint.place, CaseFingerprint.cell,
            CaseFingerprint.text)


def candidates(session, district: str, since: datetime, new: Fingerprint, rule) -> dict[str, Fingerprint]:
    """{case_no: fingerprint} of the open cases of ``district`` since ``since`` that share a
    key with ``new``, and of the most recent ones (for the text); two index range reads.
    Plain rows, not ORM objects: a few hundred of them per new case, only compared."""
    recent = and_(CaseFingerprint.district == district, CaseFingerprint.submitted_at >= since, _open())
    keys = [CaseFingerprint.phone_hash == new.phone_hash]
    if new.place:
        keys.append(CaseFingerprint.place == new.place)
    if new.cell:
        keys.append(CaseFingerprint.cell.in_(neighbour_cells(new.cell)))
    newest = CaseFingerprint.submitted_at.desc()
    found = {}
    for query in (select(*COMPARED).where(recent, or_(*keys)).order_by(newest).limit(KEYED_LIMIT),
                  select(*COMPARED).where(recent).order_by(newest).limit(rule.scan_limit)):
        for case_no, *compared in session.execute(query):
            found.setdefault(case_no, Fingerprint(*compared))
    return found


def register_case(service, uow, envelope):
    """Listener for ``intake.case_submitted``: flag the case against open ones, then remember
    its fingerprint for the cases after it."""
    body, rule = envelope["body"], service.settings.duplicates
    case_no, district = envelope["case_no"], body["district"]
    now = service.clock.now()
    new = fingerprint_of(service, body)
    session = uow.session
    if session.get(CaseFingerprint, case_no) is not None:
        return  # registered before (a second intake.case_submitted of the case)
    flags = []
    new_bigrams, near = bigrams(new.text), neighbour_cells(new.cell)
    for old_no, old in candidates(session, district, now - timedelta(days=rule.window_days), new, rule).items():
        reasons, score = judge(new, old, rule, new_bigrams, near)
        if reasons:
            flags.append((score, old_no, reasons))
    for score, candidate_no, reasons in sorted(flags, reverse=True)[:rule.max_candidates]:
        uow.insert(DuplicateFlag, case_no=case_no, candidate_no=candidate_no, reasons=",".join(reasons),
                   similarity=round(score, 3), created_at=now, status="open")
    uow.insert(CaseFingerprint, case_no=case_no, district=district, submitted_at=now, phone_hash=new.phone_hash,
               place=new.place, cell=new.cell, text=new.text)


# -- reading and dismissing --------------------------------------------------------------------

def flagged(service, case_nos) -> dict[str, int]:
    """{case_no: open flags} for a page of work items (one query)."""
    if not case_nos:
        return {}
    with service.uow() as uow:
        return dict(uow.session.execute(
            select(DuplicateFlag.case_no, func.count()).where(
                DuplicateFlag.case_no.in_(list(case_nos)), DuplicateFlag.status == "open")
            .group_by(DuplicateFlag.case_no)).all())


@dataclass(frozen=True)
class Candidate:
    flag: DuplicateFlag
    text: str
    submitted_at: datetime | None
    open: bool


def open_flags(service, case_no) -> list[Candidate]:
    """The open flags of a case with what the page shows of each candidate."""
    with service.uow() as uow:
        rows = uow.session.execute(
            select(DuplicateFlag, CaseFingerprint.text, CaseFingerprint.submitted_at, _open())
            .join(CaseFingerprint, CaseFingerprint.case_no == DuplicateFlag.candidate_no, isouter=True)
            .where(DuplicateFlag.case_no == case_no, DuplicateFlag.status == "open")
            .order_by(DuplicateFlag.similarity.desc(), DuplicateFlag.id)).all()
    return [Candidate(flag, text or "", at, bool(is_open)) for flag, text, at, is_open in rows]


def dismiss(service, user, case_no, may_dismiss) -> int:
    """不是重复: every open flag of the case is dismissed (audited); the number dismissed.
    ``may_dismiss(user, item)`` is asked with the case's 待交办 work item."""
    with service.uow() as uow:
        item = uow.session.scalars(select(WorkItem).where(
            WorkItem.case_no == case_no, WorkItem.task_name == "assign")).first()
        if item is None or not may_dismiss(user, item):
            raise PermissionError("只有负责分拨本案的分拨员可以处理重复提示")
        flags = uow.session.scalars(select(DuplicateFlag).where(
            DuplicateFlag.case_no == case_no, DuplicateFlag.status == "open")).all()
        now = service.clock.now()
        for flag in flags:
            flag.status, flag.resolved_by, flag.resolved_at = "dismissed", user.username, now
        if flags:
            audit.record(uow, user, "dispatch.duplicate_dismissed", case_no,
                         candidates=[f.candidate_no for f in flags])
        uow.commit()
    return len(flags)
