"""An organization-sized estate on the emulator: N accounts x R regions x M resources, seeded fast.

The demo organization (``demo_estate``) is built for realism: 3 accounts, tagging mistakes of every
kind. Benchmarks of the scan pipeline need the opposite: many accounts and regions, a fixed number of
resources per account-region over several types, and a seeding time of seconds, not minutes. This module
builds that on a moto endpoint:

* an organization whose member accounts are created through Organizations (moto gives each the
  ``OrganizationAccountAccessRole`` the scanner assumes);
* in every member account and region, M resources over EC2 (instances, each with its root volume; data
  volumes; snapshots), Secrets Manager, SQS, SNS, DynamoDB and Lambda (moto stores Lambda code without
  docker), created with batch calls where AWS has them (RunInstances MinCount/MaxCount) and one thread
  per account;
* tags from a deterministic stream per (seed, account, region): most resources fully tagged, some missing
  a key, some never tagged (those are invisible to the tagging API, as on AWS).

The returned :class:`ScaleEstate` lists every ARN created, so a scan's output can be compared exactly.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scanner.emulator.server import DEFAULT_REGION, fake_credentials, make_session, post_moto_api

SCALE_REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2")
MEMBER_ROLE_NAME = "OrganizationAccountAccessRole"

# The mix for 40 resources per account-region; other sizes keep its proportions (see plan_counts).
# An instance is two resources: moto, like EC2, gives each its own root EBS volume.
INSTANCES_PER_40 = 8
SINGLE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("ec2:volume", 4),  # data volumes, on top of the root volumes
    ("ec2:snapshot", 4),
    ("secretsmanager:secret", 4),
    ("sqs:queue", 3),
    ("sns:topic", 3),
    ("dynamodb:table", 3),
    ("lambda:function", 3),
)
RESOURCE_TYPES: tuple[str, ...] = ("ec2:instance", *(t for t, _ in SINGLE_WEIGHTS))

_FULL_TAGS = ("CostCenter", "Owner", "Environment", "Application")
_APPS = ("payments", "search", "checkout", "ledger", "ingest", "reports")
_ENVIRONMENTS = ("production", "staging", "development")


def plan_counts(per_account_region: int) -> dict[str, int]:
    """How many resources of each type make ``per_account_region`` in total (root volumes included).

    ``ec2:volume`` in the result counts data volumes only; the root volumes add ``ec2:instance`` more.
    """
    if per_account_region < 0:
        raise ValueError(f"resources per account-region must be >= 0, got {per_account_region}")
    instances = min(per_account_region // 2, round(INSTANCES_PER_40 * per_account_region / 40))
    rest = per_account_region - 2 * instances
    total_weight = sum(w for _, w in SINGLE_WEIGHTS)
    exact = {t: rest * w / total_weight for t, w in SINGLE_WEIGHTS}
    counts = {t: int(v) for t, v in exact.items()}
    # Largest remainder: the total is exactly what was asked for.
    for t, _ in sorted(exact.items(), key=lambda kv: kv[1] - int(kv[1]), reverse=True)[: rest - sum(counts.values())]:
        counts[t] += 1
    if counts["ec2:snapshot"] and not counts["ec2:volume"]:
        # A snapshot needs a data volume to be taken from.
        counts["ec2:volume"], counts["ec2:snapshot"] = 1, counts["ec2:snapshot"] - 1
    return {"ec2:instance": instances, **counts}


@dataclass(frozen=True, slots=True)
class ScaleResource:
    arn: str
    resource_type: str
    account_id: str
    region: str
    tagged: bool


@dataclass(slots=True)
class ScaleEstate:
    """What the seeder created: accounts, regions and every live resource by ARN."""

    endpoint_url: str
    management_account_id: str
    member_account_ids: list[str]
    regions: list[str]
    per_account_region: int
    resources: list[ScaleResource] = field(default_factory=list)
    seconds: float = 0.0
    seed_api_calls: int = 0

    @property
    def resource_types(self) -> list[str]:
        present = {r.resource_type for r in self.resources}
        return [t for t in dict.fromkeys((*RESOURCE_TYPES[:1], "ec2:volume", *RESOURCE_TYPES[1:])) if t in present]

    @property
    def expected_resource_count(self) -> int:
        return len(self.resources)

    def counts_by_type(self) -> dict[str, int]:
        return dict(Counter(r.resource_type for r in self.resources))

    def tagged_by_type(self) -> dict[str, int]:
        return dict(Counter(r.resource_type for r in self.resources if r.tagged))

    def counts_by_account_region(self) -> dict[tuple[str, str], int]:
        return dict(Counter((r.account_id, r.region) for r in self.resources))

    def summary(self) -> dict[str, Any]:
        return {
            "accounts": len(self.member_account_ids),
            "regions": self.regions,
            "per_account_region": self.per_account_region,
            "expected_resource_count": self.expected_resource_count,
            "by_type": self.counts_by_type(),
            "tagged_by_type": self.tagged_by_type(),
            "seconds": round(self.seconds, 2),
            "seed_api_calls": self.seed_api_calls,
        }


_LAMBDA_ZIP: bytes | None = None


def _lambda_zip() -> bytes:
    global _LAMBDA_ZIP
    if _LAMBDA_ZIP is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            info = zipfile.ZipInfo("index.py", date_time=(2024, 1, 1, 0, 0, 0))
            archive.writestr(info, "def handler(event, context):\n    return {'ok': True}\n")
        _LAMBDA_ZIP = buffer.getvalue()
    return _LAMBDA_ZIP


class _Clients:
    """Clients of one account, built from one shared session under a lock (boto3 sessions are not
    thread-safe when making clients, and one session caches the service models for everyone)."""

    _lock = threading.Lock()

    def __init__(self, session: Any, endpoint_url: str, credentials: Mapping[str, str], calls: Counter[str]):
        from botocore.config import Config

        self._session = session
        self._endpoint = endpoint_url
        self._credentials = {
            k: credentials[k] for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
            if credentials.get(k)
        }
        self._config = Config(retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=4)
        self._clients: dict[tuple[str, str], Any] = {}
        self._calls = calls

    def __call__(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            with self._lock:
                client = self._session.client(
                    service, region_name=region, endpoint_url=self._endpoint, config=self._config,
                    **self._credentials,
                )
            client.meta.events.register("before-send", self._count)
            self._clients[key] = client
        return self._clients[key]

    def _count(self, **_: Any) -> None:
        with self._lock:
            self._calls["calls"] += 1


def _tags_for(rng: random.Random) -> dict[str, str]:
    """Full tags (60 %), one key missing (20 %), or none (20 %)."""
    draw = rng.random()
    if draw < 0.2:
        return {}
    tags = {
        "CostCenter": f"CC-{rng.randint(1000, 1099)}",
        "Owner": f"team-{rng.choice(_APPS)}@example.com",
        "Environment": rng.choice(_ENVIRONMENTS),
        "Application": rng.choice(_APPS),
    }
    if draw < 0.4:
        del tags[rng.choice(_FULL_TAGS)]
    return tags


def _kv(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _ec2_spec(resource_type: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": _kv(tags)}] if tags else []


class _AccountRegionSeeder:
    def __init__(self, clients: _Clients, account_id: str, region: str, rng: random.Random, lambda_role: str):
        self.clients, self.account_id, self.region, self.rng = clients, account_id, region, rng
        self.lambda_role = lambda_role
        self.out: list[ScaleResource] = []

    def _add(self, resource_type: str, arn: str, tags: Mapping[str, str]) -> None:
        self.out.append(ScaleResource(arn, resource_type, self.account_id, self.region, bool(tags)))

    def _arn(self, service: str, suffix: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{suffix}"

    def seed(self, counts: Mapping[str, int]) -> list[ScaleResource]:
        self._ec2(counts["ec2:instance"], counts["ec2:volume"], counts["ec2:snapshot"])
        for i in range(counts["secretsmanager:secret"]):
            tags = _tags_for(self.rng)
            arn = self.clients("secretsmanager", self.region).create_secret(
                Name=f"scale/secret-{i:03d}", SecretString="not-a-secret", **({"Tags": _kv(tags)} if tags else {})
            )["ARN"]
            self._add("secretsmanager:secret", arn, tags)
        for i in range(counts["sqs:queue"]):
            tags = _tags_for(self.rng)
            name = f"scale-queue-{i:03d}"
            self.clients("sqs", self.region).create_queue(QueueName=name, **({"tags": tags} if tags else {}))
            self._add("sqs:queue", self._arn("sqs", name), tags)
        for i in range(counts["sns:topic"]):
            tags = _tags_for(self.rng)
            arn = self.clients("sns", self.region).create_topic(
                Name=f"scale-topic-{i:03d}", **({"Tags": _kv(tags)} if tags else {})
            )["TopicArn"]
            self._add("sns:topic", arn, tags)
        for i in range(counts["dynamodb:table"]):
            tags = _tags_for(self.rng)
            arn = self.clients("dynamodb", self.region).create_table(
                TableName=f"scale-table-{i:03d}",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                **({"Tags": _kv(tags)} if tags else {}),
            )["TableDescription"]["TableArn"]
            self._add("dynamodb:table", arn, tags)
        for i in range(counts["lambda:function"]):
            tags = _tags_for(self.rng)
            arn = self.clients("lambda", self.region).create_function(
                FunctionName=f"scale-function-{i:03d}",
                Runtime="python3.12",
                Role=self.lambda_role,
                Handler="index.handler",
                Code={"ZipFile": _lambda_zip()},
                **({"Tags": tags} if tags else {}),
            )["FunctionArn"]
            self._add("lambda:function", arn, tags)
        return self.out

    def _ec2(self, instances: int, volumes: int, snapshots: int) -> None:
        ec2 = self.clients("ec2", self.region)
        # Two RunInstances calls, one tagged batch and one untagged: a batch shares its tags.
        tags = _tags_for(self.rng) or {"Application": "batch"}
        untagged = instances // 5
        for count, batch_tags in ((instances - untagged, tags), (untagged, {})):
            if count <= 0:
                continue
            launched = ec2.run_instances(
                ImageId="ami-0a1b2c3d4e5f67890", InstanceType="t3.micro", MinCount=count, MaxCount=count,
                TagSpecifications=_ec2_spec("instance", batch_tags),
            )["Instances"]
            for instance in launched:
                self._add("ec2:instance", self._arn("ec2", f"instance/{instance['InstanceId']}"), batch_tags)
                # The root volume comes with the instance (untagged: no volume TagSpecification).
                roots = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
                if len(roots) != 1:
                    raise RuntimeError(f"instance {instance['InstanceId']} has {len(roots)} root volumes, expected 1")
                self._add("ec2:volume", self._arn("ec2", f"volume/{roots[0]}"), {})
        data_volumes: list[str] = []
        for _ in range(volumes):
            volume_tags = _tags_for(self.rng)
            volume_id = ec2.create_volume(
                AvailabilityZone=f"{self.region}a", Size=20, TagSpecifications=_ec2_spec("volume", volume_tags)
            )["VolumeId"]
            data_volumes.append(volume_id)
            self._add("ec2:volume", self._arn("ec2", f"volume/{volume_id}"), volume_tags)
        for i in range(snapshots):
            snapshot_tags = _tags_for(self.rng)
            snapshot_id = ec2.create_snapshot(
                VolumeId=data_volumes[i % len(data_volumes)], TagSpecifications=_ec2_spec("snapshot", snapshot_tags)
            )["SnapshotId"]
            # Snapshot ARNs name no account (arn:aws:ec2:REGION::snapshot/ID), as AWS writes them.
            self._add("ec2:snapshot", f"arn:aws:ec2:{self.region}::snapshot/{snapshot_id}", snapshot_tags)


def _create_accounts(org: Any, accounts: int) -> tuple[str, list[str]]:
    try:
        org.create_organization(FeatureSet="ALL")
    except org.exceptions.AlreadyInOrganizationException as exc:
        raise RuntimeError(
            "the emulator already holds an organization: seed a fresh emulator or reset it first "
            "(POST /moto-api/reset)"
        ) from exc
    management = org.describe_organization()["Organization"]["MasterAccountId"]
    members: list[str] = []
    for index in range(accounts):
        status = org.create_account(Email=f"aws+scale{index:04d}@example.com", AccountName=f"scale-{index:04d}")[
            "CreateAccountStatus"
        ]
        if status.get("State") != "SUCCEEDED":  # moto completes synchronously; AWS would need polling
            status = org.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"]
        members.append(status["AccountId"])
    return management, members


def seed_scale_estate(
    endpoint_url: str,
    *,
    accounts: int = 50,
    regions: Sequence[str] = SCALE_REGIONS,
    per_account_region: int = 40,
    seed: int = 42,
    threads: int = 8,
) -> ScaleEstate:
    """Create the organization and its estate on a fresh moto endpoint; returns what was created.

    Raises ``ValueError`` for sizes out of range and ``RuntimeError`` when the endpoint already holds
    an organization.
    """
    if accounts < 1:
        raise ValueError(f"accounts must be >= 1, got {accounts}")
    if not regions:
        raise ValueError("regions must name at least one region")
    counts = plan_counts(per_account_region)
    started = time.perf_counter()
    post_moto_api(endpoint_url, f"/moto-api/seed?a={int(seed)}")
    session = make_session(fake_credentials())
    calls: Counter[str] = Counter()
    management_clients = _Clients(session, endpoint_url, fake_credentials(), calls)
    management, members = _create_accounts(management_clients("organizations", DEFAULT_REGION), accounts)
    sts = management_clients("sts", DEFAULT_REGION)

    def seed_account(account_id: str) -> list[ScaleResource]:
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}", RoleSessionName="scale-seeder"
        )["Credentials"]
        clients = _Clients(
            session,
            endpoint_url,
            {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
             "aws_session_token": creds["SessionToken"]},
            calls,
        )
        lambda_role = ""
        if counts["lambda:function"]:
            trust = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            lambda_role = clients("iam", DEFAULT_REGION).create_role(
                RoleName="scale-lambda-execution", AssumeRolePolicyDocument=json.dumps(trust)
            )["Role"]["Arn"]
        created: list[ScaleResource] = []
        for region in regions:
            # One stream per (seed, account, region): the same estate whatever order threads run in.
            rng = random.Random(f"{seed}:{account_id}:{region}")
            created += _AccountRegionSeeder(clients, account_id, region, rng, lambda_role).seed(counts)
        return created

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="seed") as pool:
        resources = [r for batch in pool.map(seed_account, members) for r in batch]
    estate = ScaleEstate(
        endpoint_url=endpoint_url,
        management_account_id=management,
        member_account_ids=members,
        regions=list(regions),
        per_account_region=per_account_region,
        resources=resources,
    )
    estate.seconds = time.perf_counter() - started
    estate.seed_api_calls = calls["calls"]
    return estate
