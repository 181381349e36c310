"""work lists stay cheap at a million open cases: one index per list's query shape

Revision ID: c0005_scale_indexes
Revises: c0005_accounts, c0005_rate_limits (and merges the two heads of the common branch)

``ix_work_items_task_created`` (task_name, created_at): a whole task's list, oldest first,
without a district (the admin's queue, the claim pool, the chief's list, supervision's
board) read in index order instead of sorting every open item.
``ix_work_items_task_department`` (task_name, department, created_at): a department's
inbox, likewise. Measured with bench/scale.py (docs/benchmarks.md).
"""
from typing import Sequence, Union

from alembic import op

revision: str = "c0005_scale_indexes"
down_revision: Union[str, Sequence[str], None] = ("c0005_accounts", "c0005_rate_limits")
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_work_items_task_created", "work_items", ["task_name", "created_at"])
    op.create_index("ix_work_items_task_department", "work_items", ["task_name", "department", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_work_items_task_department", table_name="work_items")
    op.drop_index("ix_work_items_task_created", table_name="work_items")
