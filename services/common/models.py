"""Tables that every service's database holds: diagrams, workflow instances, work items,
timeline, outbox, inbox, staff users, the platform clock offset and the audit log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime

COMMON = {"info": {"service": "common"}}


class DeployedSpec(Base):
    """One deployed version of a process: the diagram sources, stored once by content hash."""

    __tablename__ = "deployed_specs"
    __table_args__ = (Index("ix_deployed_specs_process", "process_id", "version", unique=True), COMMON)
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, 3 … per process: the newest is live
    sources: Mapped[dict] = mapped_column(JSON)  # {file name: XML text}
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WorkflowInstance(Base):
    __tablename__ = "workflow_instances"
    __table_args__ = (
        Index("ix_workflow_instances_due", "next_timer_at"),
        Index("ix_workflow_instances_case", "case_no"),
        COMMON,
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    process_id: Mapped[str] = mapped_column(String(100))
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # running | waiting | complete | error
    state: Mapped[dict] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_timer_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}


class WorkItem(Base):
    """A user task waiting for a person: what queues, inboxes and pools list."""

    __tablename__ = "work_items"
    __table_args__ = (
        Index("ix_work_items_queue", "task_name", "district", "created_at"),
        Index("ix_work_items_department", "department", "created_at"),
        # A whole task's list and a department's inbox, oldest first (c0005_scale_indexes).
        Index("ix_work_items_task_created", "task_name", "created_at"),
        Index("ix_work_items_task_department", "task_name", "department", "created_at"),
        Index("ix_work_items_case", "case_no"),
        COMMON,
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # SpiffWorkflow task id
    instance_id: Mapped[int] = mapped_column(Integer, index=True)
    case_no: Mapped[str] = mapped_column(String(40))
    task_name: Mapped[str] = mapped_column(String(100))  # BPMN id of the user task
    title: Mapped[str] = mapped_column(String(200))  # BPMN name, shown to staff
    lane: Mapped[str | None] = mapped_column(String(100), nullable=True)
    district: Mapped[str | None] = mapped_column(String(10), nullable=True)
    department: Mapped[str | None] = mapped_column(String(50), nullable=True)
    summary: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The earliest timer on the task (its deadline), if the diagram gives it one.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def deadline_state(self, now: datetime, warn_before_hours: float = 4) -> str:
        """"overdue", "near" (within ``warn_before_hours``), "ok", or "" without a deadline."""
        if self.due_at is None:
            return ""
        left = (self.due_at - now).total_seconds()
        return "overdue" if left <= 0 else "near" if left <= warn_before_hours * 3600 else "ok"


class TimelineEntry(Base):
    __tablename__ = "timeline"
    __table_args__ = (Index("ix_timeline_case", "case_no", "at"), COMMON)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "sent_at", "id"), COMMON)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    routing_key: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class InboxMessage(Base):
    __tablename__ = "inbox"
    __table_args__ = COMMON
    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    routing_key: Mapped[str] = mapped_column(String(200))
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StaffUser(Base):
    __tablename__ = "staff_users"
    __table_args__ = COMMON
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(30))
    district: Mapped[str | None] = mapped_column(String(10), nullable=True)
    department: Mapped[str | None] = mapped_column(String(50), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Login lockout (services/common/web/auth.py): wrong passwords in a row, and until when
    # the account refuses logins after too many of them.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Sessions carry the version they were opened with; "logout everywhere" and a password
    # change increment it, so every older session stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set when an admin chose the password (new account, reset): the user must pick their own
    # before anything else (services/common/web/account.py).
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ClockOffset(Base):
    """Seconds the platform clock runs ahead of real time (demos and tests only)."""

    __tablename__ = "clock_offset"
    __table_args__ = COMMON
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seconds: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(Base):
    """Who did what to which case, when, from which address (services/common/audit.py).

    Append-only: no code path updates or deletes a row (docs/security.md, "Audit log")."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_case", "case_no", "at"),
        Index("ix_audit_log_actor", "actor", "at"),
        COMMON,
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())  # the service's platform clock
    actor: Mapped[str] = mapped_column(String(100))  # username (or the name typed at a failed login)
    role: Mapped[str] = mapped_column(String(30), default="")
    action: Mapped[str] = mapped_column(String(50))  # machine name, e.g. dispatch.assign
    case_no: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)  # never a revealed personal value
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)  # request.remote_addr
    service: Mapped[str] = mapped_column(String(20))
