"""Sessions and clients for many AWS accounts: the caller's own, and members reached by AssumeRole.

One ``AwsSessionFactory`` serves a whole worker process. It caches each member account's assumed-role
credentials (refreshed before they expire) and one botocore client per (account, service, region),
because creating a client costs 3-15 ms of CPU. Every client is built from one base session with the
account's credentials, and every model file is parsed once per process (``shared_botocore_session``).
Clients have botocore's retries switched off: ``scanner.retry`` retries, so that backoff, counting and
the rate limiter all see every attempt. Nothing touches the network or the disk until
a method is called.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import boto3
import botocore.session
from botocore.config import Config

from policies.models import GLOBAL_REGION

# Refresh assumed-role credentials this long before they expire, so no call runs on a dying token.
REFRESH_MARGIN = timedelta(minutes=5)
# Clients kept per process. A client costs ~0.5-2 MB; an organization scan touches accounts x regions x
# services of them, so the cache is bounded (least recently used goes) instead of growing forever. An
# account-region shard uses up to ~10; 32 keeps a few of them. (Benchmark: planning 200 accounts filled 64
# slots with EC2 clients, ~1.5 MB each, and took that process to 293 MB; 256 slots cost ~110 MB more.)
MAX_CACHED_CLIENTS = 32
MAX_CACHED_CREDENTIALS = 64
ASSUME_ROLE_DURATION_S = 3600
ROLE_SESSION_NAME = "finops-tag-compliance"


class CredentialCache(Protocol):
    """Assumed-role credentials shared between processes (scanner.shared_credentials)."""

    def get_or_create(self, role_arn: str, external_id: str | None, create: Callable[[], dict[str, str]],
                      ttl_for: Callable[[dict[str, str]], float]) -> dict[str, str]: ...


class ClientFactory(Protocol):
    """What the collectors need from a session factory (tests substitute stubbed clients)."""

    @property
    def default_region(self) -> str:
        """Region used for global services and account-level calls."""
        ...

    def caller_account(self) -> str:
        """The account of the base credentials."""
        ...

    def client(self, account_id: str, service: str, region: str) -> Any:
        """A botocore client for ``service`` in ``account_id`` and ``region``."""
        ...


@dataclass(frozen=True, slots=True)
class AssumedCredentials:
    """A member account's temporary credentials (AssumeRole), and when they expire."""

    access_key: str
    secret_key: str
    token: str
    expires: datetime


@functools.cache
def shared_botocore_session() -> botocore.session.Session:
    """The process' botocore session whose data loader every client and paginator model shares.

    Parsing a service's model (EC2's is several MB of JSON) and registering a session's ~150 built-in
    handlers (each checked with inspect.signature) cost tens of ms each: once per process, not once per
    account. Reads local data files only (no network)."""
    return botocore.session.get_session()


def _core_session() -> botocore.session.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", shared_botocore_session().get_component("data_loader"))
    return core


