"""fencing tokens on job and move claims

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('jobs', 'moves'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('claim_token', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    for table in ('moves', 'jobs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('claim_token')
