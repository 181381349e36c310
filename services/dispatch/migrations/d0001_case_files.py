"""dispatch tables: case_files (citizens' photos and departments' attachments, references
into the blob store)

Revision ID: d0001_case_files
Revises:
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "d0001_case_files"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ("dispatch",)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "case_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=50), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=120), nullable=False),
        sa.Column("thumbnail_sha256", sa.String(length=64), nullable=True),
        sa.Column("timeline_id", sa.Integer(), nullable=True),
        sa.Column("department", sa.String(length=50), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        info={"service": "dispatch"},
    )
    with op.batch_alter_table("case_files", schema=None) as batch_op:
        batch_op.create_index("ix_case_files_case", ["case_no", "sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_files", schema=None) as batch_op:
        batch_op.drop_index("ix_case_files_case")
    op.drop_table("case_files")
