"""a request merged into another case (dispatch.case_merged) remembers which, so its citizen
gets that case's reply

Revision ID: i0004
Revises: i0003_hotline
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "i0004"
down_revision: Union[str, Sequence[str], None] = "i0003_hotline"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("citizen_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_citizen_requests_merged_into", ["merged_into"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("citizen_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_citizen_requests_merged_into")
        batch_op.drop_column("merged_into")
