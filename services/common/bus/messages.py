"""Message envelopes and the body schema of every message type on the bus.

The type is the routing key, ``<service>.<event>``, and the BPMN message name in the
diagrams that throw and catch it. Both ends validate: the sender before the outbox row is
written, the receiver before any effect. Unknown types and invalid bodies are refused.

The envelope's ``version`` is the version of its type's body (``BODY_VERSIONS``, 1 unless
listed). A consumer accepts its current version and older ones for which an upcaster (a
plain function, ``UPCASTERS[(type, n)]``: body of version n → body of version n + 1) is
registered; a newer version than it knows is refused with a reason saying so, and so
dead-lettered until the consumer is upgraded and the message replayed
(docs/schema-evolution.md).
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Callable

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from ..safetext import unstorable


class InvalidMessage(ValueError):
    """A message that must not be applied (bad envelope, unknown type or invalid body)."""


class Body(Schema):
    class Meta:
        unknown = EXCLUDE  # a newer sender may add fields; we keep what we know

    case_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    # Public one-line progress text for the citizen's timeline, worded in the diagram.
    summary = fields.String(load_default="", validate=validate.Length(max=2000))


class BlobRef(Schema):
    """A file in the shared blob store (docs/uploads.md): the receiver serves it only if its
    own case data references it. ``filename`` is for display only, already sanitised."""
    class Meta:
        unknown = EXCLUDE

    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    content_type = fields.String(required=True, validate=validate.OneOf(
        ["image/jpeg", "image/png", "image/webp", "application/pdf"]))
    size = fields.Integer(required=True, validate=validate.Range(min=1))
    filename = fields.String(required=True, validate=validate.Length(min=1, max=120))
    thumbnail_sha256 = fields.String(load_default=None, allow_none=True,
                                     validate=validate.Regexp(r"^[0-9a-f]{64}$"))


class CaseSubmitted(Body):
    """Version 2: the reported point as numbers (``latitude``, ``longitude``; None when the
    channel sent none). Version 1 had it only inside the location label."""
    district = fields.String(required=True, validate=validate.Length(equal=6))
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    phone = fields.String(required=True, validate=validate.Length(min=5, max=20))
    description = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    category = fields.String(load_default="", validate=validate.Length(max=50))
    channel = fields.String(required=True, validate=validate.Length(max=30))
    location = fields.String(load_default="", validate=validate.Length(max=200))
    submitted_at = fields.String(required=True)
    latitude = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-180, 180))
    # The citizen's photos (docs/uploads.md); optional, so a body without them stays valid.
    photos = fields.List(fields.Nested(BlobRef), load_default=list, validate=validate.Length(max=20))


# How intake's version 1 wrote a point sent without an address (Open311): "经纬度 lat,long".
_V1_POINT_LABEL = re.compile(r"^经纬度 (-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)$")


def case_submitted_v1_to_v2(body: dict) -> dict:
    """A version 1 body as version 2: the point recovered from the location label, if any."""
    match = _V1_POINT_LABEL.match(str(body.get("location") or ""))
    latitude, longitude = (float(match.group(1)), float(match.group(2))) if match else (None, None)
    return {**body, "latitude": latitude, "longitude": longitude}


class CaseAssigned(Body):
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    department_name = fields.String(load_default="", validate=validate.Length(max=100))


class CaseHandled(Body):
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    reply = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class CaseAccepted(Body):
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    first_owner = fields.String(required=True, validate=validate.Length(min=1, max=50))


class CaseReturned(Body):
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    return_count = fields.Integer(required=True, validate=validate.Range(min=1))


class CaseRejected(Body):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CaseExtended(Body):
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    days = fields.Integer(required=True, validate=validate.Range(min=1, max=60))
    due = fields.AwareDateTime(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CaseMerged(Body):
    into = fields.String(required=True, validate=validate.Length(min=1, max=40))


class CaseDeadlineMissed(Body):
    stage = fields.String(required=True, validate=validate.Length(max=30))


class MediationRequested(Body):
    """dispatch → mediation: a dispute the dispatcher sends to the on-site center (调解优先)."""
    district = fields.String(required=True, validate=validate.Length(equal=6))
    description = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    phone = fields.String(required=True, validate=validate.Length(min=5, max=20))
    reason = fields.String(load_default="", validate=validate.Length(max=500))  # the dispatcher's note
    category = fields.String(load_default="", validate=validate.Length(max=50))
    location = fields.String(load_default="", validate=validate.Length(max=200))


class CaseMediated(Body):
    """mediation → dispatch and intake: how the mediation ended."""
    outcome = fields.String(required=True, validate=validate.OneOf(["agreement", "no_agreement"]))
    result = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    agreement = fields.String(load_default="", validate=validate.Length(max=2000))


class MediationDeadlineMissed(Body):
    """mediation → supervision: the mediation deadline passed with the case still open."""
    stage = fields.String(required=True, validate=validate.Length(max=30))


RATINGS = ("satisfied", "basically_satisfied", "unsatisfied")  # 满意 / 基本满意 / 不满意


class CaseRated(Body):
    """intake → dispatch (and supervision): a reporter's rating of the reply (回访).

    ``case_no`` is the case dispatch handles; for a request merged into it,
    ``reporter_case_no`` is the reporter's own request (docs/satisfaction.md)."""
    reporter_case_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    rating = fields.String(required=True, validate=validate.OneOf(RATINGS))
    comment = fields.String(load_default="", validate=validate.Length(max=500))


