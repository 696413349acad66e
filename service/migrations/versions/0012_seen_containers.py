"""the containers each node was last seen holding (service/recovery_seen.py)

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'seen_containers',
        sa.Column('node', sa.String(length=64), nullable=False),
        sa.Column('ct', sa.String(length=64), nullable=False),
        sa.Column('facts', sa.JSON(), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('node', 'ct'),
    )


def downgrade() -> None:
    op.drop_table('seen_containers')
