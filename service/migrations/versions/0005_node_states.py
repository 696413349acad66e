"""node lifecycle: node_states and ct_origins

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('node_states',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('since', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name'))
    op.create_table('ct_origins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ct', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=64), nullable=False),
    sa.Column('moved_to', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.JSON(), nullable=False),
    sa.Column('restore_job', sa.Integer(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('ct_origins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ct_origins_ct'), ['ct'], unique=False)
        batch_op.create_index(batch_op.f('ix_ct_origins_origin'), ['origin'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ct_origins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ct_origins_origin'))
        batch_op.drop_index(batch_op.f('ix_ct_origins_ct'))
    op.drop_table('ct_origins')
    op.drop_table('node_states')
