"""Seed an emulated AWS organization with a realistic, deterministic tagging mess.

:func:`seed_demo_organization` builds, on a moto endpoint, what a FinOps team meets on day one: an
organization with a management account and three member accounts in two OUs, holding 642
resources of 20 types over three regions, tagged the way real teams tag (keys in the wrong case,
``prod`` instead of ``production``, typos, empty owners, private e-mail owners, prohibited
``temp*`` keys, never tagged resources) against ``policies/examples/default.json``. The same
application is tagged correctly in one account and with ``env`` instead of ``Environment`` in
another, and one account (the sandbox) is clearly the worst.

Everything is derived from ``seed``: names and tags from ``random.Random`` streams keyed by
(seed, account, region), and moto's own generated IDs (account IDs, instance IDs) from moto's
random generator, which the seeder re-seeds through ``POST /moto-api/seed`` before its first call.
Two runs on fresh emulators therefore produce identical estates, including account IDs, which
tests compare through :meth:`DemoEstate.digest`.

The returned :class:`DemoEstate` records exactly what is live, per (account, region, type), so
tests and benchmarks can compare a scanner's output with it. Resource types follow the project's
``service:resource`` convention; see :data:`RESOURCE_TYPES`.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import policies
from scanner.emulator.server import (
    DEFAULT_REGION,
    fake_credentials,
    make_session,
    post_moto_api,
)

DEMO_REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-southeast-2")

# The role the scanner assumes in each member account; moto creates it with every account made
# through organizations:CreateAccount, as AWS does.
MEMBER_ROLE_NAME = "OrganizationAccountAccessRole"

# Every type the demo seeds, in creation order. S3 buckets are global in naming but live in one
# region each; they are counted in their bucket region.
RESOURCE_TYPES: tuple[str, ...] = (
    "ec2:instance",
    "ec2:volume",
    "ec2:snapshot",
    "ec2:elastic-ip",
    "ec2:natgateway",
    "s3:bucket",
    "rds:db",
    "lambda:function",
    "dynamodb:table",
    "sqs:queue",
    "sns:topic",
    "logs:log-group",
    "kms:key",
    "secretsmanager:secret",
    "ecr:repository",
    "kinesis:stream",
    "elasticloadbalancing:loadbalancer",
    "elasticloadbalancing:targetgroup",
    "states:stateMachine",
    "ecs:cluster",
)

# Tag patterns a seeded resource can carry. Every pattern but "compliant" breaks the demo policy
# for every resource type it is given to (the seeder never gives "bad_application" to a type the
# Application rule does not apply to), so tests can count expected non-compliance by profile.
PROFILES: tuple[str, ...] = (
    "compliant",  # all required tags present and valid
    "untagged",  # never tagged at all
    "name_only",  # only a Name tag
    "key_case",  # costcenter / COSTCENTER / environment instead of the exact key
    "env_alias",  # Environment=prod / Prod / prd / dev instead of an allowed value
    "env_key",  # env=... instead of Environment
    "value_typo",  # CostCenter=Enginering, Marketting, ...
    "empty_owner",  # Owner=""
    "wrong_owner_domain",  # Owner at gmail.com or a look-alike domain
    "bad_application",  # Application=Payments_API (regex violation)
    "missing_owner",
    "missing_costcenter",
    "prohibited_key",  # otherwise compliant, plus temp-debug / tempfix / DeleteMe
    "multi",  # two or three of the defects above at once
)

# The demo tagging policy, shipped as package data of ``policies`` (so it resolves when installed too).
DEFAULT_POLICY_PATH = Path(policies.__file__).resolve().parent / "examples" / "default.json"

_ENV_SHORT = {"production": "prod", "staging": "stg", "development": "dev", "test": "test"}
_ENV_ALIASES = {
    "production": ("prod", "Prod", "prd", "PROD", "Production"),
    "staging": ("stage", "stg", "Staging"),
    "development": ("dev", "Dev", "develop"),
    "test": ("qa", "Test", "testing"),
}
_COSTCENTER_TYPOS = {
    "Engineering": ("Enginering", "Engineeering", "engineering"),
    "Marketing": ("Marketting", "marketing", "Mktg"),
    "Sales": ("Sale", "sales"),
    "Operations": ("Opertions", "Ops"),
    "Finance": ("Finanace", "finance"),
    "Data": ("data", "Data Science"),
}
_CASE_MISTAKES = {
    "CostCenter": ("costcenter", "COSTCENTER", "Costcenter", "cost-center", "Cost Center"),
    "Environment": ("environment", "ENVIRONMENT"),
    "Owner": ("owner", "OWNER"),
}

# application -> (CostCenter, Owner); the truth the compliant profile writes and suggestions can learn.
_APPS: dict[str, tuple[str, str]] = {
    "payments-api": ("Engineering", "payments-team@example.com"),
    "checkout-web": ("Engineering", "web-platform@example.com"),
    "orders-service": ("Engineering", "orders@example.com"),
    "auth-service": ("Engineering", "identity@example.com"),
    "billing-batch": ("Finance", "billing-eng@example.com"),
    "data-pipeline": ("Data", "data-eng@example.com"),
    "ml-training": ("Data", "ml-platform@example.com"),
    "reporting": ("Finance", "bi-team@example.com"),
    "search-indexer": ("Engineering", "search@example.com"),
    "marketing-site": ("Marketing", "web-marketing@example.com"),
    "campaign-analytics": ("Marketing", "growth@example.com"),
    "crm-sync": ("Sales", "sales-ops@example.com"),
    "monitoring": ("Operations", "sre@example.com"),
    "sandbox-experiments": ("Engineering", "dev-sandbox@example.com"),
}
_BAD_APPLICATION = {
    "payments-api": "Payments_API",
    "checkout-web": "CheckoutWeb",
    "orders-service": "orders_service",
    "data-pipeline": "Data Pipeline",
    "ml-training": "ML-Training",
}
_PRIVATE_OWNERS = ("jsmith@gmail.com", "devops.alice@gmail.com", "bob@example.co", "platform@corp-mail.net")

# Per-account-region counts before the account's size factor and the caller's scale.
_BASE_COUNTS: dict[str, int] = {
    "ec2:instance": 9,  # plus one root ec2:volume each
    "ec2:volume": 4,  # standalone data volumes
    "ec2:snapshot": 3,
    "ec2:elastic-ip": 2,  # plus one per NAT gateway
    "ec2:natgateway": 1,
    "s3:bucket": 2,
    "rds:db": 2,
    "lambda:function": 6,
    "dynamodb:table": 4,
    "sqs:queue": 5,
    "sns:topic": 3,
    "logs:log-group": 5,
    "kms:key": 2,
    "secretsmanager:secret": 3,
    "ecr:repository": 2,
    "kinesis:stream": 1,
    "elasticloadbalancing:loadbalancer": 1,
    "elasticloadbalancing:targetgroup": 2,
    "states:stateMachine": 1,
    "ecs:cluster": 1,
}


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeededResource:
    """One resource the seeder created, as the scanner should find it.

    ``resource_id`` is the provider's own identifier (``i-...``, bucket name, function name, ...);
    ``tags`` are exactly what was written (empty values kept as ``""``); ``profile`` names the tag
    pattern from :data:`PROFILES` (root volumes carry their instance's profile when tags were
    propagated, else ``untagged``).
    """

    arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    name: str
    tags: Mapping[str, str]
    profile: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class DemoEstate:
    """What a seeding run left on the emulator; exact, for comparisons with scanner output.

    ``counts`` maps (account_id, region, resource_type) to the number of live resources created
    there (root volumes included); ``terminated_counts`` does the same for instances the seeder
    terminated (a scanner must not report them). ``support_counts`` lists plumbing the seeder
    created, or moto added on its own, outside the demo's resource types (IAM execution roles, the
    automated RDS snapshot moto makes per DB, KMS aliases); default VPCs, subnets, security groups
    and network interfaces are not listed: moto gives every account-region its own.
    """

    endpoint_url: str
    management_account_id: str
    member_account_ids: list[str]
    account_names: dict[str, str]
    regions: list[str]
    organization_id: str
    root_id: str
    ou_ids: dict[str, str]
    account_ous: dict[str, str]
    tag_policy_ids: dict[str, str]
    worst_account_id: str
    resources: list[SeededResource]
    terminated: list[SeededResource]
    support_counts: dict[str, int]
    policy_path: str
    seed: int
    scale: float
    seconds: float = 0.0
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    terminated_counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = dict(Counter((r.account_id, r.region, r.resource_type) for r in self.resources))
        self.terminated_counts = dict(
            Counter((r.account_id, r.region, r.resource_type) for r in self.terminated)
        )

    @property
    def expected_resource_count(self) -> int:
        """Live resources a complete scan of every account, region and seeded type must find."""
        return len(self.resources)

    @property
    def expected_compliant_count(self) -> int:
        """Resources seeded compliant with the demo policy (every other profile breaks a rule)."""
        return sum(1 for r in self.resources if r.profile == "compliant")

    @property
    def account_ids(self) -> list[str]:
        """Every account holding seeded resources or belonging to the organization, management first."""
        ordered = [self.management_account_id, *self.member_account_ids] if self.management_account_id else []
        for resource in self.resources:
            if resource.account_id not in ordered:
                ordered.append(resource.account_id)
        return ordered

    @property
    def resource_types(self) -> list[str]:
        """Types present in the estate, in :data:`RESOURCE_TYPES` order."""
        present = {r.resource_type for r in self.resources}
        return [t for t in RESOURCE_TYPES if t in present]

    def member_role_arn(self, account_id: str) -> str:
        """The role a scanner assumes to reach ``account_id``."""
        return f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}"

    def count(
        self,
        account_id: str | None = None,
        region: str | None = None,
        resource_type: str | None = None,
    ) -> int:
        """Live resources matching every filter given."""
        return sum(
            n
            for (acct, reg, rtype), n in self.counts.items()
            if (account_id is None or acct == account_id)
            and (region is None or reg == region)
            and (resource_type is None or rtype == resource_type)
        )

    def counts_by_type(self) -> dict[str, int]:
        """Live resources per resource type."""
        return dict(Counter(r.resource_type for r in self.resources))

    def counts_by_account(self) -> dict[str, int]:
        """Live resources per account."""
        return dict(Counter(r.account_id for r in self.resources))

    def counts_by_profile(self, account_id: str | None = None) -> dict[str, int]:
        """Live resources per tag profile, optionally for one account."""
        return dict(
            Counter(r.profile for r in self.resources if account_id is None or r.account_id == account_id)
        )

    def digest(self) -> str:
        """SHA-256 over every live resource's (account, region, type, name, tags), order-free.

        Identical for two runs with the same seed and scale on fresh emulators; generated IDs
        (instance IDs, ARNs with random suffixes) are left out so the digest speaks about the
        estate's content only.
        """
        return estate_digest(
            (r.account_id, r.region, r.resource_type, r.name, r.tags) for r in self.resources
        )

    def arn_digest(self) -> str:
        """SHA-256 over the sorted ARNs (terminated instances included). Equal across fresh
        emulators too, since the seeder seeds moto's ID generator; differs if anything else used
        the emulator's random generator in between (another client creating resources)."""
        arns = sorted(r.arn for r in [*self.resources, *self.terminated])
        return hashlib.sha256("\n".join(arns).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """A JSON-ready overview (what the CLI prints)."""
        return {
            "endpoint_url": self.endpoint_url,
            "management_account_id": self.management_account_id,
            "member_account_ids": self.member_account_ids,
            "account_names": self.account_names,
            "worst_account_id": self.worst_account_id,
            "organization_id": self.organization_id,
            "regions": self.regions,
            "resource_types": self.resource_types,
            "expected_resource_count": self.expected_resource_count,
            "expected_compliant_count": self.expected_compliant_count,
            "terminated": len(self.terminated),
            "by_account": self.counts_by_account(),
            "by_type": self.counts_by_type(),
            "by_profile": self.counts_by_profile(),
            "digest": self.digest(),
            "arn_digest": self.arn_digest(),
            "seconds": round(self.seconds, 2),
        }


def estate_digest(items: Iterable[tuple[str, str, str, str, Mapping[str, str]]]) -> str:
    """Order-independent SHA-256 of (account, region, type, name, tags) tuples.

    Exposed so a test can compute the same digest from what it lists on the emulator itself.
    """
    lines = sorted(
        json.dumps([acct, region, rtype, name, sorted(tags.items())], separators=(",", ":"))
        for acct, region, rtype, name, tags in items
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Account plans: who owns what and how badly they tag
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AccountPlan:
    label: str
    name: str
    ou: str
    size: float
    environments: tuple[tuple[str, int], ...]
    apps: tuple[str, ...]
    profile_weights: tuple[tuple[str, int], ...]
    # The same application, deliberately tagged differently per account (see module docstring).
    forced_profiles: Mapping[str, str]
    account_tags: Mapping[str, str]


_MEMBER_PLANS: tuple[_AccountPlan, ...] = (
    _AccountPlan(
        label="payments-prod",
        name="Payments Production",
        ou="Production",
        size=1.2,
        environments=(("production", 80), ("staging", 20)),
        apps=(
            "payments-api",
            "checkout-web",
            "orders-service",
            "auth-service",
            "billing-batch",
            "monitoring",
        ),
        profile_weights=(
            ("compliant", 72),
            ("untagged", 5),
            ("name_only", 2),
            ("key_case", 3),
            ("env_alias", 5),
            ("value_typo", 2),
            ("empty_owner", 2),
            ("wrong_owner_domain", 2),
            ("bad_application", 3),
            ("missing_owner", 2),
            ("prohibited_key", 2),
        ),
        forced_profiles={"payments-api": "compliant"},
        account_tags={"CostCenter": "Engineering", "Owner": "payments-team@example.com"},
    ),
    _AccountPlan(
        label="data-platform-prod",
        name="Data Platform Production",
        ou="Production",
        size=1.0,
        environments=(("production", 70), ("staging", 30)),
        apps=(
            "data-pipeline",
            "ml-training",
            "reporting",
            "search-indexer",
            "payments-api",
            "crm-sync",
            "campaign-analytics",
        ),
        profile_weights=(
            ("compliant", 46),
            ("untagged", 12),
            ("env_key", 8),
            ("key_case", 8),
            ("env_alias", 7),
            ("value_typo", 5),
            ("empty_owner", 3),
            ("wrong_owner_domain", 3),
            ("bad_application", 3),
            ("missing_costcenter", 3),
            ("prohibited_key", 2),
        ),
        forced_profiles={"payments-api": "env_key"},
        account_tags={"CostCenter": "Data", "Owner": "data-eng@example.com"},
    ),
    _AccountPlan(
        label="sandbox-dev",
        name="Engineering Sandbox",
        ou="Development",
        size=0.9,
        environments=(("development", 70), ("test", 30)),
        apps=(
            "sandbox-experiments",
            "payments-api",
            "checkout-web",
            "ml-training",
            "marketing-site",
            "monitoring",
        ),
        profile_weights=(
            ("compliant", 14),
            ("untagged", 30),
            ("name_only", 8),
            ("multi", 14),
            ("key_case", 6),
            ("env_alias", 6),
            ("value_typo", 5),
            ("empty_owner", 4),
            ("wrong_owner_domain", 5),
            ("prohibited_key", 5),
            ("missing_owner", 3),
        ),
        forced_profiles={"payments-api": "bad_application"},
        account_tags={},
    ),
)

_SMALL_PLANS: tuple[_AccountPlan, ...] = (
    _AccountPlan(
        label="small-a",
        name="Small A",
        ou="",
        size=1.0,
        environments=(("production", 100),),
        apps=("payments-api", "orders-service"),
        profile_weights=(("compliant", 60), ("untagged", 15), ("key_case", 10), ("env_alias", 15)),
        forced_profiles={},
        account_tags={},
    ),
    _AccountPlan(
        label="small-b",
        name="Small B",
        ou="",
        size=1.0,
        environments=(("development", 100),),
        apps=("payments-api", "ml-training"),
        profile_weights=(("compliant", 30), ("untagged", 25), ("env_key", 20), ("empty_owner", 25)),
        forced_profiles={"payments-api": "env_key"},
        account_tags={},
    ),
)

# The small estate: per account-region, a few of the commonest types (about 30 resources over
# two accounts and two regions, instances counting twice for their root volumes).
_SMALL_COUNTS: dict[str, int] = {
    "ec2:instance": 2,
    "ec2:volume": 1,
    "s3:bucket": 1,
    "lambda:function": 1,
    "dynamodb:table": 1,
    "sqs:queue": 1,
}

# Organizations tag policies attached by the demo, for `policy import-aws` and `policy effective`.
# They mirror the demo policy where tag policies can (they cannot express regexes or prohibited
# keys); the Production OU narrows Environment and turns on enforcement for a few types.
_ROOT_TAG_POLICY: dict[str, Any] = {
    "tags": {
        "costcenter": {
            "tag_key": {"@@assign": "CostCenter"},
            "tag_value": {"@@assign": ["Engineering", "Marketing", "Sales", "Operations", "Finance", "Data"]},
        },
        "owner": {"tag_key": {"@@assign": "Owner"}, "tag_value": {"@@assign": ["*@example.com"]}},
        "environment": {
            "tag_key": {"@@assign": "Environment"},
            "tag_value": {"@@assign": ["production", "staging", "development", "test"]},
        },
        "application": {"tag_key": {"@@assign": "Application"}},
    }
}
_PRODUCTION_TAG_POLICY: dict[str, Any] = {
    "tags": {
        "environment": {
            "tag_value": {"@@assign": ["production", "staging"]},
            "enforced_for": {"@@assign": ["ec2:instance", "rds:db"]},
        },
        "costcenter": {"enforced_for": {"@@assign": ["ec2:instance", "s3:bucket"]}},
    }
}


def _application_types(policy_path: Path) -> frozenset[str]:
    """Resource types the policy's Application rule applies to (read, not hard-coded, so the
    "bad_application" profile stays a real violation if the shipped policy changes)."""
    try:
        policy = json.loads(policy_path.read_text())
    except (OSError, ValueError):
        return frozenset()
    for rule in policy.get("required_tags", []):
        if rule.get("name") == "Application":
            return frozenset(rule.get("applies_to") or RESOURCE_TYPES)
    return frozenset()


# ---------------------------------------------------------------------------------------------
# Tag generation (pure)
# ---------------------------------------------------------------------------------------------


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in pairs], weights=[w for _, w in pairs], k=1)[0]


