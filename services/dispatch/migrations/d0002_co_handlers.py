"""co_handlers: the co-handling departments (协办) of open cases, indexed for the department
inbox, filled from the open work items' summaries

Revision ID: d0002_co_handlers
Revises: d0001_case_files

The 协办案件 list matched every work item's summary text (docs/uploads.md); the table is kept
by services/dispatch/co_handling.py from now on. The backfill applies that module's rule as
it is today (written out here: a migration must not change when the code does): a row per
department in ``co_departments`` other than the lead, for each work item of the lead's steps.
JSON is parsed in Python (PostgreSQL and SQLite differ in JSON functions), in batches read
in primary-key order.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision: str = "d0002_co_handlers"
down_revision: Union[str, Sequence[str], None] = "d0001_case_files"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = "c0001"  # reads work_items

CO_HANDLED_TASKS = ("accept", "resolve", "approve_extension")
BATCH = 5000

work_items = sa.table("work_items", sa.column("id", sa.String), sa.column("case_no", sa.String),
                      sa.column("task_name", sa.String), sa.column("department", sa.String),
                      sa.column("summary", sa.JSON), sa.column("created_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    co_handlers = op.create_table(
        "co_handlers",
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("department", sa.String(length=50), nullable=False),
        sa.Column("work_item_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_no", "department"),
        info={"service": "dispatch"},
    )
    op.create_index("ix_co_handlers_department", "co_handlers", ["department", "created_at"])
    backfill(op.get_bind(), co_handlers)


def backfill(conn, co_handlers) -> None:
    # A case waits in one of these steps at a time (the diagram has one token); should one
    # ever have two, the first row read wins and the case's next step writes its rows anew.
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
    last = ""
    while True:
        items = conn.execute(sa.select(work_items).where(
            work_items.c.task_name.in_(CO_HANDLED_TASKS), work_items.c.id > last)
            .order_by(work_items.c.id).limit(BATCH)).all()
        if not items:
            return
        last = items[-1].id
        rows = [{"case_no": i.case_no, "department": department, "work_item_id": i.id, "created_at": i.created_at}
                for i in items for department in i.summary.get("co_departments") or ()
                if department != i.department]
        if rows:
            conn.execute(insert(co_handlers).on_conflict_do_nothing(), rows)


def downgrade() -> None:
    op.drop_index("ix_co_handlers_department", table_name="co_handlers")
    op.drop_table("co_handlers")
