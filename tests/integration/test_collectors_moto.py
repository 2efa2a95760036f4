"""The AWS collectors against a real moto server over HTTP.

Every registered type moto implements is seeded (tagged, untagged, empty tag values, more than one
page) in a fresh random account, collected through ``collect_shard`` and compared exactly: ARNs,
counts and tags. A second account is reached through AssumeRole. Throttling and AccessDenied are
injected with botocore ``before-send`` hooks on the factory's own cached clients.

moto's backends are process-wide; random account ids keep this module's estate apart from other
tests that use moto in the same process. Bucket names are global, so they get a random suffix.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import secrets
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from moto.server import ThreadedMotoServer

from policies.models import GLOBAL_REGION, Resource
from scanner.providers.aws import registry
from scanner.providers.aws.collect import (
    TAGGING_API_NOTE,
    collect_shard,
    collect_tagging_api,
    fetch_resources_by_arn,
)
from scanner.providers.aws.regions import UnknownRegionError, discover_regions
from scanner.providers.aws.session import AwsSessionFactory
from scanner.ratelimit import LocalTokenBucketLimiter
from scanner.retry import RetryPolicy, register_interrupt

pytestmark = pytest.mark.integration

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
FAST_RETRY = RetryPolicy(attempts=4, base_wait=0.001, max_wait=0.005, max_total=10)
BASE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _random_account() -> str:
    return str(10**11 + secrets.randbelow(9 * 10**11))


def _kv(tags: dict[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in tags.items()]


def _by_arn(resources: list[Resource], resource_type: str | None = None) -> dict[str, dict[str, str]]:
    return {
        r.arn: dict(r.tags) for r in resources if resource_type is None or r.resource_type == resource_type
    }


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 with an OS-chosen port, for this module."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port  # type: ignore[union-attr]  # the real port behind port=0
    assert isinstance(port, int) and port > 0
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _factory_for_new_account(endpoint: str) -> tuple[AwsSessionFactory, str]:
    # Assume a role into a fresh random account with moto's default credentials, then use those
    # credentials as the factory's base: its caller account is the fresh account.
    account = _random_account()
    bootstrap = AwsSessionFactory(endpoint_url=endpoint, credentials=BASE_CREDENTIALS)
    assumed = bootstrap.credentials_for(account)
    assert assumed is not None
    factory = AwsSessionFactory(
        endpoint_url=endpoint,
        credentials={
            "aws_access_key_id": assumed.access_key,
            "aws_secret_access_key": assumed.secret_key,
            "aws_session_token": assumed.token,
        },
    )
    return factory, account


@dataclass
class Estate:
    """What was created, keyed the way the collectors report it."""

    endpoint: str
    credentials: dict[str, str]
    account: str
    member: str
    suffix: str
    expected: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # type -> arn -> tags
    s3: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # arn -> (region, tags)
    global_expected: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    snapshot_baseline: set[str] = field(default_factory=set)
    member_expected: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    unregistered_tagged: dict[str, dict[str, str]] = field(default_factory=dict)
    terminated_instance: str = ""
    deleted_nat: str = ""
    inactive_cluster: str = ""
    tagged_instance_arn: str = ""
    untagged_volume_arn: str = ""
    untagged_vpc_arn: str = ""
    member_bucket_arn: str = ""

    def factory(self) -> AwsSessionFactory:
        """A fresh factory (its own client cache) for the estate's account."""
        return AwsSessionFactory(endpoint_url=self.endpoint, credentials=self.credentials)

    def add(self, resource_type: str, arn: str, tags: dict[str, str]) -> None:
        self.expected.setdefault(resource_type, {})[arn] = tags


