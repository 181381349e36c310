"""rate-limit counters: one fixed window per limit key, shared by a service's web processes

Revision ID: c0005_rate_limits
Revises: c0004

(services/common/ratelimits.py, docs/security.md "Rate limits")
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "c0005_rate_limits"
down_revision: Union[str, Sequence[str], None] = "c0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        info={"service": "common"},
    )
    op.create_index("ix_rate_limit_counters_expires_at", "rate_limit_counters", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_counters_expires_at", table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
