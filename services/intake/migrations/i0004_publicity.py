"""publicity: typical cases (典型案例) and notices to citizens (通知公告)

Revision ID: i0004_publicity
Revises: i0004 (i0004_merged_into.py)
Create Date: 2026-11-28 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'i0004_publicity'
down_revision: Union[str, Sequence[str], None] = 'i0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('typical_cases',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_no', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('district', sa.String(length=6), nullable=False),
    sa.Column('category', sa.String(length=50), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=50), nullable=False),
    sa.Column('unpublished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unpublished_by', sa.String(length=50), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    info={'service': 'intake'}
    )
    with op.batch_alter_table('typical_cases', schema=None) as batch_op:
        batch_op.create_index('ix_typical_cases_public', ['unpublished_at', 'published_at'], unique=False)
        batch_op.create_index('ix_typical_cases_case', ['case_no'], unique=False)

    op.create_table('notices',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('district', sa.String(length=6), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=50), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_by', sa.String(length=50), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    info={'service': 'intake'}
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index('ix_notices_public', ['withdrawn_at', 'published_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_public')
    op.drop_table('notices')
    with op.batch_alter_table('typical_cases', schema=None) as batch_op:
        batch_op.drop_index('ix_typical_cases_case')
        batch_op.drop_index('ix_typical_cases_public')
    op.drop_table('typical_cases')
