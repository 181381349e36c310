"""12345 hotline: orders taken (order_id → case) and the status outbox back to the hotline

Revision ID: i0003_hotline
Revises: i0002
Create Date: 2026-11-27 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'i0003_hotline'
down_revision: Union[str, Sequence[str], None] = 'i0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('hotline_orders',
    sa.Column('order_id', sa.String(length=64), nullable=False),
    sa.Column('case_no', sa.String(length=40), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('order_id'),
    info={'service': 'intake'}
    )
    with op.batch_alter_table('hotline_orders', schema=None) as batch_op:
        batch_op.create_index('ix_hotline_orders_case', ['case_no'], unique=True)

    op.create_table('hotline_status_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('order_id', sa.String(length=64), nullable=False),
    sa.Column('case_no', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id'),
    info={'service': 'intake'}
    )
    with op.batch_alter_table('hotline_status_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_hotline_status_outbox_unsent', ['sent_at', 'id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('hotline_status_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_hotline_status_outbox_unsent')
    op.drop_table('hotline_status_outbox')
    with op.batch_alter_table('hotline_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_hotline_orders_case')
    op.drop_table('hotline_orders')
