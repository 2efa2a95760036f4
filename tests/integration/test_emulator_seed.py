"""The emulator harness and the seeded demo organization, checked with plain boto3.

Everything here lists the emulator through each service's own API (not through the project's
scanner), so a scanner test that compares against ``DemoEstate`` compares against verified truth.
The demo estate lives in its own emulator process: moto's state is process-wide, and other
integration tests reset the in-process emulator between uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from scanner.emulator import (
    MEMBER_ROLE_NAME,
    RESOURCE_TYPES,
    DemoEstate,
    EmulatorProcess,
    EmulatorServer,
    aws_env,
    make_session,
    seed_demo_organization,
    seed_small_estate,
)

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------------------------
# An independent inventory: every seeded type, listed and tagged through its own service API
# ---------------------------------------------------------------------------------------------

Inventory = dict[str, tuple[str, str, dict[str, str]]]  # arn -> (resource type, region, tags)


def _tags(items: list[dict[str, Any]] | None, key: str = "Key", value: str = "Value") -> dict[str, str]:
    # moto omits "Value" for empty S3 tag values; real AWS returns "". Both mean "".
    return {t[key]: t.get(value, "") for t in items or []}


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def _assume(endpoint: str, account_id: str) -> dict[str, str]:
    sts = make_session({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}).client(
        "sts", endpoint_url=endpoint, region_name="us-east-1"
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}", RoleSessionName="inventory"
    )["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def live_inventory(endpoint: str, account_id: str, regions: list[str]) -> tuple[Inventory, list[str]]:
    """(live resources of the seeded types, terminated instance ids) in one account."""
    session = make_session(_assume(endpoint, account_id))

    def client(service: str, region: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=endpoint)

    out: Inventory = {}
    terminated: list[str] = []

    def add(rtype: str, region: str, arn: str, tags: Mapping[str, str]) -> None:
        assert arn not in out, f"listed twice: {arn}"
        out[arn] = (rtype, region, dict(tags))

    def arn(service: str, region: str, suffix: str) -> str:
        return f"arn:aws:{service}:{region}:{account_id}:{suffix}"

    # S3 is global: one listing per account, each bucket placed in its own region.
    s3 = client("s3", "us-east-1")
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        region = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        try:
            tags = _tags(s3.get_bucket_tagging(Bucket=name)["TagSet"])
        except s3.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "NoSuchTagSet"
            tags = {}
        add("s3:bucket", region, f"arn:aws:s3:::{name}", tags)

    for region in regions:
        ec2 = client("ec2", region)
        for reservation in _pages(ec2, "describe_instances", "Reservations"):
            for inst in reservation["Instances"]:
                if inst["State"]["Name"] in {"terminated", "shutting-down"}:
                    terminated.append(inst["InstanceId"])
                    continue
                add(
                    "ec2:instance",
                    region,
                    arn("ec2", region, f"instance/{inst['InstanceId']}"),
                    _tags(inst.get("Tags")),
                )
        for vol in _pages(ec2, "describe_volumes", "Volumes"):
            add("ec2:volume", region, arn("ec2", region, f"volume/{vol['VolumeId']}"), _tags(vol.get("Tags")))
        # moto quirk: OwnerIds=["self"] also returns the ~1,300 snapshots behind its bundled AMIs,
        # owned by Amazon's accounts; keep the account's own.
        for snap in _pages(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"]):
            if snap["OwnerId"] == account_id:
                add(
                    "ec2:snapshot",
                    region,
                    arn("ec2", region, f"snapshot/{snap['SnapshotId']}"),
                    _tags(snap.get("Tags")),
                )
        for addr in ec2.describe_addresses()["Addresses"]:
            add(
                "ec2:elastic-ip",
                region,
                arn("ec2", region, f"elastic-ip/{addr['AllocationId']}"),
                _tags(addr.get("Tags")),
            )
        for nat in _pages(ec2, "describe_nat_gateways", "NatGateways"):
            if nat["State"] not in {"deleted", "deleting"}:
                add(
                    "ec2:natgateway",
                    region,
                    arn("ec2", region, f"natgateway/{nat['NatGatewayId']}"),
                    _tags(nat.get("Tags")),
                )

        for db in _pages(client("rds", region), "describe_db_instances", "DBInstances"):
            add("rds:db", region, db["DBInstanceArn"], _tags(db.get("TagList")))

        lam = client("lambda", region)
        for fn in _pages(lam, "list_functions", "Functions"):
            add(
                "lambda:function",
                region,
                fn["FunctionArn"],
                lam.list_tags(Resource=fn["FunctionArn"]).get("Tags", {}),
            )

        ddb = client("dynamodb", region)
        for name in _pages(ddb, "list_tables", "TableNames"):
            table_arn = arn("dynamodb", region, f"table/{name}")
            add(
                "dynamodb:table",
                region,
                table_arn,
                _tags(ddb.list_tags_of_resource(ResourceArn=table_arn).get("Tags")),
            )

        sqs = client("sqs", region)
        for url in _pages(sqs, "list_queues", "QueueUrls"):
            add(
                "sqs:queue",
                region,
                arn("sqs", region, url.rsplit("/", 1)[1]),
                sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
            )

        sns = client("sns", region)
        for topic in _pages(sns, "list_topics", "Topics"):
            add(
                "sns:topic",
                region,
                topic["TopicArn"],
                _tags(sns.list_tags_for_resource(ResourceArn=topic["TopicArn"]).get("Tags")),
            )

        logs = client("logs", region)
        for group in _pages(logs, "describe_log_groups", "logGroups"):
            group_arn = group.get("logGroupArn") or group["arn"].removesuffix(":*")
            add(
                "logs:log-group",
                region,
                group_arn,
                logs.list_tags_log_group(logGroupName=group["logGroupName"]).get("tags", {}),
            )

        kms = client("kms", region)
        for key in _pages(kms, "list_keys", "Keys"):
            key_tags = _tags(kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags"), "TagKey", "TagValue")
            add("kms:key", region, key["KeyArn"], key_tags)

        for secret in _pages(client("secretsmanager", region), "list_secrets", "SecretList"):
            add("secretsmanager:secret", region, secret["ARN"], _tags(secret.get("Tags")))

        ecr = client("ecr", region)
        for repo in _pages(ecr, "describe_repositories", "repositories"):
            repo_tags = _tags(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags"))
            add("ecr:repository", region, repo["repositoryArn"], repo_tags)

        kinesis = client("kinesis", region)
        for name in _pages(kinesis, "list_streams", "StreamNames"):
            stream_tags = _tags(kinesis.list_tags_for_stream(StreamName=name).get("Tags"))
            add("kinesis:stream", region, arn("kinesis", region, f"stream/{name}"), stream_tags)

        elb = client("elbv2", region)
        for rtype, operation, key, arn_key in (
            (
                "elasticloadbalancing:loadbalancer",
                "describe_load_balancers",
                "LoadBalancers",
                "LoadBalancerArn",
            ),
            ("elasticloadbalancing:targetgroup", "describe_target_groups", "TargetGroups", "TargetGroupArn"),
        ):
            arns = [item[arn_key] for item in _pages(elb, operation, key)]
            for start in range(0, len(arns), 20):  # DescribeTags takes at most 20 ARNs
                for description in elb.describe_tags(ResourceArns=arns[start : start + 20])[
                    "TagDescriptions"
                ]:
                    add(rtype, region, description["ResourceArn"], _tags(description.get("Tags")))

        sfn = client("stepfunctions", region)
        for machine in _pages(sfn, "list_state_machines", "stateMachines"):
            machine_tags = _tags(
                sfn.list_tags_for_resource(resourceArn=machine["stateMachineArn"]).get("tags"), "key", "value"
            )
            add("states:stateMachine", region, machine["stateMachineArn"], machine_tags)

        ecs = client("ecs", region)
        for cluster_arn in _pages(ecs, "list_clusters", "clusterArns"):
            cluster_tags = _tags(
                ecs.list_tags_for_resource(resourceArn=cluster_arn).get("tags"), "key", "value"
            )
            add("ecs:cluster", region, cluster_arn, cluster_tags)
    return out, terminated


def assert_live_matches(estate: DemoEstate, endpoint: str) -> None:
    """Every account of the estate, listed independently, equals what the estate records."""
    for account_id in estate.member_account_ids:
        live, terminated = live_inventory(endpoint, account_id, estate.regions)
        expected = {
            r.arn: (r.resource_type, r.region, dict(r.tags))
            for r in estate.resources
            if r.account_id == account_id
        }
        live_counts = Counter((account_id, region, rtype) for rtype, region, _ in live.values())
        expected_counts = {k: n for k, n in estate.counts.items() if k[0] == account_id}
        assert dict(live_counts) == expected_counts, f"counts differ in {account_id}"
        missing, extra = expected.keys() - live.keys(), live.keys() - expected.keys()
        assert not missing and not extra, (
            f"{account_id}: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}"
        )
        wrong = [a for a in expected if expected[a] != live[a]]
        assert not wrong, (
            f"{account_id}: tags or region differ, e.g. {wrong[0]}: {expected[wrong[0]]} != {live[wrong[0]]}"
        )
        assert sorted(terminated) == sorted(
            r.resource_id for r in estate.terminated if r.account_id == account_id
        ), "terminated instances differ"


# ---------------------------------------------------------------------------------------------
# The demo organization
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[EmulatorProcess, DemoEstate]]:
    with EmulatorProcess() as proc:
        estate = seed_demo_organization(proc.endpoint_url)
        print(
            f"\nseeded the demo organization: {estate.expected_resource_count} resources, "
            f"{len(estate.resource_types)} types, {len(estate.member_account_ids)} accounts x "
            f"{len(estate.regions)} regions in {estate.seconds:.1f} s"
        )
        yield proc, estate


def test_demo_estate_has_the_promised_shape(demo: tuple[EmulatorProcess, DemoEstate]) -> None:
    _, estate = demo
    assert estate.expected_resource_count >= 600
    assert len(estate.resource_types) >= 12
    assert estate.resource_types == list(RESOURCE_TYPES)
    assert len(estate.member_account_ids) == 3
    assert estate.regions == ["us-east-1", "eu-west-1", "ap-southeast-2"]
    assert sum(estate.counts.values()) == estate.expected_resource_count
    # Typically 7-12 s on two cores; the bound only catches a gross regression on a loaded machine.
    assert estate.seconds < 60, f"seeding took {estate.seconds:.0f} s"

    # Every instance has its root volume, and every (account, region) has resources.
    instances = estate.counts_by_type()["ec2:instance"]
    roots = [r for r in estate.resources if r.attributes.get("role") == "root"]
    assert len(roots) == instances
    for account_id in estate.member_account_ids:
        for region in estate.regions:
            assert estate.count(account_id, region) > 30

    # The mess is realistic: mostly compliant overall but far from it, some never tagged.
    profiles = estate.counts_by_profile()
    total = estate.expected_resource_count
    assert 0.35 <= profiles["compliant"] / total <= 0.55
    assert 0.10 <= profiles["untagged"] / total <= 0.25
    all_tags = [r.tags for r in estate.resources]
    assert any("costcenter" in t or "COSTCENTER" in t for t in all_tags)
    assert any(t.get("Environment") in {"prod", "Prod", "prd"} for t in all_tags)
    assert any(t.get("CostCenter") in {"Enginering", "Marketting"} for t in all_tags)
    assert any(t.get("Owner") == "" for t in all_tags)
    assert any(t.get("Owner", "").endswith("@gmail.com") for t in all_tags)
    assert any(t.get("Application") == "Payments_API" for t in all_tags)
    assert any(k.startswith("temp") or k == "DeleteMe" for t in all_tags for k in t)

    # One account is clearly the worst.
    def share(account_id: str, profile: str) -> float:
        return estate.counts_by_profile(account_id).get(profile, 0) / estate.count(account_id)

    worst = estate.worst_account_id
    others = [a for a in estate.member_account_ids if a != worst]
    assert all(share(worst, "compliant") < share(a, "compliant") - 0.2 for a in others)
    assert all(share(worst, "untagged") > share(a, "untagged") for a in others)

    # The same application, compliant in the first account and tagged `env` in the second.
    first, second = estate.member_account_ids[:2]
    payments = [r for r in estate.resources if r.tags.get("Application") == "payments-api"]
    first_tags = [r.tags for r in payments if r.account_id == first]
    second_tags = [r.tags for r in payments if r.account_id == second]
    assert first_tags and all("Environment" in t for t in first_tags)
    assert second_tags and all("env" in t and "Environment" not in t for t in second_tags)


def test_profiles_agree_with_the_policy_engine(demo: tuple[EmulatorProcess, DemoEstate]) -> None:
    """Each resource's profile label is the truth the pure engine computes from its tags, so a
    scan's compliant count must equal ``expected_compliant_count``."""
    from policies.engine import evaluate
    from policies.models import Resource
    from policies.policy import load_policy_file

    _, estate = demo
    resources = [
        Resource(r.arn, r.resource_id, r.resource_type, r.account_id, r.region, r.tags, r.name)
        for r in estate.resources
    ]
    evaluation = evaluate(resources, load_policy_file(estate.policy_path))
    disagreements = [
        (seeded.profile, seeded.resource_type, [v.rule_id for v in result.violations])
        for seeded, result in zip(estate.resources, evaluation.results, strict=True)
        if result.compliant != (seeded.profile == "compliant")
    ]
    assert not disagreements, disagreements[:5]
    assert evaluation.compliant == estate.expected_compliant_count
    print(f"\ndemo compliance score {evaluation.score:.3f} ({evaluation.compliant}/{evaluation.in_scope})")


