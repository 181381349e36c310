"""work items carry the deadline of their task (for red/amber badges)

Revision ID: c0002
Revises: c0001
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "c0002"
down_revision: Union[str, Sequence[str], None] = "c0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.drop_column("due_at")