def _seed_ec2(est: Estate, f: AwsSessionFactory) -> None:
    a, ec2 = est.account, f.client(est.account, "ec2", REGION)
    reservation = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=3,
        MaxCount=3,
        TagSpecifications=[{"ResourceType": "instance", "Tags": _kv({"Name": "web", "CostCenter": ""})}],
    )
    ids = [i["InstanceId"] for i in reservation["Instances"]]
    untagged = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[ids[2]])
    # moto pages DescribeInstances by reservation: 55 more reservations make 57, two pages of 50.
    singles = []
    for i in range(55):
        spec = [{"ResourceType": "instance", "Tags": _kv({"batch": str(i)})}] if i % 2 else []
        singles.append(
            ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=spec)[
                "Instances"
            ][0]["InstanceId"]
        )
        est.add(
            "ec2:instance",
            f"arn:aws:ec2:{REGION}:{a}:instance/{singles[-1]}",
            {"batch": str(i)} if i % 2 else {},
        )
    est.terminated_instance = f"arn:aws:ec2:{REGION}:{a}:instance/{ids[2]}"
    for iid in ids[:2]:
        est.add("ec2:instance", f"arn:aws:ec2:{REGION}:{a}:instance/{iid}", {"Name": "web", "CostCenter": ""})
    est.add("ec2:instance", f"arn:aws:ec2:{REGION}:{a}:instance/{untagged}", {})
    est.tagged_instance_arn = f"arn:aws:ec2:{REGION}:{a}:instance/{ids[0]}"
    # Every running instance has its own root volume (the terminated one's is deleted with it).
    for res in ec2.describe_instances(InstanceIds=[*ids[:2], untagged, *singles])["Reservations"]:
        for inst in res["Instances"]:
            for bdm in inst.get("BlockDeviceMappings", []):
                est.add("ec2:volume", f"arn:aws:ec2:{REGION}:{a}:volume/{bdm['Ebs']['VolumeId']}", {})
    # 120 volumes: more than two pages of 50.
    first_volume = ""
    for i in range(120):
        tags = {"env": "prod", "n": str(i)} if i % 2 == 0 else {}
        spec = [{"ResourceType": "volume", "Tags": _kv(tags)}] if tags else []
        vid = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1, TagSpecifications=spec)["VolumeId"]
        est.add("ec2:volume", f"arn:aws:ec2:{REGION}:{a}:volume/{vid}", tags)
        first_volume = first_volume or vid
        if not tags:
            est.untagged_volume_arn = f"arn:aws:ec2:{REGION}:{a}:volume/{vid}"
    # Snapshots: moto invents snapshots of its default AMIs, so compare against a baseline.
    for tags in ({"Backup": ""}, {}):
        spec = [{"ResourceType": "snapshot", "Tags": _kv(tags)}] if tags else []
        sid = ec2.create_snapshot(VolumeId=first_volume, TagSpecifications=spec)["SnapshotId"]
        est.add("ec2:snapshot", f"arn:aws:ec2:{REGION}::snapshot/{sid}", tags)
    vpc = ec2.create_vpc(
        CidrBlock="10.0.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": _kv({"tier": ""})}]
    )
    vpc_id = vpc["Vpc"]["VpcId"]
    est.unregistered_tagged[f"arn:aws:ec2:{REGION}:{a}:vpc/{vpc_id}"] = {"tier": ""}
    untagged_vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    est.untagged_vpc_arn = f"arn:aws:ec2:{REGION}:{a}:vpc/{untagged_vpc}"
    sg = ec2.create_security_group(
        GroupName="sg1",
        Description="d",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": _kv({"team": "net"})}],
    )["GroupId"]
    est.unregistered_tagged[f"arn:aws:ec2:{REGION}:{a}:security-group/{sg}"] = {"team": "net"}
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{az}")[
            "Subnet"
        ]["SubnetId"]
        for n, az in ((1, "a"), (2, "b"))
    ]
    tagged_eip = ec2.allocate_address(
        Domain="vpc",
        TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": _kv({"Name": "eip", "team": ""})}],
    )["AllocationId"]
    plain_eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat_eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    gone_eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    for alloc, tags in (
        (tagged_eip, {"Name": "eip", "team": ""}),
        (plain_eip, {}),
        (nat_eip, {}),
        (gone_eip, {}),
    ):
        est.add("ec2:elastic-ip", f"arn:aws:ec2:{REGION}:{a}:elastic-ip/{alloc}", tags)
    nat = ec2.create_nat_gateway(
        SubnetId=subnets[0],
        AllocationId=nat_eip,
        TagSpecifications=[{"ResourceType": "natgateway", "Tags": _kv({"owner": "net"})}],
    )["NatGateway"]["NatGatewayId"]
    est.add("ec2:natgateway", f"arn:aws:ec2:{REGION}:{a}:natgateway/{nat}", {"owner": "net"})
    deleted = ec2.create_nat_gateway(SubnetId=subnets[1], AllocationId=gone_eip)["NatGateway"]["NatGatewayId"]
    ec2.delete_nat_gateway(NatGatewayId=deleted)
    est.deleted_nat = f"arn:aws:ec2:{REGION}:{a}:natgateway/{deleted}"
    # ELBv2 needs the subnets.
    elb = f.client(a, "elbv2", REGION)
    lb = elb.create_load_balancer(Name="lb1", Subnets=subnets, Tags=_kv({"app": ""}))["LoadBalancers"][0]
    est.add("elasticloadbalancing:loadbalancer", lb["LoadBalancerArn"], {"app": ""})
    for name, tags in (("tg1", {"app": "web"}), ("tg2", {})):
        kwargs: dict[str, Any] = {"Tags": _kv(tags)} if tags else {}
        tg = elb.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc_id, **kwargs)
        est.add("elasticloadbalancing:targetgroup", tg["TargetGroups"][0]["TargetGroupArn"], tags)