def test_member_accounts_are_reachable_with_assume_role(demo: tuple[EmulatorProcess, DemoEstate]) -> None:
    proc, estate = demo
    org = proc.client("organizations")
    accounts = {
        a["Id"]: a for page in org.get_paginator("list_accounts").paginate() for a in page["Accounts"]
    }
    assert set(accounts) == {estate.management_account_id, *estate.member_account_ids}
    assert org.describe_organization()["Organization"]["Id"] == estate.organization_id
    for ou_name, ou_id in estate.ou_ids.items():
        children = {a["Id"] for a in org.list_accounts_for_parent(ParentId=ou_id)["Accounts"]}
        assert children == {a for a, ou in estate.account_ous.items() if ou == ou_name}
    attached = org.list_policies_for_target(TargetId=estate.root_id, Filter="TAG_POLICY")["Policies"]
    assert {p["Id"] for p in attached} >= {estate.tag_policy_ids["acme-tagging-baseline"]}

    sts = proc.client("sts")
    for account_id in estate.member_account_ids:
        creds = sts.assume_role(RoleArn=estate.member_role_arn(account_id), RoleSessionName="reachability")[
            "Credentials"
        ]
        identity = (
            make_session(
                {
                    "aws_access_key_id": creds["AccessKeyId"],
                    "aws_secret_access_key": creds["SecretAccessKey"],
                    "aws_session_token": creds["SessionToken"],
                    "region_name": "us-east-1",
                }
            )
            .client("sts", endpoint_url=proc.endpoint_url)
            .get_caller_identity()
        )
        assert identity["Account"] == account_id
    # Resources stay in their account: the management account sees none of the members' buckets.
    assert proc.client("s3").list_buckets().get("Buckets", []) == []


