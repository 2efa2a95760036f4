"""SQLAlchemy models. The same schema runs on PostgreSQL (production) and SQLite (embedded).

Keys are chosen for idempotency: a redelivered shard rewrites the same (scan, ARN) and
(scan, ARN, rule) rows instead of adding new ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class PolicyRow(Base):
    """A tagging policy version; the id is the content hash, so the same text is stored once."""

    __tablename__ = "policies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_label: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(512))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str | None] = mapped_column(String(256), default=None)


class AccountPolicyRow(Base):
    """The effective policy version in force for one account (from AWS Organizations tag policies).

    Replaced on every sync; scans copy the mapping at submit time so a sync mid-scan changes nothing.
    """

    __tablename__ = "account_policies"

    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    policy_id: Mapped[str] = mapped_column(ForeignKey("policies.id"))
    source: Mapped[str] = mapped_column(Text)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class PolicySyncRow(Base):
    """One attempt to sync AWS Organizations tag policies (startup, beat, or a person), kept for /health."""

    __tablename__ = "policy_syncs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # running | succeeded | failed | not_applicable (no organization: the policy file stays in force)
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text, default=None)
    tag_policies: Mapped[int | None] = mapped_column(Integer, default=None)
    accounts: Mapped[int | None] = mapped_column(Integer, default=None)
    requested_by: Mapped[str] = mapped_column(String(256), default="local")


class ScanRow(Base):
    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_history", "in_history", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    requested_by: Mapped[str] = mapped_column(String(128), default="local")
    trigger: Mapped[str] = mapped_column(String(16), default="interactive")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_id: Mapped[str] = mapped_column(ForeignKey("policies.id"))
    # account id -> policy version, when accounts are judged by their own effective policies.
    policy_by_account: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    shards_total: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    total_resources: Mapped[int | None] = mapped_column(Integer, default=None)
    in_scope_resources: Mapped[int | None] = mapped_column(Integer, default=None)
    compliant_resources: Mapped[int | None] = mapped_column(Integer, default=None)
    compliance_score: Mapped[float | None] = mapped_column(Float, default=None)
    breakdowns: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    data_quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # What the policies' exemptions did in this scan (schemas.ExemptionSummary), set when it finishes.
    exemptions: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # A point of the compliance history (services.history): scheduled snapshots and store_snapshot scans.
    in_history: Mapped[bool] = mapped_column(Boolean, default=False)


class ScanShardRow(Base):
    """One unit of work: an (account, region, resource-type group) of a scan."""

    __tablename__ = "scan_shards"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    group: Mapped[str] = mapped_column(String(64))
    resource_types: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    throttles: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Calls, retries and throttles per API family ({"ec2": {"calls": 12, "retries": 1, "throttles": 1}}).
    api_by_family: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The scan whose inventory this shard reused (FINOPS_INVENTORY_CACHE_MINUTES), None when collected.
    reused_from_scan: Mapped[str | None] = mapped_column(String(36), default=None)
    resources_found: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[list[Any]] = mapped_column(JSON, default=list)
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ScanResourceRow(Base):
    """A resource as one scan saw it, with its evaluation outcome."""

    __tablename__ = "scan_resources"
    __table_args__ = (
        Index("ix_scan_resources_scan_shard", "scan_id", "shard_id"),
        Index("ix_scan_resources_scan_type", "scan_id", "resource_type"),
    )

    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048), primary_key=True)
    shard_id: Mapped[str] = mapped_column(String(200))
    resource_id: Mapped[str] = mapped_column(String(1024))
    resource_type: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(1024), default=None)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    in_scope: Mapped[bool] = mapped_column(Boolean)
    compliant: Mapped[bool] = mapped_column(Boolean)
    violation_count: Mapped[int] = mapped_column(Integer, default=0)
    # Violations that active exemptions waived (not stored as violations) and the exemptions' ids.
    waived_violations: Mapped[int] = mapped_column(Integer, default=0)
    exempted_by: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class ResourceRow(Base):
    """Latest known tag state per ARN across scans (first and last seen)."""

    __tablename__ = "resources"

    arn: Mapped[str] = mapped_column(String(2048), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(1024))
    resource_type: Mapped[str] = mapped_column(String(128), index=True)
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    region: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(1024), default=None)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_scan_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # The state before last_scan_id saw it (None: first sighting). Drift compares against it, so a
    # redelivered shard of the same scan finds the same baseline again (services.drift).
    previous_tags: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    previous_scan_id: Mapped[str | None] = mapped_column(String(36), default=None)
    previous_seen_at: Mapped[datetime | None] = mapped_column(default=None)


class ResourceTagChangeRow(Base):
    """One tag of one resource that differs from the previous observation (drift), keyed by the scan
    that saw it, so a redelivered shard rewrites the same rows."""

    __tablename__ = "resource_tag_changes"
    __table_args__ = (
        Index("ix_tag_changes_observed", "observed_at"),
        Index("ix_tag_changes_scan_shard", "scan_id", "shard_id"),
        Index("ix_tag_changes_arn", "arn"),
    )

    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048), primary_key=True)
    tag_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    shard_id: Mapped[str] = mapped_column(String(200))
    previous_scan_id: Mapped[str | None] = mapped_column(String(36), default=None)
    resource_id: Mapped[str] = mapped_column(String(1024))
    resource_type: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    # added | removed | changed
    change: Mapped[str] = mapped_column(String(16))
    old_value: Mapped[str | None] = mapped_column(Text, default=None)
    new_value: Mapped[str | None] = mapped_column(Text, default=None)
    # The change happened between these two observations.
    previous_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # regression | required_tag_changed | improvement | neutral (services.drift.classify)
    impact: Mapped[str] = mapped_column(String(24))
    impact_reason: Mapped[str] = mapped_column(Text)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    compliant_before: Mapped[bool | None] = mapped_column(Boolean, default=None)
    compliant_after: Mapped[bool | None] = mapped_column(Boolean, default=None)


class ViolationRow(Base):
    __tablename__ = "violations"
    __table_args__ = (
        Index("ix_violations_scan_shard", "scan_id", "shard_id"),
        Index("ix_violations_scan_severity", "scan_id", "severity"),
    )

    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True)
    resource_arn: Mapped[str] = mapped_column(String(2048), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    shard_id: Mapped[str] = mapped_column(String(200))
    resource_id: Mapped[str] = mapped_column(String(1024))
    resource_type: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    tag_name: Mapped[str] = mapped_column(String(256))
    violation_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    current_value: Mapped[str | None] = mapped_column(Text, default=None)
    allowed_values: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    message: Mapped[str] = mapped_column(Text)
    suggestion: Mapped[str | None] = mapped_column(Text, default=None)
    # Which policy (and inheritance level) the broken rule came from.
    rule_source: Mapped[str | None] = mapped_column(String(512), default=None)


class AuditRow(Base):
    """Append-only record of every tool, API and CLI call; the application never updates it."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    principal: Mapped[str] = mapped_column(String(256))
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(128))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str] = mapped_column(String(32))
    correlation_id: Mapped[str | None] = mapped_column(String(64), default=None)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)


