"""history and drift: scans flagged in_history, per-resource tag baseline, tag change log

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('in_history', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_scans_history', ['in_history', 'created_at'], unique=False)
    # Scheduled snapshots taken before this migration are history; ad-hoc scans never were.
    op.execute(sa.text("UPDATE scans SET in_history = (trigger = 'scheduled')"))

    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_tags', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('previous_scan_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('previous_seen_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('resource_tag_changes',
    sa.Column('scan_id', sa.String(length=36), nullable=False),
    sa.Column('arn', sa.String(length=2048), nullable=False),
    sa.Column('tag_key', sa.String(length=256), nullable=False),
    sa.Column('shard_id', sa.String(length=200), nullable=False),
    sa.Column('previous_scan_id', sa.String(length=36), nullable=True),
    sa.Column('resource_id', sa.String(length=1024), nullable=False),
    sa.Column('resource_type', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('change', sa.String(length=16), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.Column('previous_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('impact', sa.String(length=24), nullable=False),
    sa.Column('impact_reason', sa.Text(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('compliant_before', sa.Boolean(), nullable=True),
    sa.Column('compliant_after', sa.Boolean(), nullable=True),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('scan_id', 'arn', 'tag_key')
    )
    with op.batch_alter_table('resource_tag_changes', schema=None) as batch_op:
        batch_op.create_index('ix_tag_changes_observed', ['observed_at'], unique=False)
        batch_op.create_index('ix_tag_changes_scan_shard', ['scan_id', 'shard_id'], unique=False)
        batch_op.create_index('ix_tag_changes_arn', ['arn'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('resource_tag_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_tag_changes_arn')
        batch_op.drop_index('ix_tag_changes_scan_shard')
        batch_op.drop_index('ix_tag_changes_observed')
    op.drop_table('resource_tag_changes')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('previous_seen_at')
        batch_op.drop_column('previous_scan_id')
        batch_op.drop_column('previous_tags')
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_index('ix_scans_history')
        batch_op.drop_column('in_history')
