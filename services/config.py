"""One typed Settings object for every process (gateway, worker, beat, CLI).

Two modes share the same code: ``embedded`` (the default; SQLite file, in-process broker and worker,
nothing to configure) and ``production`` (PostgreSQL, Redis broker). Production refuses the embedded
defaults instead of silently running on them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.errors import InvalidInput

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policies" / "examples" / "default.json"


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
    aws_external_id: str | None = None
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

    # A tool call never blocks past this: common MCP clients time out at 60 s.
    tool_wait_seconds: float = Field(default=45.0, ge=0, le=55)
    # Soft limit lets a shard record why it stopped; the hard limit kills a hung one.
    shard_soft_time_limit: int = 240
    shard_hard_time_limit: int = 300
    shard_max_retries: int = 3
    embedded_worker_threads: int = Field(default=4, ge=1, le=32)
    api_call_attempts: int = Field(default=5, ge=1, le=10)

    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("accounts", "regions", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # Environment variables hold "a,b,c", not JSON.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.mode != "production":
            return self
        problems = []
        if not self.database_url or self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL must point at PostgreSQL (postgresql+psycopg://...)")
        if not self.celery_broker_url or self.celery_broker_url.startswith("memory"):
            problems.append("CELERY_BROKER_URL must point at Redis (redis://...)")
        if problems:
            raise ValueError("production mode refuses embedded defaults: " + "; ".join(problems))
        return self

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
