"""fleet-wide transfer slots, tied to move claims

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('transfer_slots',
    sa.Column('move_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('claim_token', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('bw_mb_s', sa.Float(), nullable=True),
    sa.Column('taken_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['move_id'], ['moves.id'], ),
    sa.PrimaryKeyConstraint('move_id')
    )
    with op.batch_alter_table('transfer_slots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transfer_slots_source'), ['source'], unique=False)
        batch_op.create_index(batch_op.f('ix_transfer_slots_target'), ['target'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('transfer_slots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transfer_slots_target'))
        batch_op.drop_index(batch_op.f('ix_transfer_slots_source'))
    op.drop_table('transfer_slots')
