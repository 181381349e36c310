"""request counts: requests per China day, district and channel (受理量统计 reads these),
filled from the requests already stored

Revision ID: i0007_request_counts
Revises: i0006_callback

(services/intake/volume_counts.py, docs/publicity.md)
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "i0007_request_counts"
down_revision: Union[str, Sequence[str], None] = "i0006_callback"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The China day (UTC+8, no daylight saving) of created_at, a UTC instant.
CHINA_DAY = {
    "postgresql": "((created_at AT TIME ZONE 'UTC') + INTERVAL '8 hours')::date",
    # SQLite keeps created_at as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC and a date as 'YYYY-MM-DD'.
    "sqlite": "date(created_at, '+8 hours')",
}


def upgrade() -> None:
    op.create_table(
        "request_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("district", sa.String(length=6), nullable=False),
        sa.Column("channel", sa.String(length=30), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "district", "channel"),
        info={"service": "intake"},
    )
    day = CHINA_DAY[op.get_bind().dialect.name]
    # Intake is stopped during an upgrade (docs/operations.md, "Upgrades"): no request is
    # stored between this count and the new code's first one.
    op.execute(f"INSERT INTO request_counts (day, district, channel, n) "
               f"SELECT {day}, district, channel, count(*) FROM citizen_requests "
               f"GROUP BY {day}, district, channel")


def downgrade() -> None:
    op.drop_table("request_counts")