def _compliant_tags(rng: random.Random, app: str, env: str, resource_type: str) -> dict[str, str]:
    cost_center, owner = _APPS[app]
    tags = {"CostCenter": cost_center, "Owner": owner, "Environment": env, "Application": app}
    # Optional tags appear on some resources, always valid here; invalid ones are defects below.
    if resource_type in {"s3:bucket", "rds:db", "dynamodb:table"} and rng.random() < 0.6:
        tags["DataClassification"] = rng.choice(("internal", "confidential", "restricted"))
    if rng.random() < 0.3:
        tags["Project"] = f"PRJ-{rng.randrange(1000, 10000)}"
    return tags


def _apply_defect(rng: random.Random, tags: dict[str, str], defect: str, app: str, env: str) -> None:
    """Break ``tags`` in place the way ``defect`` says; each breaks at least one required rule."""
    if defect == "key_case":
        key = rng.choice(("CostCenter", "CostCenter", "Environment", "Owner"))
        tags[rng.choice(_CASE_MISTAKES[key])] = tags.pop(key)
    elif defect == "env_alias":
        tags["Environment"] = rng.choice(_ENV_ALIASES[env])
    elif defect == "env_key":
        tags.pop("Environment")
        tags["env"] = _ENV_SHORT[env]
    elif defect == "value_typo":
        tags["CostCenter"] = rng.choice(_COSTCENTER_TYPOS[tags["CostCenter"]])
    elif defect == "empty_owner":
        tags["Owner"] = ""
    elif defect == "wrong_owner_domain":
        tags["Owner"] = rng.choice(_PRIVATE_OWNERS)
    elif defect == "bad_application":
        tags["Application"] = _BAD_APPLICATION.get(app, app.replace("-", "_").upper())
    elif defect == "missing_owner":
        tags.pop("Owner")
    elif defect == "missing_costcenter":
        tags.pop("CostCenter")
    elif defect == "prohibited_key":
        key = rng.choice(("temp-debug", "tempfix", "DeleteMe"))
        tags[key] = rng.choice(("true", "yes", "2023-cleanup"))
    else:  # pragma: no cover - a programming error in this module
        raise ValueError(f"unknown defect {defect!r}")