def _seed_services(est: Estate, f: AwsSessionFactory) -> None:
    a = est.account

    def c(service: str) -> Any:
        return f.client(a, service, REGION)

    rds = c("rds")
    for name, tags in (("db1", {"owner": "data", "env": ""}), ("db2", {})):
        db = rds.create_db_instance(
            DBInstanceIdentifier=name,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            MasterUsername="u",
            MasterUserPassword="password1",
            AllocatedStorage=20,
            Tags=_kv(tags),
        )["DBInstance"]
        est.add("rds:db", db["DBInstanceArn"], tags)
    cl = rds.create_db_cluster(
        DBClusterIdentifier="cl1",
        Engine="aurora-postgresql",
        MasterUsername="u",
        MasterUserPassword="password1",
        Tags=_kv({"tier": "gold"}),
    )["DBCluster"]
    est.add("rds:cluster", cl["DBClusterArn"], {"tier": "gold"})

    role = c("iam").create_role(RoleName="lambda-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("h.py", "def h(event, context):\n    return 1\n")
    code = buf.getvalue()
    lam = c("lambda")
    for i in range(60):  # more than ListFunctions' page of 50
        tags = {"fn": str(i), "empty": ""} if i % 3 == 0 else {}
        fn = lam.create_function(
            FunctionName=f"fn-{i:02d}",
            Runtime="python3.12",
            Role=role,
            Handler="h.h",
            Code={"ZipFile": code},
            Tags=tags,
        )
        est.add("lambda:function", fn["FunctionArn"], tags)

    ddb = c("dynamodb")
    for name, tags in (("orders", {"team": ""}), ("users", {})):
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            **({"Tags": _kv(tags)} if tags else {}),
        )
        est.add("dynamodb:table", f"arn:aws:dynamodb:{REGION}:{a}:table/{name}", tags)

    ecs = c("ecs")
    ecs.register_task_definition(
        family="td", containerDefinitions=[{"name": "n", "image": "i", "memory": 16}]
    )
    for cname, ctags in (("c1", {"team": ""}), ("c2", {})):
        arn = ecs.create_cluster(clusterName=cname, tags=_kv(ctags, "key", "value"))["cluster"]["clusterArn"]
        est.add("ecs:cluster", arn, ctags)
    for cname, sname, stags in (("c1", "s1", {"svc": "api"}), ("c1", "s2", {}), ("c2", "s3", {"svc": ""})):
        svc = ecs.create_service(
            cluster=cname,
            serviceName=sname,
            taskDefinition="td",
            desiredCount=0,
            tags=_kv(stags, "key", "value"),
        )["service"]
        est.add("ecs:service", svc["serviceArn"], stags)
    gone = ecs.create_cluster(clusterName="gone")["cluster"]["clusterArn"]
    ecs.delete_cluster(cluster="gone")  # listed by moto as INACTIVE: must be excluded
    est.inactive_cluster = gone

    eks = c("eks").create_cluster(
        name="k8s", roleArn=role, resourcesVpcConfig={}, tags={"env": "prod", "blank": ""}
    )["cluster"]
    est.add("eks:cluster", eks["arn"], {"env": "prod", "blank": ""})

    ec = c("elasticache")
    for cid, tags in (("cache1", {"a": "b"}), ("cache2", {})):
        cc = ec.create_cache_cluster(
            CacheClusterId=cid,
            Engine="redis",
            CacheNodeType="cache.t3.micro",
            NumCacheNodes=1,
            Tags=_kv(tags),
        )["CacheCluster"]
        est.add("elasticache:cluster", cc["ARN"], tags)

    efs = c("efs")
    for token, tags in (("fs1", {"Name": "shared", "dept": ""}), ("fs2", {})):
        fs = efs.create_file_system(CreationToken=token, Tags=_kv(tags))
        est.add("elasticfilesystem:file-system", fs["FileSystemArn"], tags)

    kin = c("kinesis")
    for name, tags in (("clicks", {"stream": "", "team": "ana"}), ("logs", {})):
        kin.create_stream(StreamName=name, ShardCount=1)
        if tags:
            kin.add_tags_to_stream(StreamName=name, Tags=tags)
        est.add("kinesis:stream", f"arn:aws:kinesis:{REGION}:{a}:stream/{name}", tags)

    sm = c("secretsmanager")
    for name, tags in (("db-pass", {"owner": ""}), ("api-key", {})):
        arn = sm.create_secret(Name=name, SecretString="x", **({"Tags": _kv(tags)} if tags else {}))["ARN"]
        est.add("secretsmanager:secret", arn, tags)

    kms = c("kms")
    for tags in ({"purpose": "", "team": "sec"}, {}):
        key = kms.create_key(Tags=_kv(tags, "TagKey", "TagValue"))["KeyMetadata"]
        est.add("kms:key", key["Arn"], tags)

    sqs = c("sqs")
    for name, tags in (("jobs", {"q": ""}), ("dlq", {})):
        sqs.create_queue(QueueName=name, tags=tags)
        est.add("sqs:queue", f"arn:aws:sqs:{REGION}:{a}:{name}", tags)

    sns = c("sns")
    for name, tags in (("alerts", {"sev": ""}), ("news", {})):
        arn = sns.create_topic(Name=name, Tags=_kv(tags))["TopicArn"]
        est.add("sns:topic", arn, tags)

    logs = c("logs")
    for name, tags in (("/app/web", {"retention": ""}), ("/app/batch", {})):
        logs.create_log_group(logGroupName=name, tags=tags)
        est.add("logs:log-group", f"arn:aws:logs:{REGION}:{a}:log-group:{name}", tags)

    osearch = c("opensearch")
    for name, tags in (("search1", {"team": ""}), ("search2", {})):
        dom = osearch.create_domain(DomainName=name, TagList=_kv(tags))["DomainStatus"]
        est.add("opensearch:domain", dom["ARN"], tags)

    ecr = c("ecr")
    for name, tags in (("repo-a", {"img": ""}), ("repo-b", {})):
        repo = ecr.create_repository(repositoryName=name, tags=_kv(tags))["repository"]
        est.add("ecr:repository", repo["repositoryArn"], tags)

    sfn = c("stepfunctions")
    for name, tags in (("flow-a", {"wf": ""}), ("flow-b", {})):
        arn = sfn.create_state_machine(
            name=name, definition="{}", roleArn=role, tags=_kv(tags, "key", "value")
        )["stateMachineArn"]
        est.add("states:stateMachine", arn, tags)


