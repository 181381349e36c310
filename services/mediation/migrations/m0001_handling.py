"""mediation tables: who handles a mediation case, and whether it is confidential

Revision ID: m0001_handling
Revises: (first revision of branch "mediation")
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "m0001_handling"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ("mediation",)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "mediation_handling",
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("mediator", sa.String(length=50), nullable=False),
        sa.Column("mediator_name", sa.String(length=100), nullable=False),
        sa.Column("confidential", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_no"),
        info={"service": "mediation"},
    )


def downgrade() -> None:
    op.drop_table("mediation_handling")
