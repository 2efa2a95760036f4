"""shard throttles, per-family API counts, inventory reuse

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 12:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scan_shards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('throttles', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('api_by_family', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reused_from_scan', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scan_shards', schema=None) as batch_op:
        batch_op.drop_column('reused_from_scan')
        batch_op.drop_column('api_by_family')
        batch_op.drop_column('throttles')
