"""Mediation's own tables: who handles a mediation case and whether it is confidential."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, UTCDateTime

MEDIATION = {"info": {"service": "mediation"}}


class MediationHandling(Base):
    """The mediator who took a case (接办) and whether it is confidential (保密): a
    confidential case is seen only by its mediator and the center's leaders
    (services/mediation/handling.py)."""

    __tablename__ = "mediation_handling"
    __table_args__ = MEDIATION
    case_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    mediator: Mapped[str] = mapped_column(String(50))  # username
    mediator_name: Mapped[str] = mapped_column(String(100))
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