class AwsSessionFactory:
    """Caches clients per account (all from one base session) and members' assumed-role credentials.

    ``credentials`` are keyword arguments for ``boto3.Session`` (``aws_access_key_id``,
    ``aws_secret_access_key``, ``aws_session_token``, ``profile_name``); without them boto3's default
    chain is used. ``endpoint_url`` points every client at one endpoint (moto in tests and the demo).
    Member accounts are reached through ``arn:aws:iam::{account}:role/{role_name}``, or through
    ``role_arn_template`` (``arn:aws:iam::{account_id}:role/Scanner``, for roles under a path or in
    another partition) when given, with ``external_id`` when the role's trust policy requires one.
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        default_region: str = "us-east-1",
        role_name: str = "OrganizationAccountAccessRole",
        external_id: str | None = None,
        credentials: Mapping[str, str] | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_pool_connections: int = 32,
        partition: str = "aws",
        role_arn_template: str | None = None,
        credential_cache: CredentialCache | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self._default_region = default_region
        self.role_name = role_name
        self.role_arn_template = role_arn_template
        self.credential_cache = credential_cache
        self.external_id = external_id
        self.partition = partition
        self._credentials = dict(credentials or {})
        self._config = Config(
            # Retries are ours (scanner.retry): one attempt per botocore call.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Collectors fan per-item tag calls out over threads sharing one client.
            max_pool_connections=max_pool_connections,
            user_agent_extra="finops-tag-compliance",
        )
        self._lock = threading.RLock()
        self._base: boto3.Session | None = None
        self._caller_account: str | None = None
        self._assumed: OrderedDict[str, AssumedCredentials] = OrderedDict()
        self._account_locks: dict[str, threading.Lock] = {}
        self._clients: OrderedDict[tuple[str, str, str], tuple[AssumedCredentials | None, Any]] = OrderedDict()

    @property
    def default_region(self) -> str:
        """Region for account-level calls (STS, DescribeRegions) and global services."""
        return self._default_region

    def base_session(self) -> boto3.Session:
        """The session of the configured (or default-chain) credentials, created on first use."""
        with self._lock:
            if self._base is None:
                c = self._credentials
                self._base = boto3.Session(
                    botocore_session=_core_session(),
                    aws_access_key_id=c.get("aws_access_key_id"),
                    aws_secret_access_key=c.get("aws_secret_access_key"),
                    aws_session_token=c.get("aws_session_token"),
                    profile_name=c.get("profile_name"),
                    region_name=self._default_region,
                )
            return self._base

    def caller_account(self) -> str:
        """Account id of the base credentials (STS GetCallerIdentity, asked once)."""
        with self._lock:
            if self._caller_account is None:
                sts = self._new_client("sts", self._default_region)
                self._caller_account = str(sts.get_caller_identity()["Account"])
            return self._caller_account

    def role_arn(self, account_id: str) -> str:
        """The role assumed in ``account_id``."""
        if self.role_arn_template:
            return self.role_arn_template.format(account_id=account_id)
        return f"arn:{self.partition}:iam::{account_id}:role/{self.role_name}"

    def credentials_for(self, account_id: str) -> AssumedCredentials | None:
        """Credentials for ``account_id``: None for the caller's own account (the base session's), else
        an assumed role's.

        Assumed credentials are cached and replaced when less than ``REFRESH_MARGIN`` remains. A lock
        per account keeps concurrent shards of one account from assuming the role twice.
        """
        if account_id == self.caller_account():
            return None
        with self._lock:
            account_lock = self._account_locks.setdefault(account_id, threading.Lock())
        with account_lock:
            with self._lock:
                cached = self._assumed.get(account_id)
            if cached is not None and cached.expires - datetime.now(UTC) > REFRESH_MARGIN:
                with self._lock:
                    self._assumed.move_to_end(account_id)
                return cached
            fresh = self._assume(account_id)
            with self._lock:
                self._assumed[account_id] = fresh
                # Bounded like the clients: an organization has hundreds of accounts; a process needs few
                # at a time, and a dropped one comes back from the shared credentials without STS.
                while len(self._assumed) > MAX_CACHED_CREDENTIALS:
                    self._assumed.popitem(last=False)
            return fresh

    def _assume_role(self, account_id: str) -> dict[str, str]:
        sts = self._new_client("sts", self._default_region)
        params: dict[str, Any] = {
            "RoleArn": self.role_arn(account_id),
            "RoleSessionName": ROLE_SESSION_NAME,
            "DurationSeconds": ASSUME_ROLE_DURATION_S,
        }
        if self.external_id:
            params["ExternalId"] = self.external_id
        creds = sts.assume_role(**params)["Credentials"]
        expires = creds["Expiration"]
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "SessionToken": creds["SessionToken"], "Expiration": expires.isoformat()}

    def _assume(self, account_id: str) -> AssumedCredentials:
        if self.credential_cache is not None:
            creds = self.credential_cache.get_or_create(
                self.role_arn(account_id), self.external_id, lambda: self._assume_role(account_id),
                # Shared until shortly before the margin at which every process refreshes anyway.
                lambda c: (datetime.fromisoformat(c["Expiration"]) - datetime.now(UTC) - REFRESH_MARGIN
                           ).total_seconds())
            if datetime.fromisoformat(creds["Expiration"]) - datetime.now(UTC) <= REFRESH_MARGIN:
                creds = self._assume_role(account_id)  # a stale entry (clock skew): never use it
        else:
            creds = self._assume_role(account_id)
        return AssumedCredentials(access_key=creds["AccessKeyId"], secret_key=creds["SecretAccessKey"],
                                  token=creds["SessionToken"], expires=datetime.fromisoformat(creds["Expiration"]))

    def client(self, account_id: str, service: str, region: str) -> Any:
        """A cached botocore client for ``service`` in ``account_id`` and ``region``.

        ``region="global"`` means the default region (global services are served from there). A
        client is rebuilt when its account's credentials were refreshed, so callers may keep asking
        for clients during a long scan and never hold expired credentials. Every client comes from the
        one base session (member accounts' with their assumed credentials): a botocore session per
        account cost more CPU than the shard's API calls (bench.scale).
        """
        if region == GLOBAL_REGION:
            region = self._default_region
        creds = self.credentials_for(account_id)
        key = (account_id, service, region)
        # Created under the lock: boto3 sessions are not thread-safe when building clients.
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] is creds:
                self._clients.move_to_end(key)
                return cached[1]
            client = self._new_client(service, region, creds)
            self._clients[key] = (creds, client)
            self._clients.move_to_end(key)
            while len(self._clients) > MAX_CACHED_CLIENTS:
                self._clients.popitem(last=False)
            return client

    def _new_client(self, service: str, region: str, creds: AssumedCredentials | None = None) -> Any:
        """A client from the base session: its own credentials, or a member's when ``creds`` is given."""
        keys: dict[str, str] = {} if creds is None else {
            "aws_access_key_id": creds.access_key, "aws_secret_access_key": creds.secret_key,
            "aws_session_token": creds.token}
        return self.base_session().client(
            service,  # type: ignore[call-overload]
            region_name=region,
            endpoint_url=self.endpoint_url,
            config=self._config,
            **keys,
        )
