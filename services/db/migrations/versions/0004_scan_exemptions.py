"""exemptions: per-resource waived violations, per-scan summary

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exemptions', sa.JSON(), nullable=True))
    with op.batch_alter_table('scan_resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waived_violations', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('exempted_by', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scan_resources', schema=None) as batch_op:
        batch_op.drop_column('exempted_by')
        batch_op.drop_column('waived_violations')
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_column('exemptions')
