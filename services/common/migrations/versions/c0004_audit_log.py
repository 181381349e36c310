"""audit log: who did what to which case when, from which address (append-only)

Revision ID: c0004
Revises: c0003

In production the application's database role should not be able to change history:
``REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM <app role>`` (docs/security.md).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "c0004"
down_revision: Union[str, Sequence[str], None] = "c0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        info={"service": "common"},
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_case", ["case_no", "at"], unique=False)
        batch_op.create_index("ix_audit_log_actor", ["actor", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_actor")
        batch_op.drop_index("ix_audit_log_case")
        batch_op.drop_index("ix_audit_log_at")
    op.drop_table("audit_log")