class ApiKeyRow(Base):
    """A service account's API key. Only a salted hash of the secret is stored; the plaintext is shown
    once at creation. Rotation adds a new row and revokes the old one (``rotated_from`` links them)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public key id, part of the key text
    name: Mapped[str] = mapped_column(String(128), index=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    salt: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    rotated_from: Mapped[str | None] = mapped_column(String(32), default=None)


class AuditScheduleRow(Base):
    """A scheduled compliance audit: when (a 5-field cron in an IANA time zone), what (scan scope) and
    who hears about it (webhook URLs, email addresses). Beat's DatabaseScheduler re-reads this table;
    the run task records the outcome of each run here."""

    __tablename__ = "audit_schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The effective 5-field cron; frequency/time_of_day keep the peer's daily|weekly|monthly + HH:MM form.
    cron: Mapped[str] = mapped_column(String(120))
    frequency: Mapped[str | None] = mapped_column(String(16), default=None)
    time_of_day: Mapped[str | None] = mapped_column(String(5), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    resource_types: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    accounts: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    regions: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    notification_format: Mapped[str] = mapped_column(String(16), default="html")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    created_by: Mapped[str] = mapped_column(String(256), default="local")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Changes of the definition only (a run does not touch it): beat rebuilds an entry when it moves.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_scan_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # queued | running | succeeded | partial | failed | cancelled | skipped | notified | notify_failed
    last_status: Mapped[str | None] = mapped_column(String(16), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # The Celery task id of the last run: a redelivered message finds its own run instead of starting one.
    last_run_key: Mapped[str | None] = mapped_column(String(64), default=None)
    # The scan whose notifications went out: claimed before sending, so no run notifies twice.
    notified_scan_id: Mapped[str | None] = mapped_column(String(36), default=None)


class CostExplorerCacheRow(Base):
    """A Cost Explorer answer kept for reuse: every request costs USD 0.01 and the data changes a few
    times a day. ``key`` hashes the account and the exact request parameters."""

    __tablename__ = "cost_explorer_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TaggingRequestRow(Base):
    """A bulk tag change as it was asked for: immutable once created (a change makes a new request).

    ``changes`` holds the exact per-resource change with the values it replaces (``previous``), so a
    rollback request can restore them. Only ``status`` and the timestamps move afterwards.
    """

    __tablename__ = "tagging_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    intent: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column()
    # draft | pending_approval | approved | denied | expired | applying | applied | partially_applied |
    # failed | rolled_back
    status: Mapped[str] = mapped_column(String(24), index=True)
    risk_level: Mapped[str] = mapped_column(String(8))
    risk_reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # [{arn, account_id, region, resource_type, set: {k: v}, remove: [k], previous: {k: v|None}}]
    changes: Mapped[list[Any]] = mapped_column(JSON)
    resource_count: Mapped[int] = mapped_column(Integer)
    preview: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rollback_of: Mapped[str | None] = mapped_column(ForeignKey("tagging_requests.id"), default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class TaggingDecisionRow(Base):
    """The approval or denial of a request: one per request (the primary key), so none can be replayed."""

    __tablename__ = "tagging_decisions"

    request_id: Mapped[str] = mapped_column(ForeignKey("tagging_requests.id", ondelete="CASCADE"), primary_key=True)
    decided_by: Mapped[str] = mapped_column(String(256))
    # approved | denied
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaggingOutcomeRow(Base):
    """What happened to one resource of an approved request."""

    __tablename__ = "tagging_outcomes"
    __table_args__ = (Index("ix_tagging_outcomes_group", "request_id", "account_id", "region"),)

    request_id: Mapped[str] = mapped_column(ForeignKey("tagging_requests.id", ondelete="CASCADE"), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    # pending | applied | failed | drifted
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The tags read back that differ from what was applied (drifted): {key: value|None}.
    observed: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
