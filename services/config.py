"""One typed Settings object for every process (gateway, worker, beat, CLI).

Two modes share the same code: ``embedded`` (the default; SQLite file, in-process broker and worker,
nothing to configure) and ``production`` (PostgreSQL, Redis broker). Production refuses the embedded
defaults instead of silently running on them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scanner.ratelimit import parse_rate_limits
from services.errors import InvalidInput

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policies" / "examples" / "default.json"
_CLOCK_TIME = re.compile(r"([01]?\d|2[0-3]):[0-5]\d")


class Settings(BaseSettings):
    """Configuration read from the environment (``FINOPS_*`` plus the conventional URL variables)."""

    model_config = SettingsConfigDict(env_prefix="FINOPS_", extra="ignore", populate_by_name=True)

    mode: Literal["embedded", "production"] = "embedded"
    home: Path = Field(default_factory=lambda: Path.home() / ".finops-tags",
                       description="Folder for the embedded database and policy files.")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    celery_broker_url: str | None = Field(default=None, validation_alias="CELERY_BROKER_URL")
    celery_result_backend: str | None = Field(default=None, validation_alias="CELERY_RESULT_BACKEND")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    # AWS access. boto3 reads credentials itself; the endpoint is only set for an emulator.
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    aws_default_region: str = Field(default="us-east-1", validation_alias="AWS_DEFAULT_REGION")
    aws_role_name: str = "OrganizationAccountAccessRole"
    aws_role_arn_template: str | None = Field(default=None, description=(
        "Role assumed in each member account as an ARN template with {account_id}, e.g. "
        "arn:aws:iam::{account_id}:role/FinOpsTagComplianceScanner; wins over FINOPS_AWS_ROLE_NAME."))
    aws_external_id: str | None = None
    share_role_credentials: bool = Field(default=True, description=(
        "Share assumed-role credentials between worker processes through Redis (one AssumeRole per account "
        "instead of one per process); false keeps them in each process."))
    accounts: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                description="Default accounts to scan; empty = the caller's account.")
    regions: Annotated[list[str], NoDecode] = Field(default_factory=list,
                               description="Region allow-list; empty = every enabled region.")

    policy_path: Path = DEFAULT_POLICY_PATH
    policy_dir: Path | None = Field(default=None, description=(
        "The only folder imported policies are written to (default: FINOPS_HOME/policies)."))
    # Where the rules come from. "auto": AWS Organizations tag policies when FINOPS_POLICY_PATH is not set
    # and the credentials reach an organization's management account, else the policy file.
    policy_source: Literal["auto", "file", "aws-organizations"] = "auto"
    policy_sync_minutes: int = Field(default=360, ge=0, le=10080, description=(
        "How often beat re-syncs AWS Organizations tag policies (and how old a sync may be before a CLI "
        "scan or a gateway start syncs again); 0 = only at start-up and on request."))

    # Cost data: a FOCUS export the operator points at, else AWS Cost Explorer. Tools never take a file
    # path: reading wherever a model points would expose the host's files.
    focus_path: str | None = Field(default=None, description=(
        "FOCUS cost export (a local file or folder, or s3://bucket/prefix) that prices resources and the gap."))
    cost_metric: Literal["EffectiveCost", "BilledCost"] = Field(default="EffectiveCost", description=(
        "FOCUS column (Cost Explorer: AmortizedCost / UnblendedCost) every figure sums."))
    cost_explorer: bool = Field(default=True, description=(
        "Ask AWS Cost Explorer when no FOCUS export is configured (each request costs USD 0.01; answers cached)."))
    cost_cache_hours: float = Field(default=12.0, ge=0, le=168, description=(
        "How long Cost Explorer answers are reused (its data refreshes a few times a day); 0 = never reuse."))

    # A tool call never blocks past this: common MCP clients time out at 60 s.
    tool_wait_seconds: float = Field(default=45.0, ge=0, le=55)
    # Soft limit lets a shard record why it stopped; the hard limit kills a hung one.
    shard_soft_time_limit: int = 240
    shard_hard_time_limit: int = 300
    shard_max_retries: int = 3
    # Shard packing (services.scans): an account-region's types are one shard, collected side by side by
    # this many threads; a type that had this many resources there at its last observation gets its own.
    # 8: an account-region shard of a full scan holds ~20 types; side by side its latency chain stays short
    # with few worker processes (bench.scale: 2 workers x 4 processes x 8 beat 2 x 8 x 4 on 2 cores).
    shard_type_threads: int = Field(default=8, ge=1, le=16, description=(
        "Resource types a shard collects side by side (1 = one after another)."))
    shard_split_resources: int = Field(default=1000, ge=1, le=10_000_000, description=(
        "A type with at least this many resources in an account-region at its last scan gets a shard of its own."))
    embedded_worker_threads: int = Field(default=4, ge=1, le=32)
    # Scan workers are batch work beside interactive readers: on a shared host (the compose stack) they
    # yield the CPU to the gateway, PostgreSQL and Redis, whose answers every shard and every client waits on.
    # On a host of their own it changes nothing.
    worker_nice: int = Field(default=10, ge=0, le=19, description=(
        "CPU priority (nice value) Celery workers lower themselves to at start; 0 keeps the inherited one."))
    api_call_attempts: int = Field(default=5, ge=1, le=10)
    # Client-side budgets per (account, region, API family), shared through Redis by every worker in
    # production (scanner.shared_ratelimit), per process in the embedded mode.
    api_rate_per_s: float = Field(default=20.0, gt=0, le=10000, description=(
        "Calls per second per account, region and API family, unless FINOPS_API_RATE_LIMITS names the family."))
    api_burst: int = Field(default=100, ge=1, le=10000, description=(
        "Calls a bucket may make at once after a pause (defaults follow EC2's documented Describe* bucket)."))
    api_rate_limits: str = Field(default="", description=(
        "Per-family budgets as FAMILY=RATE[:BURST] separated by commas, e.g. ec2=20:40,tagging=5:10."))
    # Inventory reuse: a shard with the same account, region, types, region filter and policy version that
    # succeeded this recently is not collected again (force_refresh skips the reuse). 0 = never reuse.
    inventory_cache_minutes: float = Field(default=0.0, ge=0, le=1440, description=(
        "Reuse the inventory of a shard collected this many minutes ago by an identical scan (0 = off)."))

    # History: beat's daily snapshot (a full scan flagged "scheduled") and which scans count in trends.
    snapshot_time: str = Field(default="02:00", description=(
        "When beat takes the daily compliance snapshot, HH:MM on a 24-hour clock in snapshot_timezone."))
    snapshot_timezone: str = Field(default="UTC", description="IANA time zone of snapshot_time, e.g. Europe/Paris.")
    history_min_coverage: float = Field(default=0.95, ge=0, le=1, description=(
        "A partial scan (some shards failed) enters history only when at least this share of its shards "
        "succeeded; below it its counts would read as a drop in resources."))

    # Scheduled audits (services.audit_schedules): beat re-reads the table this often, and notifications.
    schedule_min_interval_minutes: int = Field(default=60, ge=1, le=1440, description=(
        "Shortest time between two runs of one audit schedule: each run scans the whole scope, so a model "
        "must not be able to start one every minute."))
    schedule_refresh_seconds: float = Field(default=30.0, ge=1, le=600, description=(
        "How often beat re-reads the audit_schedules table: a schedule created, changed or deleted through the "
        "API takes effect within about this delay, without restarting beat."))
    schedule_notify_wait_minutes: int = Field(default=360, ge=1, le=2880, description=(
        "How long a scheduled audit waits for its scan to finish before giving up on the notification."))
    public_url: str | None = Field(default=None, description=(
        "The gateway's public base URL, e.g. https://finops.example.com; notifications then link to the report."))
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Host names notification webhooks may target (exact, or *.example.com); empty = any host."))
    webhook_allow_private_hosts: bool = Field(default=False, description=(
        "Let webhooks reach loopback, private, link-local and metadata addresses (off: a model could otherwise "
        "make the server post to internal services, e.g. 169.254.169.254)."))
    webhook_allow_http: bool = Field(default=False, description=(
        "Accept plain-http webhook URLs (off: a webhook URL is a secret and travels only over https)."))
    email_attachment_max_bytes: int = Field(default=5_000_000, ge=10_000, le=50_000_000, description=(
        "Larger rendered reports are not attached; the email carries the summary and the report link."))
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    notify_attempts: int = Field(default=3, ge=1, le=5, description="Tries per recipient (webhook or SMTP).")
    smtp_host: str | None = Field(default=None, description="SMTP server for emailed audit reports; unset = no email.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = Field(default="finops-tags@localhost", description="From address of audit emails.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS (port 587).")
    smtp_ssl: bool = Field(default=False, description="Implicit TLS from the first byte (port 465).")
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=20.0, gt=0, le=120)

    # Bulk tagging (services.tagging): risk thresholds and approvals. A request crossing any threshold is
    # "high" risk; one over half of any is "medium"; the requester may approve only up to self_approval.
    tagging_risk_resources: int = Field(default=100, ge=1, description=(
        "Resources in one tagging request above which it is high risk."))
    tagging_risk_estate_share: float = Field(default=0.10, gt=0, le=1, description=(
        "Share of the scanned resources of the touched accounts above which a request is high risk."))
    tagging_risk_production_resources: int = Field(default=10, ge=0, description=(
        "Production-tagged resources (an env/environment tag starting with 'prod') above which a request is "
        "high risk."))
    tagging_risk_accounts: int = Field(default=3, ge=1, description=(
        "Accounts touched by one request above which it is high risk."))
    tagging_self_approval_max_risk: Literal["none", "low", "medium", "high"] = Field(default="low", description=(
        "Highest risk level a requester may approve themselves ('none': always a second person)."))
    tagging_request_ttl_hours: float = Field(default=24.0, gt=0, le=720, description=(
        "A tagging request not decided within this many hours expires."))
    tagging_apply_attempts: int = Field(default=4, ge=1, le=10, description=(
        "Tries per TagResources batch for the ARNs AWS reports in FailedResourcesMap."))

    # Access control (services.auth). Unset: off in embedded mode, on in production (API keys, plus OAuth
    # when an issuer is configured). Production refuses "off" unless auth_disabled_i_know is set.
    auth_mode: Literal["off", "oauth", "apikey", "both"] | None = Field(default=None, description=(
        "Who may call the HTTP API and MCP over HTTP: off, oauth (JWT access tokens), apikey, or both."))
    auth_disabled_i_know: bool = Field(default=False, description=(
        "Allow production mode with auth_mode=off (e.g. behind an authenticating proxy)."))
    oauth_issuer: str | None = Field(default=None, description="Expected `iss` of access tokens (the issuer URL).")
    oauth_audience: str | None = Field(default=None, description=(
        "Expected `aud` of access tokens: this API's identifier at the issuer."))
    oauth_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL (keys fetched and cached).")
    oauth_jwks: str | None = Field(default=None, description="Inline JWKS JSON instead of a URL (air-gapped setups).")
    oauth_public_key: str | None = Field(default=None, description="One PEM public key instead of a JWKS.")
    oauth_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["RS256", "ES256"])
    oauth_jwks_cache_seconds: float = Field(default=300, ge=1, le=86400)
    api_key_pepper: SecretStr | None = Field(default=None, description=(
        "Server-side secret mixed into API key hashes; changing it invalidates every key."))
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300, description=(
        "How long a looked-up API key is reused: a rotation or revocation takes effect within this delay."))
    stdio_scopes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["tag:read"], description=(
        "Scopes of the local user of `finops-tags mcp` (stdio); read-only by default."))

    # Agent safety (services.agent_safety): limits per principal, kept in Redis (REDIS_URL, else the broker) in
    # production and in the process in embedded mode. 0 turns a limit off.
    agent_calls_per_minute: int = Field(default=120, ge=0, description=(
        "Calls (MCP tools and /v1 requests together) one principal may make per minute."))
    agent_daily_read_calls: int = Field(default=20_000, ge=0, description=(
        "Read calls (status, lists, reports) one principal may make per UTC day."))
    agent_daily_write_calls: int = Field(default=1_000, ge=0, description=(
        "Write calls (tagging requests, approvals, schedules, API keys) one principal may make per UTC day."))
    agent_daily_expensive_calls: int = Field(default=200, ge=0, description=(
        "Expensive calls (scans, live cloud reads, cost queries, policy syncs) one principal may make per UTC day."))
    agent_repeat_limit: int = Field(default=5, ge=0, description=(
        "Identical calls (same principal, tool and arguments) allowed within agent_repeat_window_seconds; one "
        "more is refused as a loop."))
    agent_poll_repeat_limit: int = Field(default=30, ge=0, description=(
        "The same for polling tools (get_scan_status, get_tagging_request, reading a scan by id): repeating "
        "them is how a running job is followed, so they get a higher limit."))
    agent_repeat_window_seconds: int = Field(default=60, ge=1, le=3600, description=(
        "Window of the identical-call (loop) detection."))
    agent_max_body_bytes: int = Field(default=1_000_000, ge=1_024, description=(
        "Largest HTTP request body (and MCP tool arguments, as JSON) accepted; larger answers 413."))
    agent_max_string_chars: int = Field(default=4_096, ge=64, description=(
        "Longest string in any argument or body field (documents such as policies have their own limit)."))
    agent_max_document_bytes: int = Field(default=262_144, ge=1_024, description=(
        "Largest document argument (a tagging policy as JSON object or text)."))
    agent_max_list_items: int = Field(default=5_000, ge=1, description=(
        "Most items in any list argument (ARNs, resource types, recipients, ...)."))

    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("accounts", "regions", "webhook_allowed_hosts", "oauth_algorithms", "stdio_scopes",
                     mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # Environment variables hold "a,b,c", not JSON.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_rate_limits")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        try:
            parse_rate_limits(value)
        except ValueError as exc:
            raise ValueError(f"FINOPS_API_RATE_LIMITS: {exc}") from None
        return value

    @field_validator("aws_role_arn_template")
    @classmethod
    def _role_template(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith("arn:") or ":role/" not in value or "{account_id}" not in value:
            raise ValueError("FINOPS_AWS_ROLE_ARN_TEMPLATE must be a role ARN with {account_id}, e.g. "
                             f"arn:aws:iam::{{account_id}}:role/FinOpsTagComplianceScanner; got {value!r}")
        try:
            value.format(account_id="111122223333")
        except (KeyError, IndexError, ValueError):
            raise ValueError("FINOPS_AWS_ROLE_ARN_TEMPLATE may contain only the {account_id} placeholder; "
                             f"got {value!r}") from None
        return value

    @field_validator("snapshot_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not _CLOCK_TIME.fullmatch(value.strip()):
            raise ValueError(f"FINOPS_SNAPSHOT_TIME must be HH:MM on a 24-hour clock (00:00 to 23:59), "
                             f"e.g. 02:00; got {value!r}")
        hour, minute = value.strip().split(":")
        return f"{int(hour):02d}:{minute}"

    @field_validator("snapshot_timezone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"FINOPS_SNAPSHOT_TIMEZONE must be an IANA time zone such as UTC or Europe/Paris; "
                             f"got {value!r}") from None
        return value

    @property
    def snapshot_hour_minute(self) -> tuple[int, int]:
        """``snapshot_time`` as (hour, minute)."""
        hour, minute = self.snapshot_time.split(":")
        return int(hour), int(minute)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.mode != "production":
            return self
        problems = []
        if not self.database_url or self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL must point at PostgreSQL (postgresql+psycopg://...)")
        if not self.celery_broker_url or self.celery_broker_url.startswith("memory"):
            problems.append("CELERY_BROKER_URL must point at Redis (redis://...)")
        if self.effective_auth_mode == "off" and not self.auth_disabled_i_know:
            problems.append("FINOPS_AUTH_MODE=off leaves the API open: use oauth, apikey or both, or set "
                            "FINOPS_AUTH_DISABLED_I_KNOW=true when a proxy in front authenticates every call")
        if problems:
            raise ValueError("production mode refuses embedded defaults: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _auth_complete(self) -> Settings:
        if self.effective_auth_mode in ("oauth", "both"):
            missing = [name for name, value in (("FINOPS_OAUTH_ISSUER", self.oauth_issuer),
                                                ("FINOPS_OAUTH_AUDIENCE", self.oauth_audience)) if not value]
            if not (self.oauth_jwks_url or self.oauth_jwks or self.oauth_public_key):
                missing.append("FINOPS_OAUTH_JWKS_URL (or FINOPS_OAUTH_JWKS / FINOPS_OAUTH_PUBLIC_KEY)")
            if missing:
                raise ValueError(f"FINOPS_AUTH_MODE={self.effective_auth_mode} needs " + ", ".join(missing))
        unknown = sorted(set(self.stdio_scopes) - {"tag:read", "tag:write", "tag:approve", "admin"})
        if unknown:
            raise ValueError(f"FINOPS_STDIO_SCOPES: unknown scope(s) {', '.join(unknown)}; "
                             "use tag:read, tag:write, tag:approve, admin")
        return self

    @property
    def effective_auth_mode(self) -> Literal["off", "oauth", "apikey", "both"]:
        """The auth mode in force: explicit, else off in embedded mode, else API keys (+ OAuth if configured)."""
        if self.auth_mode is not None:
            return self.auth_mode
        if self.mode != "production":
            return "off"
        return "both" if self.oauth_issuer else "apikey"

    @property
    def organization_policies_wanted(self) -> bool:
        """Whether AWS Organizations tag policies should be synced (and govern the accounts they cover)."""
        if self.policy_source == "auto":
            return "policy_path" not in self.model_fields_set  # an explicitly configured file wins
        return self.policy_source == "aws-organizations"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'finops.sqlite'}"

    @property
    def effective_policy_dir(self) -> Path:
        return self.policy_dir or self.home / "policies"

    @property
    def effective_broker_url(self) -> str:
        return self.celery_broker_url or "memory://"

    @property
    def embedded_worker(self) -> bool:
        """True when tasks run on a worker thread inside this process (no broker server)."""
        return self.effective_broker_url.startswith("memory://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Invalid values become an InvalidInput naming the field."""
    try:
        return Settings()
    except ValueError as exc:
        raise InvalidInput(f"invalid configuration: {exc}", field="environment",
                           fix="correct the FINOPS_* / DATABASE_URL / CELERY_BROKER_URL variables") from exc
