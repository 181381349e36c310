"""duplicate detection: fingerprints of registered cases and 疑似重复 flags

Revision ID: d0001_duplicates
Revises:

A base of its own (branch label "dispatch_duplicates"), independent of dispatch's other
tables; ``fzt db upgrade`` runs every head. (services/dispatch/duplicates.py, docs/duplicates.md)
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "d0001_duplicates"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ("dispatch_duplicates",)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "duplicate_fingerprints",
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("district", sa.String(length=6), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("phone_hash", sa.String(length=32), nullable=False),
        sa.Column("place", sa.String(length=32), nullable=True),
        sa.Column("cell", sa.String(length=40), nullable=True),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("case_no"),
        info={"service": "dispatch"},
    )
    op.create_index("ix_duplicate_fingerprints_recent", "duplicate_fingerprints", ["district", "submitted_at"])
    op.create_index("ix_duplicate_fingerprints_phone", "duplicate_fingerprints", ["district", "phone_hash"])
    op.create_index("ix_duplicate_fingerprints_place", "duplicate_fingerprints", ["district", "place"])
    op.create_index("ix_duplicate_fingerprints_cell", "duplicate_fingerprints", ["district", "cell"])
    op.create_table(
        "duplicate_flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("candidate_no", sa.String(length=40), nullable=False),
        sa.Column("reasons", sa.String(length=60), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_no", "candidate_no", name="uq_duplicate_flags_pair"),
        info={"service": "dispatch"},
    )
    op.create_index("ix_duplicate_flags_open", "duplicate_flags", ["case_no", "status"])


def downgrade() -> None:
    op.drop_index("ix_duplicate_flags_open", table_name="duplicate_flags")
    op.drop_table("duplicate_flags")
    for name in ("cell", "place", "phone", "recent"):
        op.drop_index(f"ix_duplicate_fingerprints_{name}", table_name="duplicate_fingerprints")
    op.drop_table("duplicate_fingerprints")
