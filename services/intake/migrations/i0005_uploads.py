"""uploads: the photos a citizen sends with a request (references into the blob store)

Revision ID: i0005_uploads
Revises: i0004_publicity
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "i0005_uploads"
down_revision: Union[str, Sequence[str], None] = "i0004_publicity"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "request_photos",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=50), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=120), nullable=False),
        sa.Column("thumbnail_sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        info={"service": "intake"},
    )
    with op.batch_alter_table("request_photos", schema=None) as batch_op:
        batch_op.create_index("ix_request_photos_case", ["case_no", "sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("request_photos", schema=None) as batch_op:
        batch_op.drop_index("ix_request_photos_case")
    op.drop_table("request_photos")