def test_live_resources_match_the_estate_exactly(demo: tuple[EmulatorProcess, DemoEstate]) -> None:
    proc, estate = demo
    started = time.perf_counter()
    assert_live_matches(estate, proc.endpoint_url)
    seconds = time.perf_counter() - started
    print(f"\nindependent inventory of {estate.expected_resource_count} resources in {seconds:.1f} s")
    assert len(estate.terminated) == len(estate.member_account_ids)
    assert sum(estate.terminated_counts.values()) == len(estate.terminated)


def test_seeding_is_deterministic_across_fresh_emulators(demo: tuple[EmulatorProcess, DemoEstate]) -> None:
    """A second emulator process, seeded by the CLI itself (`--seed demo`), builds the same estate:
    the same names and tags, and (moto's random generator being seeded too) the same account IDs."""
    _, estate = demo
    started = time.perf_counter()
    with EmulatorProcess(seed="demo") as second:
        summary = second.estate_summary
        assert summary is not None
        up = time.perf_counter() - started
        print(f"\nCLI-seeded second estate in {summary['seconds']} s (process ready after {up:.1f} s)")
        assert summary["digest"] == estate.digest()
        assert summary["arn_digest"] == estate.arn_digest()  # moto's generated IDs repeat too
        assert summary["member_account_ids"] == estate.member_account_ids
        assert summary["expected_resource_count"] == estate.expected_resource_count
        assert summary["by_type"] == estate.counts_by_type()
    # Another seed gives another estate (a tenth of the size keeps this quick).
    with EmulatorProcess() as third:
        other = seed_demo_organization(third.endpoint_url, seed=7, scale=0.1)
        assert other.digest() != estate.digest()
        # Seeding twice on one endpoint is refused, not silently doubled.
        with pytest.raises(RuntimeError, match="already holds an organization"):
            seed_demo_organization(third.endpoint_url)


