"""Intake's own tables: citizen requests and the per-district daily case-number sequence."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
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
    status: Mapped[str] = mapped_column(String(30))  # submitted | assigned | handled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseSequence(Base):
    """Last case number issued per district and day (case numbers: district-date-sequence)."""

    __tablename__ = "case_sequences"
    __table_args__ = INTAKE
    district: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