_MULTI_DEFECTS = (
    "key_case",
    "env_alias",
    "value_typo",
    "empty_owner",
    "wrong_owner_domain",
    "missing_owner",
    "prohibited_key",
)


def _make_tags(
    rng: random.Random,
    profile: str,
    app: str,
    env: str,
    resource_type: str,
    name_tag: str | None,
) -> dict[str, str]:
    """The tags one resource gets; ``name_tag`` adds ``Name`` (EC2-style resources)."""
    if profile == "untagged":
        return {}
    if profile == "name_only":
        return {"Name": name_tag or app}
    tags = _compliant_tags(rng, app, env, resource_type)
    if profile == "multi":
        for defect in rng.sample(_MULTI_DEFECTS, k=rng.choice((2, 3))):
            # A defect may remove the key another one edits; skip those combinations.
            if defect == "value_typo" and "CostCenter" not in tags:
                continue
            if defect in {"empty_owner", "wrong_owner_domain", "missing_owner"} and "Owner" not in tags:
                continue
            if defect == "env_alias" and "Environment" not in tags:
                continue
            if defect == "key_case" and not {"CostCenter", "Environment", "Owner"} <= tags.keys():
                continue
            _apply_defect(rng, tags, defect, app, env)
    elif profile != "compliant":
        _apply_defect(rng, tags, profile, app, env)
    if name_tag:
        tags = {"Name": name_tag, **tags}
    return tags