# ---------------------------------------------------------------------------------------------
# The harness itself
# ---------------------------------------------------------------------------------------------


def test_in_process_server_and_small_estate() -> None:
    """EmulatorServer binds 127.0.0.1 on a free port; the small estate is exact too.

    No reset here: moto's state is process-wide and a session-wide emulator may be in use, so the
    small estate goes to account IDs nothing else uses.
    """
    with EmulatorServer() as server:
        assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
        assert server.port > 0
        assert server.credentials == {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }
        accounts = ["310000000001", "310000000002"]
        estate = seed_small_estate(server.endpoint_url, accounts, ["us-east-1", "eu-west-1"])
        assert estate.expected_resource_count == 36
        assert estate.counts_by_account() == {accounts[0]: 18, accounts[1]: 18}
        assert_live_matches(estate, server.endpoint_url)
        endpoint = server.endpoint_url
    with pytest.raises(OSError):
        urllib.request.urlopen(endpoint, timeout=2)  # stopped means the port is released


def test_reset_and_aws_env_for_subprocesses() -> None:
    with EmulatorProcess(seed="small") as proc:
        assert proc.estate_summary is not None
        assert proc.estate_summary["expected_resource_count"] == 36
        env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"} | aws_env(proc.endpoint_url)
        assert env["AWS_ENDPOINT_URL"] == proc.endpoint_url and env["AWS_DEFAULT_REGION"] == "us-east-1"
        # A child process's boto3 reaches the emulator through the environment alone.
        code = "import boto3; s = boto3.client('sts');print(s.get_caller_identity()['Account'])"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "123456789012"
        accounts = proc.estate_summary["member_account_ids"]
        ddb = make_session(_assume(proc.endpoint_url, accounts[0]) | {"region_name": "us-east-1"}).client(
            "dynamodb", endpoint_url=proc.endpoint_url
        )
        assert ddb.list_tables()["TableNames"]
        proc.reset()
        assert ddb.list_tables()["TableNames"] == []
