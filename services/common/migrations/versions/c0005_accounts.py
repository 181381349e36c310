"""staff accounts: must_change_password (admin-set passwords are changed at the next login)

Revision ID: c0005_accounts
Revises: c0004

The role identifiers did not change (services/common/web/roles.py adds new ones next to
the old), so no data migration of ``staff_users.role`` is needed.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "c0005_accounts"
down_revision: Union[str, Sequence[str], None] = "c0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("must_change_password")