def _seed_global(est: Estate, f: AwsSessionFactory) -> None:
    a = est.account
    s3_east = f.client(a, "s3", REGION)
    s3_west = f.client(a, "s3", OTHER_REGION)
    buckets = (
        (f"east-{est.suffix}", REGION, {"owner": "", "env": "dev"}),
        (f"west-{est.suffix}", OTHER_REGION, {}),
        (f"west2-{est.suffix}", OTHER_REGION, {"env": "prod"}),
    )
    for name, region, tags in buckets:
        if region == REGION:
            s3_east.create_bucket(Bucket=name)
        else:
            s3_west.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        if tags:
            s3_east.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _kv(tags)})
        est.s3[f"arn:aws:s3:::{name}"] = (region, tags)

    cf = f.client(a, "cloudfront", REGION)
    config = {
        "CallerReference": est.suffix,
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "o",
                    "DomainName": "example.com",
                    "CustomOriginConfig": {
                        "HTTPPort": 80,
                        "HTTPSPort": 443,
                        "OriginProtocolPolicy": "http-only",
                    },
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "o",
            "ViewerProtocolPolicy": "allow-all",
            "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
        },
        "Comment": "",
        "Enabled": True,
    }
    dist = cf.create_distribution_with_tags(
        DistributionConfigWithTags={"DistributionConfig": config, "Tags": {"Items": _kv({"cdn": ""})}}
    )["Distribution"]
    est.global_expected.setdefault("cloudfront:distribution", {})[dist["ARN"]] = {"cdn": ""}

    r53 = f.client(a, "route53", REGION)
    for i in range(12):  # more than one ListTagsForResources batch of 10
        zone = r53.create_hosted_zone(
            Name=f"z{i}-{est.suffix}.example.com", CallerReference=f"{est.suffix}-{i}"
        )
        zid = zone["HostedZone"]["Id"].split("/")[-1]
        tags = {"zone": str(i), "blank": ""} if i % 2 == 0 else {}
        if tags:
            r53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zid, AddTags=_kv(tags))
        est.global_expected.setdefault("route53:hostedzone", {})[f"arn:aws:route53:::hostedzone/{zid}"] = tags


def _seed_member(est: Estate, f: AwsSessionFactory) -> None:
    m = est.member
    ec2 = f.client(m, "ec2", REGION)
    tagged = ec2.create_volume(
        AvailabilityZone=f"{REGION}a",
        Size=2,
        TagSpecifications=[{"ResourceType": "volume", "Tags": _kv({"o": "m"})}],
    )["VolumeId"]
    plain = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=2)["VolumeId"]
    est.member_expected["ec2:volume"] = {
        f"arn:aws:ec2:{REGION}:{m}:volume/{tagged}": {"o": "m"},
        f"arn:aws:ec2:{REGION}:{m}:volume/{plain}": {},
    }
    f.client(m, "sqs", REGION).create_queue(QueueName="member-q", tags={"acct": "member"})
    est.member_expected["sqs:queue"] = {f"arn:aws:sqs:{REGION}:{m}:member-q": {"acct": "member"}}
    f.client(m, "s3", REGION).create_bucket(Bucket=f"member-{est.suffix}")  # never tagged
    est.member_bucket_arn = f"arn:aws:s3:::member-{est.suffix}"


@pytest.fixture(scope="module")
def estate(endpoint: str) -> Estate:
    """One seeded organization: a caller account with every moto-supported type, and a member."""
    factory, account = _factory_for_new_account(endpoint)
    assert factory.caller_account() == account
    est = Estate(
        endpoint=endpoint,
        credentials=dict(factory._credentials),
        account=account,
        member=_random_account(),
        suffix=secrets.token_hex(4),
    )
    baseline = collect_shard(factory, account, REGION, ["ec2:snapshot"])
    assert baseline.complete
    est.snapshot_baseline = {r.arn for r in baseline.resources}
    _seed_ec2(est, factory)
    _seed_services(est, factory)
    _seed_global(est, factory)
    _seed_member(est, factory)
    return est


@pytest.fixture(scope="module")
def regional_scan(estate: Estate) -> Any:
    """Every regional type of the caller account, with pages of 50 to exercise pagination."""
    return collect_shard(
        estate.factory(),
        estate.account,
        REGION,
        registry.regional_types(),
        page_size=50,
        retry_policy=FAST_RETRY,
    )


# --------------------------------------------------------------------------------------- tests
def test_server_port_is_real_and_factory_targets_it(endpoint: str, estate: Estate) -> None:
    assert endpoint.startswith("http://127.0.0.1:") and not endpoint.endswith(":0")
    f = estate.factory()
    assert f.client(estate.account, "ec2", REGION).meta.endpoint_url == endpoint


def test_every_registered_type_is_seeded_here(estate: Estate) -> None:
    # moto 5.2.5 serves every registered type, so none is left to Stubber-only coverage.
    seeded = set(estate.expected) | set(estate.global_expected) | {"s3:bucket"}
    assert seeded == set(registry.all_types())
    assert all(estate.expected[t] for t in estate.expected)


def test_regional_shard_is_complete(regional_scan: Any) -> None:
    assert regional_scan.failures == []
    assert regional_scan.complete
    assert regional_scan.retries == 0
    assert regional_scan.api_calls > 0


@pytest.mark.parametrize("resource_type", [t for t in registry.regional_types() if t != "ec2:snapshot"])
def test_regional_type_exact_arns_and_tags(resource_type: str, regional_scan: Any, estate: Estate) -> None:
    got = _by_arn(regional_scan.resources, resource_type)
    assert got == estate.expected[resource_type]
    for r in regional_scan.resources:
        if r.resource_type == resource_type:
            assert r.account_id == estate.account
            assert r.region == REGION
            assert r.resource_id and r.resource_id in r.arn


def test_snapshots_exact_over_baseline(regional_scan: Any, estate: Estate) -> None:
    got = _by_arn(regional_scan.resources, "ec2:snapshot")
    mine = {arn: tags for arn, tags in got.items() if arn not in estate.snapshot_baseline}
    assert mine == estate.expected["ec2:snapshot"]
    assert set(got) == estate.snapshot_baseline | set(estate.expected["ec2:snapshot"])


def test_exclusions_drop_terminated_deleted_and_inactive(regional_scan: Any, estate: Estate) -> None:
    arns = {r.arn for r in regional_scan.resources}
    assert estate.terminated_instance not in arns
    assert estate.deleted_nat not in arns
    assert estate.inactive_cluster not in arns
    notes = " ".join(regional_scan.notes)
    assert "ec2:instance: 1 skipped" in notes
    assert "ec2:natgateway: 1 skipped" in notes
    assert "ecs:cluster: 1 skipped" in notes


