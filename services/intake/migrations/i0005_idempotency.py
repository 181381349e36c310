"""idempotency keys: a client's key for one submission and the case it made

Revision ID: i0005_idempotency
Revises: i0004_publicity

(services/intake/idempotency.py, docs/intake-api.md)
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "i0005_idempotency"
down_revision: Union[str, Sequence[str], None] = "i0004_publicity"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
        info={"service": "intake"},
    )
    op.create_index("ix_idempotency_keys_case", "idempotency_keys", ["case_no"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_case", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
