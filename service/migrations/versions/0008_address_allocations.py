"""addresses handed out by address plans, per job

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'address_allocations',
        sa.Column('job_id', sa.Integer(), sa.ForeignKey('jobs.id'), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('ct', sa.String(length=64), nullable=False),
        sa.Column('network', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'address'),
    )
    op.create_index('ix_address_allocations_address', 'address_allocations', ['address'])


def downgrade() -> None:
    op.drop_index('ix_address_allocations_address', table_name='address_allocations')
    op.drop_table('address_allocations')
