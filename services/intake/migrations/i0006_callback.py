"""satisfaction callback (回访) and citizen notifications: ratings, the notification outbox,
the citizen's optional e-mail and the callback state of a case

Revision ID: i0006_callback
Revises: i0005_uploads
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "i0006_callback"
down_revision: Union[str, Sequence[str], None] = "i0005_uploads"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("citizen_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("reply_round", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("callback_phase", sa.String(length=20), nullable=True))
    op.create_table(
        "satisfaction_ratings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("dispatch_case_no", sa.String(length=40), nullable=False),
        sa.Column("reply_round", sa.Integer(), nullable=False),
        sa.Column("rating", sa.String(length=30), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        info={"service": "intake"},
    )
    with op.batch_alter_table("satisfaction_ratings", schema=None) as batch_op:
        batch_op.create_index("ix_satisfaction_ratings_case", ["dispatch_case_no", "reply_round"], unique=False)
        batch_op.create_index("ix_satisfaction_ratings_reporter", ["case_no"], unique=False)
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_ref", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        info={"service": "intake"},
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_due", ["sent_at", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_notifications_case", ["case_no"], unique=False)


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("satisfaction_ratings")
    with op.batch_alter_table("citizen_requests", schema=None) as batch_op:
        batch_op.drop_column("callback_phase")
        batch_op.drop_column("reply_round")
        batch_op.drop_column("email")
