"""Dispatch's own tables (besides the common ones): the files on a case, the co-handling
departments of open cases."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, UTCDateTime

DISPATCH = {"info": {"service": "dispatch"}}


class CaseFile(Base):
    """A file on a case, a reference into the shared blob store (docs/uploads.md): the
    citizen's photos (``kind`` photo, from intake.case_submitted) and the attachments a
    department adds to a handling note or its reply (``kind`` attachment, hung on the
    timeline entry ``timeline_id``). Dispatch serves a blob only through a row of the case,
    to those who may read the case."""

    __tablename__ = "case_files"
    __table_args__ = (Index("ix_case_files_case", "case_no", "sha256"), DISPATCH)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))  # photo | attachment
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(120))  # display only, sanitised
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    timeline_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department: Mapped[str] = mapped_column(String(50), default="")
    uploaded_by: Mapped[str] = mapped_column(String(100), default="")  # "" = the citizen
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class CoHandler(Base):
    """A department helping on (协办) an open case that another department leads, for the
    department inbox's 协办案件 list: one row per case and co-handling department while the
    case waits in one of the lead department's steps (``co_handling.CO_HANDLED_TASKS``),
    pointing at that work item and ordered by its ``created_at``. Kept by the workflow runtime's
    work-item refresh (services/dispatch/co_handling.py) in the same transaction; the list reads
    an index range (department, created_at) instead of matching every work item's summary."""

    __tablename__ = "co_handlers"
    __table_args__ = (Index("ix_co_handlers_department", "department", "created_at"), DISPATCH)
    case_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    department: Mapped[str] = mapped_column(String(50), primary_key=True)
    work_item_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the work item's