def test_names_and_attributes(regional_scan: Any, estate: Estate) -> None:
    by_arn = {r.arn: r for r in regional_scan.resources}
    inst = by_arn[estate.tagged_instance_arn]
    assert inst.name == "web"  # from the Name tag
    assert inst.attributes["state"] == "running"
    queue = next(
        r for r in regional_scan.resources if r.resource_type == "sqs:queue" and r.resource_id == "jobs"
    )
    assert queue.name == "jobs"
    assert queue.attributes["url"].endswith(f"/{estate.account}/jobs")
    zone_like = [r for r in regional_scan.resources if r.resource_type == "sns:topic"]
    assert {r.name for r in zone_like} == {"alerts", "news"}


def test_volumes_all_collected(estate: Estate) -> None:
    result = collect_shard(estate.factory(), estate.account, REGION, ["ec2:volume"], page_size=50)
    assert result.complete
    # 120 created + one root volume per live instance (58).
    assert len(result.resources) == len(estate.expected["ec2:volume"]) == 120 + 58
    assert _by_arn(result.resources) == estate.expected["ec2:volume"]
    # moto ignores MaxResults on DescribeVolumes (one page): pages are proven on DescribeInstances.


def test_instances_follow_pages(estate: Estate) -> None:
    result = collect_shard(estate.factory(), estate.account, REGION, ["ec2:instance"], page_size=50)
    assert result.complete
    assert _by_arn(result.resources) == estate.expected["ec2:instance"]
    assert result.api_calls == 2  # 57 reservations in pages of 50


@pytest.mark.parametrize(
    ("region", "types"),
    [
        (
            REGION,
            ["ec2:instance", "sqs:queue", "logs:log-group", "states:stateMachine", "secretsmanager:secret"],
        ),
        (GLOBAL_REGION, ["route53:hostedzone", "cloudfront:distribution"]),
    ],
)
def test_one_item_pages_give_the_same_result(estate: Estate, region: str, types: list[str]) -> None:
    # page_size=1 is raised to each API's minimum (5 for DescribeInstances) and sent as a string
    # where the API wants one (Route 53, CloudFront MaxItems).
    result = collect_shard(estate.factory(), estate.account, region, types, page_size=1)
    assert result.complete
    expected = estate.expected if region == REGION else estate.global_expected
    for rtype in types:
        assert _by_arn(result.resources, rtype) == expected[rtype]
    list_calls = result.api_calls
    if region == GLOBAL_REGION:
        # 12 zones one per page (+1 empty last page at most) and 2 tag batches; 1 distribution.
        assert list_calls >= 12 + 2 + 1 + 1
    else:
        # 58 instances over 57 reservations in pages of 5, log groups/machines/secrets 1 each, the two
        # queues listed one per page with their tags read in bulk (one tagging API page).
        assert list_calls >= 12 + (2 + 1) + 2 * 2 + 2 * 2 + 2


BULK_TYPES = [t for t in registry.regional_types() if registry.resolve([t])[0].tags.tagging_api_filter]