# ---------------------------------------------------------------------------------------------
# The per account-region seeder
# ---------------------------------------------------------------------------------------------


_LAMBDA_ZIP: bytes | None = None


def _lambda_zip() -> bytes:
    """A tiny deployment package; moto stores it and never runs it (no docker needed)."""
    global _LAMBDA_ZIP
    if _LAMBDA_ZIP is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            info = zipfile.ZipInfo("index.py", date_time=(2024, 1, 1, 0, 0, 0))  # fixed: reproducible bytes
            archive.writestr(info, "def handler(event, context):\n    return {'ok': True}\n")
        _LAMBDA_ZIP = buffer.getvalue()
    return _LAMBDA_ZIP


class _AccountClients:
    """boto3 clients for one account, one per (service, region), made on first use.

    Clients come from one boto3 session shared by every account of a run, with the account's keys
    passed per client: a session caches the service models it loads, and reloading them for each
    account's own session cost more than half the seeding time.
    """

    def __init__(
        self, session: Any, endpoint_url: str, account_id: str, credentials: Mapping[str, str]
    ) -> None:
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.account_id = account_id
        self._session = session
        self._credentials = {
            k: credentials[k]
            for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
            if credentials.get(k)
        }
        # Path-style S3 and no retry storms: the emulator is local and never throttles.
        self._config = Config(
            retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"}
        )
        self._clients: dict[tuple[str, str], Any] = {}

    def __call__(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self._session.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=self._config,
                **self._credentials,
            )
        return self._clients[key]


