"""citizen requests keep the point and media link an Open311 client sends

Revision ID: i0002
Revises: i0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i0002"
down_revision: str | Sequence[str] | None = "i0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("citizen_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("media_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("citizen_requests", schema=None) as batch_op:
        batch_op.drop_column("media_url")
        batch_op.drop_column("longitude")
        batch_op.drop_column("latitude")
