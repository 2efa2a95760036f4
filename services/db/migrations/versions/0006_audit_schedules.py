"""audit_schedules: scheduled compliance audits read by beat's DatabaseScheduler

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_schedules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('cron', sa.String(length=120), nullable=False),
    sa.Column('frequency', sa.String(length=16), nullable=True),
    sa.Column('time_of_day', sa.String(length=5), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('resource_types', sa.JSON(), nullable=True),
    sa.Column('accounts', sa.JSON(), nullable=True),
    sa.Column('regions', sa.JSON(), nullable=True),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('notification_format', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_scan_id', sa.String(length=36), nullable=True),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_run_key', sa.String(length=64), nullable=True),
    sa.Column('notified_scan_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_schedules_enabled'), ['enabled'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_schedules_enabled'))
    op.drop_table('audit_schedules')
