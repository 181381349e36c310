"""Submitting at most once per client key (``Idempotency-Key``; the form's one-time token).

A client that lost the answer to a submission (dropped connection, double click) sends it
again with the same key and gets the first answer back instead of a second case. The key
row is inserted and flushed *before* the case is made, in the same transaction: a twin
request with the same key waits on the unique index until the first commits, then fails
with IntegrityError and replays the committed answer; if the first rolled back, the twin
goes ahead. So two concurrent identical requests make exactly one case (tested on
PostgreSQL). The same key with other content is refused (``KeyReused``), never answered
with a case the client did not describe. Decisions: docs/intake-api.md.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, UTCDateTime

from .models import INTAKE, CitizenRequest
from .requests import submit_request

HEADER = "Idempotency-Key"
KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, e.g. a UUID
KEY_ERROR = f"{HEADER} 须为1至255个可见ASCII字符（建议使用UUID）"
API, OPEN311, WEB = "api", "open311", "web"  # scopes: one key space per entry point


class IdempotencyKey(Base):
    """A client's key for one submission and the case it made (same transaction)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_case", "case_no"), INTAKE)
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # sha256 of the validated submission: the same key with other content is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    case_no: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class KeyReused(ValueError):
    """The key already made a case from different content."""

    def __init__(self, case_no: str | None):
        super().__init__(f"该 {HEADER} 已用于提交另一份内容不同的诉求，请为新的诉求使用新的 {HEADER}")
        self.case_no = case_no


def valid_key(value) -> bool:
    return isinstance(value, str) and bool(KEY.match(value))


def seen(service, scope: str, key) -> bool:
    """Whether ``key`` already made a case (its retry is answered, not limited per phone)."""
    if not valid_key(key):
        return False
    with service.uow() as uow:
        return uow.session.get(IdempotencyKey, (scope, key)) is not None


def request_hash(data: dict, columns: dict) -> str:
    canonical = json.dumps({"data": data, "columns": columns}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_once(service, scope: str, key: str | None, data: dict, then=None, **columns):
    """(CitizenRequest, replayed): the case ``key`` made before, or a new one made now.

    Without a key this is ``submit_request``. ``KeyReused`` when the key made a case from
    different content. ``then(uow, created)`` runs in the new case's transaction (the audit
    entry of a staff filing)."""
    fingerprint = request_hash(data, columns)
    if key:
        earlier = _replay(service, scope, key, fingerprint)
        if earlier is not None:
            return earlier, True
    try:
        with service.uow() as uow:
            if key:
                row = IdempotencyKey(scope=scope, key=key, request_hash=fingerprint, created_at=service.clock.now())
                uow.add(row)
                uow.session.flush()  # a concurrent twin blocks here until we commit or roll back
            created = submit_request(service, data, uow, **columns)
            if key:
                row.case_no = created.case_no
            if then is not None:
                then(uow, created)
            uow.commit()
        return created, False
    except IntegrityError:
        earlier = _replay(service, scope, key, fingerprint) if key else None
        if earlier is None:
            raise
        return earlier, True


def _replay(service, scope, key, fingerprint):
    with service.uow() as uow:
        row = uow.session.get(IdempotencyKey, (scope, key))
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise KeyReused(row.case_no)
        return uow.session.get(CitizenRequest, row.case_no)