def test_bulk_tags_from_the_tagging_api_equal_per_item_tags(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.providers.aws import collectors

    assert set(BULK_TYPES) == {"dynamodb:table", "kms:key", "lambda:function", "sns:topic", "sqs:queue"}
    bulk = collect_shard(estate.factory(), estate.account, REGION, BULK_TYPES)
    # Each type in a shard of its own reads the tagging API for itself.
    separate_reads = sum(collect_shard(estate.factory(), estate.account, REGION, [t]).api_by_family.get(
        "tagging", {}).get("calls", 0) for t in BULK_TYPES)
    monkeypatch.setattr(collectors, "BULK_TAGS_MIN_ITEMS", 10**9)  # per item, as before bulk reads
    per_item = collect_shard(estate.factory(), estate.account, REGION, BULK_TYPES)
    assert bulk.complete and per_item.complete
    assert {r.arn: dict(r.tags) for r in bulk.resources} == {r.arn: dict(r.tags) for r in per_item.resources}
    for rtype in BULK_TYPES:
        assert _by_arn(bulk.resources, rtype) == estate.expected[rtype]
    # One tag call per resource became one tagging-API read shared by the five types: one page per 100
    # tagged resources of any of them (at most every resource is tagged), not one read per type.
    assert bulk.api_calls <= per_item.api_calls - len(per_item.resources) + 2
    assert 1 <= bulk.api_by_family["tagging"]["calls"] <= math.ceil(len(bulk.resources) / 100) < len(BULK_TYPES)
    assert separate_reads >= len(BULK_TYPES) > bulk.api_by_family["tagging"]["calls"]


def test_lambda_all_sixty_functions_and_tag_calls(estate: Estate) -> None:
    result = collect_shard(estate.factory(), estate.account, REGION, ["lambda:function"])
    assert result.complete
    assert _by_arn(result.resources) == estate.expected["lambda:function"]
    assert len(result.resources) == 60
    # moto answers ListFunctions in one page whatever MaxItems says, so the page loop is proven
    # with a two-page Stubber test; here: one list call + one tagging-API page for the 60 functions'
    # tags (it was one ListTags per function before bulk reads).
    assert result.api_calls == 1 + 1


def test_global_shard_s3_once_with_real_regions(estate: Estate) -> None:
    result = collect_shard(
        estate.factory(), estate.account, GLOBAL_REGION, registry.global_types(), retry_policy=FAST_RETRY
    )
    assert result.failures == []
    buckets = [r for r in result.resources if r.resource_type == "s3:bucket"]
    assert len(buckets) == len({b.arn for b in buckets}) == 3
    assert {b.arn: (b.region, dict(b.tags)) for b in buckets} == estate.s3
    for rtype in ("cloudfront:distribution", "route53:hostedzone"):
        got = [r for r in result.resources if r.resource_type == rtype]
        assert _by_arn(got) == estate.global_expected[rtype]
        assert {r.region for r in got} == {GLOBAL_REGION}
    zone = next(r for r in result.resources if r.resource_type == "route53:hostedzone")
    assert zone.name and zone.name.endswith(".example.com.")
    assert not zone.resource_id.startswith("/")


def test_global_and_regional_scopes_are_enforced(estate: Estate) -> None:
    with pytest.raises(ValueError, match="global"):
        collect_shard(estate.factory(), estate.account, REGION, ["s3:bucket"])
    with pytest.raises(ValueError, match="regional"):
        collect_shard(estate.factory(), estate.account, GLOBAL_REGION, ["ec2:volume"])
    with pytest.raises(registry.UnknownResourceTypeError, match="ec2:nope"):
        collect_shard(estate.factory(), estate.account, REGION, ["ec2:nope"])


def test_member_account_through_assume_role(estate: Estate) -> None:
    f = estate.factory()
    result = collect_shard(f, estate.member, REGION, ["ec2:volume", "sqs:queue", "lambda:function"])
    assert result.complete
    for rtype, expected in estate.member_expected.items():
        assert _by_arn(result.resources, rtype) == expected
    assert not [r for r in result.resources if r.resource_type == "lambda:function"]
    assert {r.account_id for r in result.resources} == {estate.member}
    # The member's credentials are an assumed role's, cached; the caller's own account uses the base ones.
    assert f.credentials_for(estate.member) is not None
    assert f.credentials_for(estate.member) is f.credentials_for(estate.member)
    assert f.credentials_for(estate.account) is None


def test_assumed_session_refreshes_near_expiry(estate: Estate) -> None:
    f = estate.factory()
    first = f.credentials_for(estate.member)
    client = f.client(estate.member, "sqs", REGION)  # a view kept across the refresh
    signed: list[str] = []
    client.meta.events.register("before-send", lambda request, **_: signed.append(
        request.headers["Authorization"].decode().split("Credential=")[1].split("/")[0]))
    client.list_queues()
    f._assumed[estate.member] = dataclasses.replace(f._assumed[estate.member],
                                                    expires=datetime.now(UTC) + timedelta(minutes=4))
    second = f.credentials_for(estate.member)
    assert second is not None and second is not first and second.expires > first.expires  # type: ignore[union-attr]
    client.list_queues()  # the same view now signs with the refreshed credentials
    assert signed == [first.access_key, second.access_key]  # type: ignore[union-attr]
    assert first.access_key != second.access_key  # type: ignore[union-attr]


def test_other_region_is_separate(estate: Estate) -> None:
    result = collect_shard(estate.factory(), estate.account, OTHER_REGION, ["ec2:volume", "lambda:function"])
    assert result.complete and result.resources == []


# -------------------------------------------------------------------------- injected failures
class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _ec2_error(code: str, status: int) -> AWSResponse:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>injected {code}</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
    ).encode()
    return AWSResponse("https://ec2.amazonaws.com/", status, {"Content-Type": "text/xml"}, _Raw(body))


def _json_error(code: str, status: int) -> AWSResponse:
    body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
    headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
    return AWSResponse("https://lambda.amazonaws.com/", status, headers, _Raw(body))


def _inject(
    client: Any, event: str, responses: list[AWSResponse | None], calls: list[str]
) -> Callable[..., Any]:
    """Answer the next requests of ``event`` with ``responses`` (None: let the real call through)."""

    def hook(**kwargs: Any) -> AWSResponse | None:
        calls.append(event)
        return responses.pop(0) if responses else None

    client.meta.events.register(event, hook)
    return hook


def test_throttling_is_retried_then_succeeds(estate: Estate) -> None:
    f = estate.factory()
    calls: list[str] = []
    ec2 = f.client(estate.account, "ec2", REGION)
    _inject(
        ec2,
        "before-send.ec2.DescribeVolumes",
        [_ec2_error("RequestLimitExceeded", 503), _ec2_error("Throttling", 400)],
        calls,
    )
    lam = f.client(estate.account, "lambda", REGION)
    _inject(lam, "before-send.lambda.ListFunctions", [_json_error("TooManyRequestsException", 429)], calls)
    result = collect_shard(
        f, estate.account, REGION, ["ec2:volume", "lambda:function"], page_size=50, retry_policy=FAST_RETRY
    )
    assert result.failures == []
    assert result.retries == 3
    assert _by_arn(result.resources, "ec2:volume") == estate.expected["ec2:volume"]
    assert _by_arn(result.resources, "lambda:function") == estate.expected["lambda:function"]
    assert calls.count("before-send.ec2.DescribeVolumes") == 1 + 2  # 1 page (moto) + 2 throttled
    # Every attempt counts as an API call: 1 + 2 for volumes; 1 + 1 list calls and one tagging-API page
    # (the functions' tags in bulk) for Lambda.
    assert result.api_calls == 3 + 2 + 1


