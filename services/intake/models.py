"""Intake's own tables: citizen requests and the per-district daily case-number sequence,
the requests per day (受理量统计), the 12345 hotline's orders, publicity, satisfaction ratings
and notifications."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, UTCDateTime

INTAKE = {"info": {"service": "intake"}}


class CitizenRequest(Base):
    __tablename__ = "citizen_requests"
    __table_args__ = (Index("ix_citizen_requests_district_day", "district", "created_at"),
                      Index("ix_citizen_requests_phone", "phone"), INTAKE)
    case_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(12))
    district: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(50), default="")
    channel: Mapped[str] = mapped_column(String(30))
    location: Mapped[str] = mapped_column(String(200), default="")
    # submitted | assigned | handled (replied, rating asked) | closed | reopened | rejected | merged
    status: Mapped[str] = mapped_column(String(30))
    # Set when dispatch merged this request into another case: its citizen gets that case's reply.
    merged_into: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Given by Open311 clients (docs/open311.md): a WGS84 point and a media link, kept as sent.
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    media_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Optional: the citizen is also told by e-mail (services/intake/notify.py).
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    # Kept on the case dispatch handles (not on requests merged into it), for the callback
    # rule (services/intake/callback.py): how many replies it had, and whether the latest
    # one is being rated ("rating"), was rejected by a reporter ("reopened") or closed.
    reply_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callback_phase: Mapped[str | None] = mapped_column(String(20), nullable=True)


class CaseSequence(Base):
    """Last case number issued per district and day (case numbers: district-date-sequence)."""

    __tablename__ = "case_sequences"
    __table_args__ = INTAKE
    district: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class RequestCount(Base):
    """How many requests a district received through a channel on a China day (UTC+8).

    Counted in the transaction that stores the request (services/intake/volume_counts.py),
    so it always equals the GROUP BY over ``citizen_requests`` that 受理量统计 used to run."""

    __tablename__ = "request_counts"
    __table_args__ = INTAKE
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    district: Mapped[str] = mapped_column(String(6), primary_key=True)
    channel: Mapped[str] = mapped_column(String(30), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class HotlineOrder(Base):
    """A work order taken from the 12345 hotline, and the case it became (one per order_id).

    Written in the same transaction as the case, so a redelivered order finds it and is
    acknowledged without a second case (services/intake/hotline.py, docs/hotline-12345.md).
    """

    __tablename__ = "hotline_orders"
    __table_args__ = (Index("ix_hotline_orders_case", "case_no", unique=True), INTAKE)
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    case_no: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when the hotline took the call
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # sha256 of the validated order: the same order_id with other content is refused.
    payload_hash: Mapped[str] = mapped_column(String(64))


class HotlineStatus(Base):
    """A status report for the hotline (accepted / assigned / handled / rejected), written in
    the transaction that caused it; the gateway publishes it with confirms, then marks it sent."""

    __tablename__ = "hotline_status_outbox"
    __table_args__ = (Index("ix_hotline_status_outbox_unsent", "sent_at", "id"), INTAKE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    order_id: Mapped[str] = mapped_column(String(64))
    case_no: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # accepted | assigned | handled | rejected
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TypicalCase(Base):
    """A handled case published as a 典型案例 (services/intake/publicity.py, docs/publicity.md).

    ``summary`` is the public text a member of staff reviewed: the case's description and
    reply with personal data removed. Unpublishing keeps the row (``unpublished_at``)."""

    __tablename__ = "typical_cases"
    __table_args__ = (Index("ix_typical_cases_public", "unpublished_at", "published_at"),
                      Index("ix_typical_cases_case", "case_no"), INTAKE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(6))
    category: Mapped[str] = mapped_column(String(50))
    summary: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_by: Mapped[str] = mapped_column(String(50))  # staff username
    unpublished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    unpublished_by: Mapped[str | None] = mapped_column(String(50), nullable=True)


class Notice(Base):
    """A notice to citizens (通知公告) of one district, or of every district (``district`` "")."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_public", "withdrawn_at", "published_at"), INTAKE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    district: Mapped[str] = mapped_column(String(6), default="")  # "" = 全市
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_by: Mapped[str] = mapped_column(String(50))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(50), nullable=True)


class RequestPhoto(Base):
    """A photo the citizen sent with a request: a reference into the blob store
    (services/common/uploads.py, docs/uploads.md). Served only to the citizen who tracks the
    case; staff see it in dispatch, which got the same reference with intake.case_submitted."""

    __tablename__ = "request_photos"
    __table_args__ = (Index("ix_request_photos_case", "case_no", "sha256"), INTAKE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(120))  # display only, sanitised
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def ref(self) -> dict:
        return {"sha256": self.sha256, "content_type": self.content_type, "size": self.size,
                "filename": self.filename, "thumbnail_sha256": self.thumbnail_sha256}


class SatisfactionRating(Base):
    """One reporter's rating of one reply (回访): online by the citizen or entered by a
    callback operator. Append-only; the latest of a request is its current rating."""

    __tablename__ = "satisfaction_ratings"
    __table_args__ = (Index("ix_satisfaction_ratings_case", "dispatch_case_no", "reply_round"),
                      Index("ix_satisfaction_ratings_reporter", "case_no"), INTAKE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))  # the reporter's request
    dispatch_case_no: Mapped[str] = mapped_column(String(40))  # the case dispatch handles
    reply_round: Mapped[int] = mapped_column(Integer)
    rating: Mapped[str] = mapped_column(String(30))  # satisfied | basically_satisfied | unsatisfied
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(20))  # online | callback
    actor: Mapped[str] = mapped_column(String(100), default="")  # the operator; "" = the citizen
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """A message to a citizen (accepted / replied / reopened / closed), written in the
    transaction of the step that caused it; the sender delivers it after commit and marks it
    sent, retrying failures with a growing pause (services/intake/notify.py)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "sent_at", "next_attempt_at"),
                      Index("ix_notifications_case", "case_no"), INTAKE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))  # accepted | replied | reopened | closed
    channel: Mapped[str] = mapped_column(String(10))  # sms | email
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the gateway's id
