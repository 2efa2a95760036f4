"""cost explorer answers cache

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cost_explorer_cache',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('cost_explorer_cache', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cost_explorer_cache_fetched_at'), ['fetched_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cost_explorer_cache', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cost_explorer_cache_fetched_at'))
    op.drop_table('cost_explorer_cache')