def test_persistent_access_denied_fails_only_that_type(estate: Estate) -> None:
    f = estate.factory()
    calls: list[str] = []
    lam = f.client(estate.account, "lambda", REGION)
    _inject(lam, "before-send.lambda.ListFunctions", [_json_error("AccessDeniedException", 403)] * 10, calls)
    ec2 = f.client(estate.account, "ec2", REGION)
    _inject(ec2, "before-send.ec2.DescribeAddresses", [_ec2_error("UnauthorizedOperation", 403)] * 10, calls)
    result = collect_shard(
        f,
        estate.account,
        REGION,
        ["lambda:function", "ec2:elastic-ip", "sqs:queue", "ec2:volume"],
        retry_policy=FAST_RETRY,
    )
    assert not result.complete
    failures = {fl.resource_type: fl for fl in result.failures}
    assert set(failures) == {"lambda:function", "ec2:elastic-ip"}
    assert failures["lambda:function"].code == "AccessDeniedException"
    assert failures["ec2:elastic-ip"].code == "UnauthorizedOperation"
    assert not any(fl.retryable for fl in result.failures)
    assert calls.count("before-send.lambda.ListFunctions") == 1  # never retried
    assert result.retries == 0
    # The other types are complete; the failed ones contribute nothing (never an empty success).
    assert _by_arn(result.resources, "sqs:queue") == estate.expected["sqs:queue"]
    assert _by_arn(result.resources, "ec2:volume") == estate.expected["ec2:volume"]
    assert not [r for r in result.resources if r.resource_type in failures]


def test_throttling_that_never_stops_becomes_retryable_failure(estate: Estate) -> None:
    f = estate.factory()
    calls: list[str] = []
    sqs = f.client(estate.account, "sqs", REGION)
    _inject(sqs, "before-send.sqs.ListQueues", [_json_error("ThrottlingException", 400)] * 10, calls)
    result = collect_shard(f, estate.account, REGION, ["sqs:queue", "sns:topic"], retry_policy=FAST_RETRY)
    [failure] = result.failures
    assert failure.resource_type == "sqs:queue"
    assert failure.code == "ThrottlingException" and failure.retryable
    assert calls.count("before-send.sqs.ListQueues") == FAST_RETRY.attempts
    assert result.retries == FAST_RETRY.attempts - 1
    assert _by_arn(result.resources, "sns:topic") == estate.expected["sns:topic"]


def test_per_item_tag_failure_leaves_resource_out_and_says_so(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.providers.aws import collectors

    monkeypatch.setattr(collectors, "BULK_TAGS_MIN_ITEMS", 10**9)  # the per-item path
    f = estate.factory()
    calls: list[str] = []
    sqs = f.client(estate.account, "sqs", REGION)
    _inject(sqs, "before-send.sqs.ListQueueTags", [_json_error("AccessDenied", 403)], calls)
    result = collect_shard(f, estate.account, REGION, ["sqs:queue"], retry_policy=FAST_RETRY, max_workers=1)
    [failure] = result.failures
    assert failure.resource_type == "sqs:queue" and failure.code == "AccessDenied"
    assert "1 resource(s)" in failure.message and "ListQueueTags" in failure.message
    assert len(result.resources) == len(estate.expected["sqs:queue"]) - 1


def test_tagging_api_denied_falls_back_to_per_item_tags(estate: Estate) -> None:
    f = estate.factory()
    calls: list[str] = []
    rgta = f.client(estate.account, "resourcegroupstaggingapi", REGION)
    _inject(rgta, "before-send.resource-groups-tagging-api.GetResources", [_json_error("AccessDeniedException", 400)],
            calls)
    result = collect_shard(f, estate.account, REGION, ["sqs:queue"], retry_policy=FAST_RETRY)
    assert calls and result.complete  # denied once, then ListQueueTags per queue
    assert _by_arn(result.resources) == estate.expected["sqs:queue"]
    assert result.api_by_family["sqs"]["calls"] > len(estate.expected["sqs:queue"])


def test_member_access_denied_on_assume_role(estate: Estate) -> None:
    f = estate.factory()
    calls: list[str] = []
    # Handlers registered on the session are copied into every client it creates, including the
    # STS client the factory builds for AssumeRole.

    def deny(**_: Any) -> AWSResponse:
        calls.append("assume")
        return _ec2_error("AccessDenied", 403)

    f.base_session().events.register("before-send.sts.AssumeRole", deny)
    result = collect_shard(f, _random_account(), REGION, ["ec2:volume", "sqs:queue"], retry_policy=FAST_RETRY)
    assert {fl.resource_type for fl in result.failures} == {"ec2:volume", "sqs:queue"}
    assert {fl.code for fl in result.failures} == {"AccessDenied"}
    assert not any(fl.retryable for fl in result.failures)
    assert result.resources == []
    assert len(calls) == 1  # asked once for the shard, not once per type


def test_rate_limiter_is_asked_before_every_call(estate: Estate) -> None:
    keys: list[str] = []

    class Recording(LocalTokenBucketLimiter):
        def acquire(self, key: str) -> None:
            keys.append(key)
            super().acquire(key)

    limiter = Recording(rate_per_s=10_000, burst=1_000)
    result = collect_shard(
        estate.factory(), estate.account, REGION, ["sqs:queue", "ec2:volume"], limiter=limiter, page_size=50
    )
    assert result.complete
    assert len(keys) == result.api_calls
    # The queues' tags come from the tagging API (its own family and budget).
    assert set(keys) == {f"{estate.account}:{REGION}:sqs", f"{estate.account}:{REGION}:ec2",
                         f"{estate.account}:{REGION}:tagging"}


# ------------------------------------------------------------------ tagging API, lookup by ARN
def test_tagging_api_lists_only_unregistered_tagged_types(estate: Estate) -> None:
    result = collect_tagging_api(estate.factory(), estate.account, REGION)
    assert result.complete
    assert TAGGING_API_NOTE in result.notes
    got = _by_arn(result.resources)
    assert got == estate.unregistered_tagged
    assert {r.resource_type for r in result.resources} == {"ec2:vpc", "ec2:security-group"}
    assert estate.untagged_vpc_arn not in got  # never-tagged: invisible to this API
    assert result.api_calls >= 1


def test_fetch_by_arn(estate: Estate) -> None:
    f = estate.factory()
    member_volume = next(iter(estate.member_expected["ec2:volume"]))
    west_bucket = next(a for a, (region, _) in estate.s3.items() if region == OTHER_REGION)
    missing = f"arn:aws:ec2:{REGION}:{estate.account}:instance/i-0123456789abcdef0"
    queue = f"arn:aws:sqs:{REGION}:{estate.account}:dlq"  # never tagged
    arns = [
        estate.tagged_instance_arn,
        estate.untagged_volume_arn,
        member_volume,
        west_bucket,
        queue,
        missing,
        estate.untagged_vpc_arn,
        "not-an-arn",
    ]
    resources, failures = fetch_resources_by_arn(f, arns)
    found = {r.arn: r for r in resources}
    assert set(found) == {
        estate.tagged_instance_arn,
        estate.untagged_volume_arn,
        member_volume,
        west_bucket,
        queue,
    }
    assert dict(found[estate.tagged_instance_arn].tags) == {"Name": "web", "CostCenter": ""}
    assert found[estate.tagged_instance_arn].resource_type == "ec2:instance"
    assert dict(found[estate.untagged_volume_arn].tags) == {}
    assert found[member_volume].account_id == estate.member
    assert dict(found[member_volume].tags) == estate.member_expected["ec2:volume"][member_volume]
    assert found[west_bucket].region == OTHER_REGION
    assert dict(found[queue].tags) == {}
    by_code: dict[str, list[str]] = {}
    for fl in failures:
        by_code.setdefault(fl.code, []).append(fl.message)
    assert set(by_code) == {"NotFound", "InvalidArn"}
    assert any(missing in m for m in by_code["NotFound"])
    assert any(estate.untagged_vpc_arn in m and "no collector" in m for m in by_code["NotFound"])
    assert len(by_code["NotFound"]) == 2


def test_fetch_accountless_arns_searches_given_accounts(estate: Estate) -> None:
    f = estate.factory()
    # S3 ARNs carry no account: the caller's account alone does not hold the member's bucket.
    resources, failures = fetch_resources_by_arn(f, [estate.member_bucket_arn], accounts=[])
    assert resources == []
    [failure] = failures
    assert failure.code == "NotFound" and "1 account(s) searched" in failure.message
    resources, failures = fetch_resources_by_arn(f, [estate.member_bucket_arn], accounts=[estate.member])
    assert failures == []
    [bucket] = resources
    assert (bucket.account_id, bucket.region, dict(bucket.tags)) == (estate.member, REGION, {})


def test_fetch_accountless_arns_searches_the_organization(endpoint: str) -> None:
    # A fresh management account with one member account created through Organizations.
    factory, management = _factory_for_new_account(endpoint)
    org = factory.client(management, "organizations", REGION)
    org.create_organization(FeatureSet="ALL")
    status = org.create_account(AccountName="m", Email="m@example.com")["CreateAccountStatus"]
    member = status["AccountId"]
    name = f"org-{secrets.token_hex(4)}"
    s3 = factory.client(member, "s3", OTHER_REGION)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": OTHER_REGION})
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _kv({"team": ""})})
    resources, failures = fetch_resources_by_arn(factory, [f"arn:aws:s3:::{name}"])
    assert failures == []
    [bucket] = resources
    assert (bucket.account_id, bucket.region, dict(bucket.tags)) == (member, OTHER_REGION, {"team": ""})