def _ec2_tag_spec(resource_type: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    if not tags:
        return []  # EC2 rejects a TagSpecification with an empty tag list
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _tag_list(tags: Mapping[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in tags.items()]


class _RegionSeeder:
    """Creates one account-region's share of the estate and records it."""

    def __init__(
        self,
        clients: _AccountClients,
        plan: _AccountPlan,
        region: str,
        rng: random.Random,
        application_types: frozenset[str],
        roles: Mapping[str, str],
        out: list[SeededResource],
        terminated: list[SeededResource],
        bucket_names: set[str],
    ) -> None:
        self.clients = clients
        self.account_id = clients.account_id
        self.plan = plan
        self.region = region
        self.rng = rng
        self.application_types = application_types
        self.roles = roles
        self.out = out
        self.terminated = terminated
        self.bucket_names = bucket_names
        self._name_counters: Counter[str] = Counter()
        self._network: tuple[str, list[str]] | None = None
        self._data_volumes: list[SeededResource] = []

    # -- choices ---------------------------------------------------------------------------

    def _pick(self, resource_type: str) -> tuple[str, str, str]:
        """(application, environment, profile) for the next resource of ``resource_type``."""
        app = self.rng.choice(self.plan.apps)
        env = _weighted(self.rng, self.plan.environments)
        profile = self.plan.forced_profiles.get(app) or _weighted(self.rng, self.plan.profile_weights)
        if profile == "bad_application" and resource_type not in self.application_types:
            # The Application rule does not apply here, so this would be compliant: pick a defect
            # that always counts instead, keeping the profile label truthful.
            profile = "missing_owner"
        return app, env, profile

    def _name(self, stem: str) -> str:
        """``stem-01``, ``stem-02``, ... unique within this account-region."""
        self._name_counters[stem] += 1
        return f"{stem}-{self._name_counters[stem]:02d}"

    def _record(
        self,
        resource_type: str,
        arn: str,
        resource_id: str,
        name: str,
        tags: Mapping[str, str],
        profile: str,
        region: str | None = None,
        **attributes: str,
    ) -> SeededResource:
        resource = SeededResource(
            arn=arn,
            resource_id=resource_id,
            resource_type=resource_type,
            account_id=self.account_id,
            region=region or self.region,
            name=name,
            tags=dict(tags),
            profile=profile,
            attributes=attributes,
        )
        self.out.append(resource)
        return resource

    def _arn(self, service: str, suffix: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{suffix}"

    def _default_network(self) -> tuple[str, list[str]]:
        """The region's default VPC and its default subnets (moto creates them per account-region)."""
        if self._network is None:
            ec2 = self.clients("ec2", self.region)
            vpc_id = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0][
                "VpcId"
            ]
            subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
                "Subnets"
            ]
            self._network = (
                vpc_id,
                [s["SubnetId"] for s in sorted(subnets, key=lambda s: s["AvailabilityZone"])],
            )
        return self._network

    # -- seeding ---------------------------------------------------------------------------

    def seed(self, counts: Mapping[str, int], *, terminate_one: bool, stop_one: bool) -> None:
        creators: dict[str, Callable[[int], None]] = {
            "ec2:instance": self._instances,
            "ec2:volume": self._volumes,
            "ec2:snapshot": self._snapshots,
            "ec2:elastic-ip": self._elastic_ips,
            "ec2:natgateway": self._nat_gateways,
            "s3:bucket": self._buckets,
            "rds:db": self._databases,
            "lambda:function": self._functions,
            "dynamodb:table": self._tables,
            "sqs:queue": self._queues,
            "sns:topic": self._topics,
            "logs:log-group": self._log_groups,
            "kms:key": self._keys,
            "secretsmanager:secret": self._secrets,
            "ecr:repository": self._repositories,
            "kinesis:stream": self._streams,
            "elasticloadbalancing:loadbalancer": self._load_balancers,
            "elasticloadbalancing:targetgroup": self._target_groups,
            "states:stateMachine": self._state_machines,
            "ecs:cluster": self._clusters,
        }
        for resource_type in RESOURCE_TYPES:
            n = counts.get(resource_type, 0)
            if n > 0:
                creators[resource_type](n)
        if terminate_one:
            self._terminated_instance()
        if stop_one:
            self._stop_one_instance()

    def _instances(self, n: int) -> None:
        ec2 = self.clients("ec2", self.region)
        created: list[SeededResource] = []
        for _ in range(n):
            app, env, profile = self._pick("ec2:instance")
            name = self._name(f"{app}-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "ec2:instance", name)
            # Tag propagation to the root volume is a launch-template choice teams often forget.
            propagate = bool(tags) and self.rng.random() < (0.75 if profile == "compliant" else 0.45)
            volume_tags = {**tags, "Name": f"{name}-root"} if propagate else {}
            instance_type = self.rng.choice(("t3.micro", "t3.medium", "m5.large", "c5.xlarge", "r5.large"))
            response = ec2.run_instances(
                # moto does not validate AMI IDs by default; a fixed ID keeps the estate independent
                # of moto's bundled AMI catalogue.
                ImageId="ami-0a1b2c3d4e5f67890",
                InstanceType=instance_type,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=_ec2_tag_spec("instance", tags) + _ec2_tag_spec("volume", volume_tags),
            )
            instance_id = response["Instances"][0]["InstanceId"]
            created.append(
                self._record(
                    "ec2:instance",
                    self._arn("ec2", f"instance/{instance_id}"),
                    instance_id,
                    name,
                    tags,
                    profile,
                    instance_type=instance_type,
                    state="running",
                    root_volume_tags="propagated" if propagate else "none",
                )
            )
        self._root_volumes(created)

    def _root_volumes(self, instances: Sequence[SeededResource]) -> None:
        """Record the root EBS volume moto attached to each instance (one describe call)."""
        if not instances:
            return
        by_instance = {r.resource_id: r for r in instances}
        ec2 = self.clients("ec2", self.region)
        volumes = ec2.describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": list(by_instance)}]
        )["Volumes"]
        roots: dict[str, dict[str, Any]] = {}
        for volume in volumes:
            for attachment in volume.get("Attachments", []):
                roots[attachment["InstanceId"]] = volume
        for instance_id, instance in by_instance.items():
            volume = roots[instance_id]
            tags = {t["Key"]: t.get("Value", "") for t in volume.get("Tags", [])}
            profile = instance.profile if tags else "untagged"
            if profile == "bad_application" and "ec2:volume" not in self.application_types:
                # The copied Application value breaks a rule that does not apply to volumes.
                profile = "compliant"
            self._record(
                "ec2:volume",
                self._arn("ec2", f"volume/{volume['VolumeId']}"),
                volume["VolumeId"],
                f"{instance.name}-root",
                tags,
                profile,
                attached_to=instance_id,
                role="root",
            )

    def _volumes(self, n: int) -> None:
        ec2 = self.clients("ec2", self.region)
        for _ in range(n):
            app, env, profile = self._pick("ec2:volume")
            name = self._name(f"{app}-data-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "ec2:volume", name)
            size = self.rng.choice((20, 50, 100, 200, 500))
            response = ec2.create_volume(
                AvailabilityZone=f"{self.region}a",
                Size=size,
                VolumeType=self.rng.choice(("gp3", "gp3", "gp2")),
                TagSpecifications=_ec2_tag_spec("volume", tags),
            )
            self._data_volumes.append(
                self._record(
                    "ec2:volume",
                    self._arn("ec2", f"volume/{response['VolumeId']}"),
                    response["VolumeId"],
                    name,
                    tags,
                    profile,
                    role="data",
                    size_gib=str(size),
                )
            )

    def _snapshots(self, n: int) -> None:
        if not self._data_volumes:
            return  # tiny scales may have no data volume to snapshot
        ec2 = self.clients("ec2", self.region)
        for i in range(n):
            volume = self._data_volumes[i % len(self._data_volumes)]
            app, env, profile = self._pick("ec2:snapshot")
            name = self._name(f"{volume.name}-backup")
            tags = _make_tags(self.rng, profile, app, env, "ec2:snapshot", name)
            response = ec2.create_snapshot(
                VolumeId=volume.resource_id,
                Description=f"Nightly backup of {volume.name}",
                TagSpecifications=_ec2_tag_spec("snapshot", tags),
            )
            snapshot_id = response["SnapshotId"]
            self._record(
                "ec2:snapshot",
                self._arn("ec2", f"snapshot/{snapshot_id}"),
                snapshot_id,
                name,
                tags,
                profile,
                source_volume=volume.resource_id,
            )

    def _allocate_eip(self, name: str, tags: Mapping[str, str], profile: str, **attributes: str) -> str:
        ec2 = self.clients("ec2", self.region)
        response = ec2.allocate_address(Domain="vpc", TagSpecifications=_ec2_tag_spec("elastic-ip", tags))
        allocation_id: str = response["AllocationId"]
        self._record(
            "ec2:elastic-ip",
            self._arn("ec2", f"elastic-ip/{allocation_id}"),
            allocation_id,
            name,
            tags,
            profile,
            public_ip=response.get("PublicIp", ""),
            **attributes,
        )
        return allocation_id

    def _elastic_ips(self, n: int) -> None:
        for _ in range(n):
            app, env, profile = self._pick("ec2:elastic-ip")
            name = self._name(f"{app}-eip-{_ENV_SHORT[env]}")
            self._allocate_eip(name, _make_tags(self.rng, profile, app, env, "ec2:elastic-ip", name), profile)

    def _nat_gateways(self, n: int) -> None:
        ec2 = self.clients("ec2", self.region)
        _, subnets = self._default_network()
        for i in range(n):
            app, env, profile = self._pick("ec2:natgateway")
            name = self._name(f"core-network-{_ENV_SHORT[env]}-nat")
            tags = _make_tags(self.rng, profile, app, env, "ec2:natgateway", name)
            # The NAT's address is an Elastic IP of its own, tagged (or not) separately, as in life.
            eip_app, eip_env, eip_profile = self._pick("ec2:elastic-ip")
            eip_name = f"{name}-eip"
            eip_tags = _make_tags(self.rng, eip_profile, eip_app, eip_env, "ec2:elastic-ip", eip_name)
            allocation_id = self._allocate_eip(eip_name, eip_tags, eip_profile, used_by="natgateway")
            response = ec2.create_nat_gateway(
                SubnetId=subnets[i % len(subnets)],
                AllocationId=allocation_id,
                TagSpecifications=_ec2_tag_spec("natgateway", tags),
            )
            nat_id = response["NatGateway"]["NatGatewayId"]
            self._record(
                "ec2:natgateway",
                self._arn("ec2", f"natgateway/{nat_id}"),
                nat_id,
                name,
                tags,
                profile,
                allocation_id=allocation_id,
            )

    def _buckets(self, n: int) -> None:
        s3 = self.clients("s3", self.region)
        purposes = ("artifacts", "logs", "backups", "data", "exports", "static", "uploads")
        for _ in range(n):
            app, env, profile = self._pick("s3:bucket")
            purpose = self.rng.choice(purposes)
            # Bucket names share one namespace across accounts (moto enforces it too): suffix with
            # account and region as many organizations do.
            base = f"acme-{app}-{purpose}-{self.account_id}-{self.region}"
            name = base
            suffix = 1
            while name in self.bucket_names or len(name) > 63:
                suffix += 1
                name = f"acme-{app[:12]}-{purpose[:4]}-{self.account_id}-{self.region}-{suffix}"[:63]
            self.bucket_names.add(name)
            tags = _make_tags(self.rng, profile, app, env, "s3:bucket", None)
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=name)  # us-east-1 rejects an explicit LocationConstraint
            else:
                s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
            if tags:
                s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tag_list(tags)})
            self._record("s3:bucket", f"arn:aws:s3:::{name}", name, name, tags, profile)

    def _databases(self, n: int) -> None:
        rds = self.clients("rds", self.region)
        for _ in range(n):
            app, env, profile = self._pick("rds:db")
            name = self._name(f"{app}-{_ENV_SHORT[env]}-db")
            tags = _make_tags(self.rng, profile, app, env, "rds:db", None)
            engine = self.rng.choice(("postgres", "postgres", "mysql"))
            response = rds.create_db_instance(
                DBInstanceIdentifier=name,
                DBInstanceClass=self.rng.choice(("db.t3.medium", "db.r5.large", "db.m5.large")),
                Engine=engine,
                MasterUsername="appadmin",
                MasterUserPassword="not-a-real-password-1",
                AllocatedStorage=self.rng.choice((20, 100, 250)),
                Tags=_tag_list(tags),
            )
            self._record(
                "rds:db", response["DBInstance"]["DBInstanceArn"], name, name, tags, profile, engine=engine
            )

    def _functions(self, n: int) -> None:
        lam = self.clients("lambda", self.region)
        handlers = ("webhook-handler", "event-processor", "nightly-report", "thumbnailer", "cleanup", "api")
        for _ in range(n):
            app, env, profile = self._pick("lambda:function")
            name = self._name(f"{app}-{self.rng.choice(handlers)}-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "lambda:function", None)
            kwargs: dict[str, Any] = {"Tags": tags} if tags else {}
            response = lam.create_function(
                FunctionName=name,
                Runtime=self.rng.choice(("python3.12", "python3.11", "nodejs20.x")),
                Role=self.roles["lambda"],
                Handler="index.handler",
                Code={"ZipFile": _lambda_zip()},
                MemorySize=self.rng.choice((128, 256, 512, 1024)),
                **kwargs,
            )
            self._record("lambda:function", response["FunctionArn"], name, name, tags, profile)

    def _tables(self, n: int) -> None:
        ddb = self.clients("dynamodb", self.region)
        entities = ("sessions", "orders", "events", "users", "ledger", "features", "cache")
        for _ in range(n):
            app, env, profile = self._pick("dynamodb:table")
            name = self._name(f"{app}-{self.rng.choice(entities)}-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "dynamodb:table", None)
            kwargs: dict[str, Any] = {"Tags": _tag_list(tags)} if tags else {}
            response = ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                **kwargs,
            )
            self._record(
                "dynamodb:table", response["TableDescription"]["TableArn"], name, name, tags, profile
            )

    def _queues(self, n: int) -> None:
        sqs = self.clients("sqs", self.region)
        kinds = ("jobs", "events", "notifications", "ingest", "retry")
        for _ in range(n):
            app, env, profile = self._pick("sqs:queue")
            stem = f"{app}-{self.rng.choice(kinds)}-{_ENV_SHORT[env]}"
            name = self._name(stem)
            if self.rng.random() < 0.25:
                name = f"{name}-dlq"
            tags = _make_tags(self.rng, profile, app, env, "sqs:queue", None)
            kwargs: dict[str, Any] = {"tags": tags} if tags else {}
            sqs.create_queue(QueueName=name, **kwargs)
            self._record("sqs:queue", self._arn("sqs", name), name, name, tags, profile)

    def _topics(self, n: int) -> None:
        sns = self.clients("sns", self.region)
        kinds = ("alerts", "order-events", "deployments", "billing-alarms")
        for _ in range(n):
            app, env, profile = self._pick("sns:topic")
            name = self._name(f"{app}-{self.rng.choice(kinds)}-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "sns:topic", None)
            kwargs: dict[str, Any] = {"Tags": _tag_list(tags)} if tags else {}
            arn = sns.create_topic(Name=name, **kwargs)["TopicArn"]
            self._record("sns:topic", arn, name, name, tags, profile)

    def _log_groups(self, n: int) -> None:
        logs = self.clients("logs", self.region)
        for _ in range(n):
            app, env, profile = self._pick("logs:log-group")
            prefix = self.rng.choice(("/aws/lambda/", "/ecs/", "/app/"))
            name = self._name(f"{prefix}{app}-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "logs:log-group", None)
            kwargs: dict[str, Any] = {"tags": tags} if tags else {}
            logs.create_log_group(logGroupName=name, **kwargs)
            self._record("logs:log-group", self._arn("logs", f"log-group:{name}"), name, name, tags, profile)

    def _keys(self, n: int) -> None:
        kms = self.clients("kms", self.region)
        for _ in range(n):
            app, env, profile = self._pick("kms:key")
            name = self._name(f"{app}-{_ENV_SHORT[env]}-cmk")
            tags = _make_tags(self.rng, profile, app, env, "kms:key", None)
            kwargs: dict[str, Any] = {"Tags": _tag_list(tags, "TagKey", "TagValue")} if tags else {}
            metadata = kms.create_key(Description=f"Encryption key for {app} ({env})", **kwargs)[
                "KeyMetadata"
            ]
            # Keys have no names; the alias is how people recognise them.
            kms.create_alias(AliasName=f"alias/{name}", TargetKeyId=metadata["KeyId"])
            self._record(
                "kms:key", metadata["Arn"], metadata["KeyId"], name, tags, profile, alias=f"alias/{name}"
            )

    def _secrets(self, n: int) -> None:
        secrets = self.clients("secretsmanager", self.region)
        kinds = ("db-credentials", "api-key", "oauth-client", "signing-key")
        for _ in range(n):
            app, env, profile = self._pick("secretsmanager:secret")
            name = self._name(f"{_ENV_SHORT[env]}/{app}/{self.rng.choice(kinds)}")
            tags = _make_tags(self.rng, profile, app, env, "secretsmanager:secret", None)
            kwargs: dict[str, Any] = {"Tags": _tag_list(tags)} if tags else {}
            arn = secrets.create_secret(Name=name, SecretString="emulated-secret-value", **kwargs)["ARN"]
            self._record("secretsmanager:secret", arn, name, name, tags, profile)

    def _repositories(self, n: int) -> None:
        ecr = self.clients("ecr", self.region)
        for _ in range(n):
            app, env, profile = self._pick("ecr:repository")
            name = self._name(f"acme/{app}")
            tags = _make_tags(self.rng, profile, app, env, "ecr:repository", None)
            kwargs: dict[str, Any] = {"tags": _tag_list(tags)} if tags else {}
            arn = ecr.create_repository(repositoryName=name, **kwargs)["repository"]["repositoryArn"]
            self._record("ecr:repository", arn, name, name, tags, profile)

    def _streams(self, n: int) -> None:
        kinesis = self.clients("kinesis", self.region)
        for _ in range(n):
            app, env, profile = self._pick("kinesis:stream")
            name = self._name(f"{app}-events-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "kinesis:stream", None)
            kinesis.create_stream(StreamName=name, ShardCount=1)
            if tags:
                kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
            self._record("kinesis:stream", self._arn("kinesis", f"stream/{name}"), name, name, tags, profile)

    def _load_balancers(self, n: int) -> None:
        elb = self.clients("elbv2", self.region)
        _, subnets = self._default_network()
        for _ in range(n):
            app, env, profile = self._pick("elasticloadbalancing:loadbalancer")
            # Load balancer names: at most 32 characters.
            name = self._name(f"{app[:18]}-{_ENV_SHORT[env]}-alb")[:32]
            tags = _make_tags(self.rng, profile, app, env, "elasticloadbalancing:loadbalancer", None)
            kwargs: dict[str, Any] = {"Tags": _tag_list(tags)} if tags else {}
            response = elb.create_load_balancer(
                Name=name, Subnets=subnets[:2], Scheme="internal", Type="application", **kwargs
            )
            arn = response["LoadBalancers"][0]["LoadBalancerArn"]
            self._record("elasticloadbalancing:loadbalancer", arn, name, name, tags, profile)

    def _target_groups(self, n: int) -> None:
        elb = self.clients("elbv2", self.region)
        vpc_id, _ = self._default_network()
        for _ in range(n):
            app, env, profile = self._pick("elasticloadbalancing:targetgroup")
            name = self._name(f"{app[:18]}-{_ENV_SHORT[env]}-tg")[:32]
            tags = _make_tags(self.rng, profile, app, env, "elasticloadbalancing:targetgroup", None)
            kwargs: dict[str, Any] = {"Tags": _tag_list(tags)} if tags else {}
            response = elb.create_target_group(
                Name=name, Protocol="HTTP", Port=8080, VpcId=vpc_id, TargetType="instance", **kwargs
            )
            arn = response["TargetGroups"][0]["TargetGroupArn"]
            self._record("elasticloadbalancing:targetgroup", arn, name, name, tags, profile)

    def _state_machines(self, n: int) -> None:
        sfn = self.clients("stepfunctions", self.region)
        definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
        for _ in range(n):
            app, env, profile = self._pick("states:stateMachine")
            name = self._name(f"{app}-workflow-{_ENV_SHORT[env]}")
            tags = _make_tags(self.rng, profile, app, env, "states:stateMachine", None)
            kwargs: dict[str, Any] = {"tags": _tag_list(tags, "key", "value")} if tags else {}
            arn = sfn.create_state_machine(
                name=name, definition=definition, roleArn=self.roles["states"], **kwargs
            )["stateMachineArn"]
            self._record("states:stateMachine", arn, name, name, tags, profile)

    def _clusters(self, n: int) -> None:
        ecs = self.clients("ecs", self.region)
        for _ in range(n):
            app, env, profile = self._pick("ecs:cluster")
            name = self._name(f"{app}-{_ENV_SHORT[env]}-cluster")
            tags = _make_tags(self.rng, profile, app, env, "ecs:cluster", None)
            kwargs: dict[str, Any] = {"tags": _tag_list(tags, "key", "value")} if tags else {}
            arn = ecs.create_cluster(clusterName=name, **kwargs)["cluster"]["clusterArn"]
            self._record("ecs:cluster", arn, name, name, tags, profile)

    def _terminated_instance(self) -> None:
        """Launch and terminate one instance: a scanner must not report it (moto keeps listing
        terminated instances, as AWS does for about an hour). Its root volume is deleted with it."""
        ec2 = self.clients("ec2", self.region)
        app, env, _ = self._pick("ec2:instance")
        name = self._name(f"{app}-{_ENV_SHORT[env]}-legacy")
        tags = _make_tags(self.rng, "compliant", app, env, "ec2:instance", name)
        response = ec2.run_instances(
            ImageId="ami-0a1b2c3d4e5f67890",
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=_ec2_tag_spec("instance", tags),
        )
        instance_id = response["Instances"][0]["InstanceId"]
        ec2.terminate_instances(InstanceIds=[instance_id])
        self.terminated.append(
            SeededResource(
                arn=self._arn("ec2", f"instance/{instance_id}"),
                resource_id=instance_id,
                resource_type="ec2:instance",
                account_id=self.account_id,
                region=self.region,
                name=name,
                tags=tags,
                profile="compliant",
                attributes={"state": "terminated"},
            )
        )

    def _stop_one_instance(self) -> None:
        """Stop the first instance seeded here: stopped instances still exist (and their volumes still
        cost money), so they must be scanned."""
        for index, resource in enumerate(self.out):
            if (
                resource.resource_type == "ec2:instance"
                and resource.account_id == self.account_id
                and resource.region == self.region
            ):
                self.clients("ec2", self.region).stop_instances(InstanceIds=[resource.resource_id])
                self.out[index] = SeededResource(
                    arn=resource.arn,
                    resource_id=resource.resource_id,
                    resource_type=resource.resource_type,
                    account_id=resource.account_id,
                    region=resource.region,
                    name=resource.name,
                    tags=resource.tags,
                    profile=resource.profile,
                    attributes={**resource.attributes, "state": "stopped"},
                )
                return


# ---------------------------------------------------------------------------------------------
# Organization and accounts
# ---------------------------------------------------------------------------------------------


def _assumed_credentials(sts: Any, account_id: str, region: str) -> dict[str, str]:
    """Credentials for the member role in ``account_id`` (moto routes calls made with them there)."""
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}",
        RoleSessionName="finops-demo-seeder",
    )["Credentials"]
    return {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
        "region_name": region,
    }


def _service_roles(clients: _AccountClients) -> dict[str, str]:
    """Execution roles Lambda and Step Functions need (moto checks Lambda's role exists)."""
    iam = clients("iam", DEFAULT_REGION)
    roles: dict[str, str] = {}
    for key, service in (("lambda", "lambda.amazonaws.com"), ("states", "states.amazonaws.com")):
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
        role = iam.create_role(RoleName=f"acme-{key}-execution", AssumeRolePolicyDocument=json.dumps(trust))
        roles[key] = role["Role"]["Arn"]
    return roles


def _scaled_counts(base: Mapping[str, int], factor: float) -> dict[str, int]:
    return {rtype: max(0, round(n * factor)) for rtype, n in base.items()}


@dataclass(slots=True)
class _SeedRun:
    """What every account of one seeding run shares: where to write, what was written."""

    endpoint_url: str
    seed: int
    application_types: frozenset[str]
    session: Any
    resources: list[SeededResource] = field(default_factory=list)
    terminated: list[SeededResource] = field(default_factory=list)
    bucket_names: set[str] = field(default_factory=set)
    support_roles: int = 0

    def seed_account(
        self,
        account_id: str,
        credentials: Mapping[str, str],
        plan: _AccountPlan,
        regions: Sequence[str],
        counts: Mapping[str, int],
        *,
        service_roles: bool = True,
        lifecycle_extras: bool = False,
    ) -> None:
        """Seed every region of one account. ``lifecycle_extras`` adds, in the first region, one
        terminated and one stopped instance."""
        clients = _AccountClients(self.session, self.endpoint_url, account_id, credentials)
        roles = _service_roles(clients) if service_roles else {}
        self.support_roles += len(roles)
        for region in regions:
            # One stream per (seed, account, region): adding a region or account leaves the others'
            # names and tags unchanged. String seeds hash with SHA-512, independent of PYTHONHASHSEED.
            rng = random.Random(f"{self.seed}:{plan.label}:{region}")
            seeder = _RegionSeeder(
                clients,
                plan,
                region,
                rng,
                self.application_types,
                roles,
                self.resources,
                self.terminated,
                self.bucket_names,
            )
            extras = lifecycle_extras and region == regions[0]
            seeder.seed(counts, terminate_one=extras, stop_one=extras)


def _create_organization(
    org: Any, seed_accounts: Sequence[_AccountPlan]
) -> tuple[str, str, dict[str, str], list[str], dict[str, str], dict[str, str]]:
    """Organization, OUs and member accounts; returns (org id, root id, OU ids, member ids,
    account names, account -> OU name)."""
    try:
        organization_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    except org.exceptions.AlreadyInOrganizationException as exc:
        raise RuntimeError(
            "the emulator already holds an organization: seed a fresh emulator or reset it first "
            "(EmulatorServer.reset() / POST /moto-api/reset)"
        ) from exc
    root_id = org.list_roots()["Roots"][0]["Id"]
    ou_ids: dict[str, str] = {}
    for ou_name in dict.fromkeys(plan.ou for plan in seed_accounts):
        ou_ids[ou_name] = org.create_organizational_unit(ParentId=root_id, Name=ou_name)[
            "OrganizationalUnit"
        ]["Id"]
    member_ids: list[str] = []
    names: dict[str, str] = {}
    account_ous: dict[str, str] = {}
    for plan in seed_accounts:
        kwargs: dict[str, Any] = {"Tags": _tag_list(plan.account_tags)} if plan.account_tags else {}
        status = org.create_account(Email=f"aws+{plan.label}@example.com", AccountName=plan.name, **kwargs)[
            "CreateAccountStatus"
        ]
        # moto completes CreateAccount synchronously; real AWS would need polling here.
        if status.get("State") != "SUCCEEDED":
            status = org.describe_create_account_status(CreateAccountRequestId=status["Id"])[
                "CreateAccountStatus"
            ]
        account_id = status["AccountId"]
        org.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou_ids[plan.ou])
        member_ids.append(account_id)
        names[account_id] = plan.name
        account_ous[account_id] = plan.ou
    return organization_id, root_id, ou_ids, member_ids, names, account_ous


def _attach_tag_policies(org: Any, root_id: str, ou_ids: Mapping[str, str]) -> dict[str, str]:
    org.enable_policy_type(RootId=root_id, PolicyType="TAG_POLICY")
    created: dict[str, str] = {}
    for name, content, target in (
        ("acme-tagging-baseline", _ROOT_TAG_POLICY, root_id),
        ("acme-production-enforcement", _PRODUCTION_TAG_POLICY, ou_ids.get("Production")),
    ):
        if target is None:
            continue
        policy_id = org.create_policy(
            Content=json.dumps(content),
            Description=f"Demo tag policy {name}",
            Name=name,
            Type="TAG_POLICY",
        )["Policy"]["PolicySummary"]["Id"]
        org.attach_policy(PolicyId=policy_id, TargetId=target)
        created[name] = policy_id
    return created


# The management account holds little, as organizations advise: the trail's log bucket, billing
# exports, a key; half of it tagged.
_MANAGEMENT_PLAN = _AccountPlan(
    label="management",
    name="Management",
    ou="",
    size=1.0,
    environments=(("production", 100),),
    apps=("monitoring",),
    profile_weights=(("compliant", 50), ("untagged", 50)),
    forced_profiles={},
    account_tags={},
)
_MANAGEMENT_COUNTS = {"s3:bucket": 2, "logs:log-group": 1, "kms:key": 1}


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def seed_demo_organization(
    endpoint_url: str,
    *,
    seed: int = 42,
    scale: float = 1.0,
    regions: Sequence[str] = DEMO_REGIONS,
    policy_path: Path | str = DEFAULT_POLICY_PATH,
    seed_management: bool = False,
) -> DemoEstate:
    """Build the demo organization on a fresh moto endpoint and describe it.

    ``scale`` multiplies every per-region count (1.0 gives 642 resources in the three member
    accounts; 10 about 6,400 for benchmarks). ``seed_management`` also puts four resources in the
    management account (scanning it then needs the management session, not an assumed role).
    Raises ``RuntimeError`` if the endpoint already holds an organization.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    started = time.perf_counter()
    # Makes moto's generated IDs (accounts, instances, keys) repeat from run to run.
    post_moto_api(endpoint_url, f"/moto-api/seed?a={int(seed)}")
    management = make_session(fake_credentials())
    org = management.client("organizations", endpoint_url=endpoint_url)
    sts = management.client("sts", endpoint_url=endpoint_url)

    organization_id, root_id, ou_ids, member_ids, names, account_ous = _create_organization(
        org, _MEMBER_PLANS
    )
    tag_policy_ids = _attach_tag_policies(org, root_id, ou_ids)
    # moto's default account (MOTO_ACCOUNT_ID can move it) is whoever created the organization.
    management_id = org.describe_organization()["Organization"]["MasterAccountId"]
    names[management_id] = "Management"
    account_ous[management_id] = "Root"

    run = _SeedRun(endpoint_url, seed, _application_types(Path(policy_path)), management)
    if seed_management:
        run.seed_account(
            management_id,
            fake_credentials(),
            _MANAGEMENT_PLAN,
            [DEFAULT_REGION],
            _MANAGEMENT_COUNTS,
            service_roles=False,
        )
    for account_id, plan in zip(member_ids, _MEMBER_PLANS, strict=True):
        run.seed_account(
            account_id,
            _assumed_credentials(sts, account_id, DEFAULT_REGION),
            plan,
            regions,
            _scaled_counts(_BASE_COUNTS, plan.size * scale),
            lifecycle_extras=True,
        )
    resources = run.resources

    rds_count = sum(1 for r in resources if r.resource_type == "rds:db")
    kms_count = sum(1 for r in resources if r.resource_type == "kms:key")
    estate = DemoEstate(
        endpoint_url=endpoint_url,
        management_account_id=management_id,
        member_account_ids=member_ids,
        account_names=names,
        regions=list(regions),
        organization_id=organization_id,
        root_id=root_id,
        ou_ids=ou_ids,
        account_ous=account_ous,
        tag_policy_ids=tag_policy_ids,
        # The last plan (sandbox) is built to be the worst: most untagged, fewest compliant.
        worst_account_id=member_ids[-1],
        resources=resources,
        terminated=run.terminated,
        support_counts={
            "iam:role (service execution roles)": run.support_roles,
            "rds:snapshot (automated, made by moto per DB)": rds_count,
            "kms:alias": kms_count,
        },
        policy_path=str(policy_path),
        seed=seed,
        scale=scale,
    )
    estate.seconds = time.perf_counter() - started
    return estate


def seed_small_estate(
    endpoint_url: str,
    account_ids: Sequence[str] = ("111111111111", "222222222222"),
    regions: Sequence[str] = ("us-east-1", "eu-west-1"),
    *,
    seed: int = 7,
    policy_path: Path | str = DEFAULT_POLICY_PATH,
) -> DemoEstate:
    """A light estate for fast tests: no organization, 9 resources per account-region (36 with the
    default two accounts and two regions), reached by assuming the member role in each account ID.

    Account IDs beyond the second reuse the second account's plan.
    """
    if not account_ids:
        raise ValueError("account_ids must not be empty")
    started = time.perf_counter()
    post_moto_api(endpoint_url, f"/moto-api/seed?a={int(seed)}")
    session = make_session(fake_credentials())
    sts = session.client("sts", endpoint_url=endpoint_url)
    run = _SeedRun(endpoint_url, seed, _application_types(Path(policy_path)), session)
    for index, account_id in enumerate(account_ids):
        run.seed_account(
            account_id,
            _assumed_credentials(sts, account_id, DEFAULT_REGION),
            _SMALL_PLANS[min(index, len(_SMALL_PLANS) - 1)],
            regions,
            _SMALL_COUNTS,
        )
    estate = DemoEstate(
        endpoint_url=endpoint_url,
        management_account_id="",
        member_account_ids=list(account_ids),
        account_names={
            a: _SMALL_PLANS[min(i, len(_SMALL_PLANS) - 1)].name for i, a in enumerate(account_ids)
        },
        regions=list(regions),
        organization_id="",
        root_id="",
        ou_ids={},
        account_ous={},
        tag_policy_ids={},
        worst_account_id=account_ids[-1],
        resources=run.resources,
        terminated=run.terminated,
        support_counts={"iam:role (service execution roles)": run.support_roles},
        policy_path=str(policy_path),
        seed=seed,
        scale=1.0,
    )
    estate.seconds = time.perf_counter() - started
    return estate
