"""Sessions and clients for many AWS accounts: the caller's own, and members reached by AssumeRole.

One ``AwsSessionFactory`` serves a whole worker process. It caches each member account's assumed-role
credentials (refreshed before they expire) and one botocore client per (service, region) that every
account shares: ``client(account, ...)`` hands out an ``AccountClient`` view whose every call and
paginator signs with that account's credentials (bound to the calling thread for the call's duration).
Creating a client costs 3-15 ms of CPU (EC2's class alone has ~700 methods), and an organization scan
visits each account-region once, so per-account clients were rebuilt for nearly every shard; a signer
that asks for the credentials of the account acting in this thread lets one client serve them all.
Clients have botocore's retries switched off: ``scanner.retry`` retries, so that backoff, counting and
the rate limiter all see every attempt. Nothing touches the network or the disk until a method is called.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import boto3
import botocore.exceptions
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, Credentials, ReadOnlyCredentials

from policies.models import GLOBAL_REGION

# Refresh assumed-role credentials this long before they expire, so no call runs on a dying token.
REFRESH_MARGIN = timedelta(minutes=5)
# Clients kept per process, one per (service, region) whatever the account. A client costs ~0.3 MB and
# ~2-3 ms of CPU once its models are parsed; a process scanning every region touches regions x services
# of them, so the cache is bounded (least recently used goes) instead of growing forever. 128 holds ~6
# regions of all 22 services a full scan calls, or every region of the few a narrow scan calls.
MAX_CACHED_CLIENTS = 128
MAX_CACHED_CREDENTIALS = 64
ASSUME_ROLE_DURATION_S = 3600
ROLE_SESSION_NAME = "finops-tag-compliance"
CALLER_IDENTITY_TTL_S = 86400.0


class CredentialCache(Protocol):
    """Assumed-role credentials, and the base credentials' account, shared between processes
    (scanner.shared_credentials)."""

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


class UnboundAccountError(RuntimeError):
    """A shared client was called directly, not through an ``AccountClient``: no account to sign as."""


# The account the calling thread acts for and the credentials it signs with, set by AccountClient for
# the duration of one call.
_acting = threading.local()


@contextmanager
def _acting_as(account_id: str, credentials: ReadOnlyCredentials) -> Iterator[None]:
    previous = getattr(_acting, "account_id", None), getattr(_acting, "credentials", None)
    _acting.account_id, _acting.credentials = account_id, credentials
    try:
        yield
    finally:
        _acting.account_id, _acting.credentials = previous


def acting_account() -> str | None:
    """The account whose call the calling thread is making through an ``AccountClient``, else None.

    For botocore event handlers on a shared client (which every account's calls pass through) that
    must tell the accounts apart: call recorders, and tests injecting one account's faults.
    """
    account: str | None = getattr(_acting, "account_id", None)
    return account


class _ActingAccountCredentials(Credentials):
    """The signer's credentials of a shared client: those of the account acting in the calling thread.

    A call made without an account bound raises instead of falling back to any other credentials: a
    request signed as the wrong account would scan (or tag) the wrong account's resources.
    """

    method = "finops-acting-account"

    def __init__(self) -> None:  # no stored keys: they are looked up per request
        pass

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        bound: ReadOnlyCredentials | None = getattr(_acting, "credentials", None)
        if bound is None:
            raise UnboundAccountError(
                "an AWS call on a shared client had no account bound; call it through the AccountClient "
                "that AwsSessionFactory.client(account, service, region) returns")
        return bound

    # botocore reads these directly in places (S3 Express sessions, presigning); same rule as above.
    @property
    def access_key(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().access_key

    @property
    def secret_key(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().secret_key

    @property
    def token(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().token

    @property
    def account_id(self) -> str | None:
        # As before sharing: explicit keys carry no account id, so account-id endpoints stay unused.
        return None


class _ActingAccountProvider(CredentialProvider):
    METHOD = _ActingAccountCredentials.method

    def load(self) -> Credentials:
        return _ActingAccountCredentials()


class AccountClient:
    """One account's view of a shared botocore client: API calls and paginators sign as that account.

    Everything else (``meta``, ``exceptions``, ``can_paginate``...) is the shared client's. The
    credentials are resolved at each call, so a view kept for a long time follows refreshed roles.
    """

    __slots__ = ("_client", "_credentials", "account_id")

    def __init__(self, client: Any, account_id: str, credentials: Callable[[], ReadOnlyCredentials]) -> None:
        self._client = client
        self._credentials = credentials
        self.account_id = account_id

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in self._client.meta.method_to_api_mapping:
            return self._signing_as_account(attr)
        return attr

    def _signing_as_account(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with _acting_as(self.account_id, self._credentials()):
                return method(*args, **kwargs)

        return call

    def get_paginator(self, operation_name: str) -> Any:
        paginator = self._client.get_paginator(operation_name)
        # A paginator fetches pages through the method it was built with (botocore's Paginator._method);
        # each get_paginator call builds a new one, so rebinding it touches no other account's paginator.
        paginator._method = self._signing_as_account(paginator._method)
        return paginator


@functools.cache
def shared_botocore_session() -> botocore.session.Session:
    """The process' botocore session whose data loader every client and paginator model shares.

    Parsing a service's model (EC2's is several MB of JSON) and registering a session's ~150 built-in
    handlers (each checked with inspect.signature) cost tens of ms each: once per process, not once per
    account. Reads local data files only (no network)."""
    return botocore.session.get_session()


def parse_aws_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with ISO 8601 carrying a zone offset read by ``datetime.fromisoformat``.

    The XML and REST protocols send ISO 8601; botocore reads every timestamp through dateutil, which cost
    ~13% of a shard's collection CPU on EC2's answers (launch, attach and create times). Anything else (epoch
    numbers, RFC 822, no zone) still goes to botocore's parser, so its answers are unchanged."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    default: datetime = botocore.utils.parse_timestamp(value)
    return default


def _shared_client_session() -> botocore.session.Session:
    """A session whose clients sign as the acting account and read timestamps the fast way."""
    session = _core_session()
    session.register_component("credential_provider", CredentialResolver([_ActingAccountProvider()]))
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_aws_timestamp)
    return session


def warm_up(services: Iterable[str], region: str = "us-east-1") -> None:
    """Parse every model ``services``' clients and paginators need, and the modules building a client
    imports, into this process (no network, no credentials; the clients built are dropped).

    Called in a prefork worker's main process before it forks its pool: every pool process then starts
    with the parsed models (copy-on-write) instead of parsing them again on its first shard. Measured on
    bench.scale: the first shard of each of 16 pool processes spent ~0.6 s CPU, all at once, at start.
    """
    session = _shared_client_session()
    shared = shared_botocore_session()
    for service in services:
        client = session.create_client(service, region_name=region)
        # Parses the paginators the client's own get_paginator reads (any operation will do).
        client.can_paginate(next(iter(client.meta.method_to_api_mapping)))
        shared.get_paginator_model(service)  # and those collectors read (botocore_page_config)


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
        self._shared_session: botocore.session.Session | None = None
        self._clients: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._sts: Any = None

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
        """Account id of the base credentials (STS GetCallerIdentity, asked once per process; with a
        ``credential_cache``, once for every process sharing it)."""
        with self._lock:
            if self._caller_account is None:
                self._caller_account = self._look_up_caller_account()
            return self._caller_account

    def _look_up_caller_account(self) -> str:
        def ask() -> dict[str, str]:
            return {"Account": str(self._base_sts().get_caller_identity()["Account"])}

        if self.credential_cache is None:
            return ask()["Account"]
        base = self.base_session().get_credentials()
        if base is None:
            raise botocore.exceptions.NoCredentialsError()
        # An access key belongs to one principal of one account for good, so its answer never goes stale; the
        # endpoint is part of the key for emulators that answer the same test keys with different accounts.
        # Every pool process asked on its first shard: ~24 calls and a round trip before each first shard.
        key = f"caller-identity:{self.endpoint_url or ''}:{base.get_frozen_credentials().access_key}"
        return self.credential_cache.get_or_create(key, None, ask, lambda _answer: CALLER_IDENTITY_TTL_S)["Account"]

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
        sts = self._base_sts()
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

    def client(self, account_id: str, service: str, region: str) -> AccountClient:
        """``account_id``'s view of the process' client for ``service`` in ``region``.

        ``region="global"`` means the default region (global services are served from there). The
        account's credentials are resolved here (a member's role is assumed now, so a role that cannot
        be assumed fails before any call) and again at every call, so callers may keep a view during a
        long scan and never sign with expired credentials.
        """
        if region == GLOBAL_REGION:
            region = self._default_region
        self.credentials_for(account_id)  # a member's role is assumed (or found cached) before any call
        key = (service, region)
        # Created under the lock: botocore sessions are not thread-safe when building clients.
        with self._lock:
            shared = self._clients.get(key)
            if shared is None:
                shared = self._clients[key] = self._new_shared_client(service, region)
            self._clients.move_to_end(key)
            while len(self._clients) > MAX_CACHED_CLIENTS:
                self._clients.popitem(last=False)
        return AccountClient(shared, account_id, lambda: self.signing_credentials(account_id))

    def prepare(self, services: Iterable[str], regions: Iterable[str]) -> int:
        """Build the base session and the shared clients of ``services`` in ``regions`` now; returns how many
        clients the cache holds. No network and no credential lookup: shared clients resolve the acting
        account's keys at each request (the base session's STS client, which would look its keys up at
        creation, is still made on first use).

        For a prefork worker's main process, before it forks its pool: every pool process then inherits the
        clients instead of building them on its first shards (~6 ms of CPU each; 28 per pool process in
        bench.scale). At most ``MAX_CACHED_CLIENTS``; regions past that are built on first use as usual."""
        wanted = dict.fromkeys((service, self._default_region if region == GLOBAL_REGION else region)
                               for region in regions for service in services)
        self.base_session()
        with self._lock:
            for key in wanted:
                if len(self._clients) >= MAX_CACHED_CLIENTS:
                    break
                if key not in self._clients:
                    self._clients[key] = self._new_shared_client(*key)
            return len(self._clients)

    def signing_credentials(self, account_id: str) -> ReadOnlyCredentials:
        """The keys a request for ``account_id`` is signed with (the base session's for the caller)."""
        assumed = self.credentials_for(account_id)
        if assumed is not None:
            return ReadOnlyCredentials(assumed.access_key, assumed.secret_key, assumed.token)
        base = self.base_session().get_credentials()
        if base is None:
            raise botocore.exceptions.NoCredentialsError()
        frozen: ReadOnlyCredentials = base.get_frozen_credentials()  # refreshes them when they expire
        return frozen

    def _new_shared_client(self, service: str, region: str) -> Any:
        """A client every account shares: its signer asks for the acting account's credentials."""
        if self._shared_session is None:
            self._shared_session = _shared_client_session()
        return self._shared_session.create_client(
            service, region_name=region, endpoint_url=self.endpoint_url, config=self._config)

    def _base_sts(self) -> Any:
        """The STS client of the base session's own credentials (who am I, AssumeRole), made once.

        botocore clients are thread-safe; a new one per AssumeRole cost the planner ~10 ms of CPU per account
        (64 clients while planning a 50-account scan)."""
        with self._lock:
            if self._sts is None:
                self._sts = self.base_session().client(
                    "sts", region_name=self._default_region, endpoint_url=self.endpoint_url, config=self._config)
            return self._sts