def test_discover_regions(estate: Estate) -> None:
    f = estate.factory()
    enabled = discover_regions(f, estate.account, None)
    assert REGION in enabled and OTHER_REGION in enabled
    assert "ap-east-1" not in enabled  # moto: not opted in
    assert discover_regions(f, estate.account, [REGION, OTHER_REGION]) == [OTHER_REGION, REGION]  # sorted
    assert discover_regions(f, estate.account, ["ap-east-1"]) == []
    with pytest.raises(UnknownRegionError) as err:
        discover_regions(f, estate.account, [REGION, "mars-north-1"])
    assert isinstance(err.value, ValueError)
    assert "mars-north-1" in str(err.value) and "us-east-1" in str(err.value)


class _TimeLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded (registered as an interrupt like it)."""


@pytest.mark.parametrize("type_workers", [1, 4])
def test_a_time_limit_keeps_the_types_finished_and_names_the_rest(estate: Estate, type_workers: int) -> None:
    register_interrupt(_TimeLimit)
    factory = estate.factory()

    def time_is_up(**_kw: Any) -> None:
        raise _TimeLimit("soft time limit exceeded")

    factory.client(estate.account, "dynamodb", REGION).meta.events.register("before-send.dynamodb.*", time_is_up)
    result = collect_shard(factory, estate.account, REGION, ["sqs:queue", "dynamodb:table", "sns:topic"],
                           type_workers=type_workers)
    failed = {f.resource_type: f for f in result.failures}
    assert failed["dynamodb:table"].code == "TimeLimit" and not failed["dynamodb:table"].retryable
    assert "time limit" in failed["dynamodb:table"].message
    # Finished before the limit: kept, exactly. One after another, SNS never started; side by side it may have.
    assert _by_arn(result.resources, "sqs:queue") == estate.expected["sqs:queue"]
    if type_workers == 1:
        assert set(failed) == {"dynamodb:table", "sns:topic"} and failed["sns:topic"].code == "TimeLimit"
    elif "sns:topic" not in failed:
        assert _by_arn(result.resources, "sns:topic") == estate.expected["sns:topic"]
    assert {r.resource_type for r in result.resources} <= {"sqs:queue", "sns:topic"}
