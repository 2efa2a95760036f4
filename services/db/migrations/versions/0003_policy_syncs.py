"""policy sync attempts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('policy_syncs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('tag_policies', sa.Integer(), nullable=True),
    sa.Column('accounts', sa.Integer(), nullable=True),
    sa.Column('requested_by', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('policy_syncs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policy_syncs_started_at'), ['started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('policy_syncs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policy_syncs_started_at'))
    op.drop_table('policy_syncs')