class CaseClosed(CaseRated):
    """intake → dispatch: every reporter is satisfied; the case is closed (结案)."""


class CaseReopened(CaseRated):
    """intake → dispatch and supervision: a reporter is not satisfied; the same department
    handles the case again, with the citizen's comment."""
    rating = fields.String(required=True, validate=validate.OneOf(["unsatisfied"]))
    comment = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CaseReopenedForWork(Body):
    """dispatch → intake: the case is back with the department after a 不满意 (each reporter
    still waiting for a rating of the old reply is no longer asked)."""
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    comment = fields.String(required=True, validate=validate.Length(min=1, max=500))
    reopen_count = fields.Integer(required=True, validate=validate.Range(min=1))


class CaseFinished(Body):
    """dispatch → intake: every reporter rated the reply 满意/基本满意; the case is closed."""


BODY_SCHEMAS: dict[str, type[Schema]] = {
    "intake.case_submitted": CaseSubmitted,
    "dispatch.case_assigned": CaseAssigned,
    "dispatch.case_accepted": CaseAccepted,
    "dispatch.case_returned": CaseReturned,
    "dispatch.case_rejected": CaseRejected,
    "dispatch.case_handled": CaseHandled,
    "dispatch.case_extended": CaseExtended,
    "dispatch.case_merged": CaseMerged,
    "dispatch.deadline_missed": CaseDeadlineMissed,
    "dispatch.mediation_requested": MediationRequested,
    "mediation.case_mediated": CaseMediated,
    "mediation.deadline_missed": MediationDeadlineMissed,
    "intake.case_closed": CaseClosed,
    "intake.case_reopened": CaseReopened,
    "dispatch.case_reopened": CaseReopenedForWork,
    "dispatch.case_closed": CaseFinished,
}


# The current body version of a type, where it is not 1, and the upcasters that bring an older
# body to it. Bump a version only together with the upcaster from the version before.
BODY_VERSIONS: dict[str, int] = {
    "intake.case_submitted": 2,
}
UPCASTERS: dict[tuple[str, int], Callable[[dict], dict]] = {
    ("intake.case_submitted", 1): case_submitted_v1_to_v2,
}


def body_version(message_type: str) -> int:
    return BODY_VERSIONS.get(message_type, 1)


def upcast(message_type: str, version: int, body: dict) -> dict:
    """``body`` of ``version`` as the current version of its type; InvalidMessage if this
    code does not know that version (newer, or older than its upcasters reach)."""
    current = body_version(message_type)
    if version > current:
        raise InvalidMessage(f"unknown version: {message_type} version {version} is newer than "
                             f"this consumer knows ({current}); upgrade it, then replay")
    while version < current:
        step = UPCASTERS.get((message_type, version))
        if step is None:
            raise InvalidMessage(f"unknown version: {message_type} version {version} is too old "
                                 f"for this consumer (current {current}, no upcaster from it)")
        try:
            body = step(dict(body))
        except Exception as err:  # a malformed old body: refused like an invalid one
            raise InvalidMessage(f"invalid message: cannot upcast {message_type} version "
                                 f"{version}: {type(err).__name__}: {err}") from None
        version += 1
    return body


class Envelope(Schema):
    class Meta:
        unknown = RAISE

    id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.OneOf(sorted(BODY_SCHEMAS)))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = fields.AwareDateTime(required=True)
    case_no = fields.String(required=True, validate=validate.Length(min=1, max=40))
    source = fields.String(required=True, validate=validate.Length(max=30))
    body = fields.Dict(required=True)


_envelope = Envelope()


def make_envelope(message_type: str, body: dict, source: str, occurred_at: datetime) -> dict:
    """Build and validate an envelope; raises InvalidMessage before anything is stored."""
    envelope = {
        "id": str(uuid.uuid4()),
        "type": message_type,
        "version": body_version(message_type),
        "occurred_at": occurred_at.isoformat(),
        "case_no": str(body.get("case_no", "")),
        "source": source,
        "body": body,
    }
    parse_envelope(envelope)
    return envelope


def parse_envelope(data) -> dict:
    """Validate a received envelope and its body; returns the loaded envelope."""
    if not isinstance(data, dict):
        raise InvalidMessage("envelope is not a JSON object")
    if unstorable(data):  # would fail in the database on every retry: dead-letter at once
        raise InvalidMessage("invalid message: a NUL character or an unpaired surrogate in its text")
    try:
        loaded = _envelope.load(data)
        body = upcast(loaded["type"], loaded["version"], loaded["body"])
        loaded["body"] = BODY_SCHEMAS[loaded["type"]]().load(body)
        loaded["version"] = body_version(loaded["type"])
    except ValidationError as err:
        raise InvalidMessage(f"invalid message: {err.messages}") from None
    if loaded["body"]["case_no"] != loaded["case_no"]:
        raise InvalidMessage("invalid message: body.case_no differs from envelope case_no")
    loaded["id"] = str(loaded["id"])
    return loaded
