"""The shipped IAM, deployed and enforced: the StackSet template is created by moto's CloudFormation, the
scanner assumes its role with the External ID, and the collectors run with nothing but the role's
read-only policy while moto enforces IAM on every call.

moto evaluates a request as ``<signing name>:<botocore operation>``. That equals the IAM action for the
query and JSON protocol services, so those types are proven here call by call. It does not for the
REST services (S3 asks ``s3:ListBuckets`` where IAM says ``s3:ListAllMyBuckets``; Lambda, EKS, EFS,
OpenSearch, CloudFront and Route 53 fail moto's own signature check under enforcement) nor for the
tagging API (moto says ``tagging:``, IAM says ``tag:``): for those, tests/unit/test_deploy_iam.py
checks the policy against the registry and botocore's models instead.

The moto server runs in its own process (enforcement is process-wide) on 127.0.0.1, stopped by PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from scanner.providers.aws import iam_policy
from scanner.providers.aws.collect import collect_shard
from scanner.providers.aws.organization import list_organization_accounts, list_tag_policies
from scanner.providers.aws.regions import discover_regions
from scanner.providers.aws.session import AwsSessionFactory
from tests.conftest import free_port, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
EXTERNAL_ID = "finops-test-external-id-7f3a"
# Types whose every call moto authorizes under the real IAM action name (see the module docstring).
ENFORCED_TYPES = [
    "dynamodb:table", "ec2:elastic-ip", "ec2:instance", "ec2:natgateway", "ec2:snapshot", "ec2:volume",
    "ecr:repository", "ecs:cluster", "ecs:service", "elasticache:cluster", "elasticloadbalancing:loadbalancer",
    "elasticloadbalancing:targetgroup", "kinesis:stream", "kms:key", "logs:log-group", "rds:cluster", "rds:db",
    "secretsmanager:secret", "sns:topic", "sqs:queue", "states:stateMachine",
]
# Dropped from a copy of the read-only policy to show the enforcement catches a missing action.
TRIMMED_ACTIONS = {"kms:ListResourceTags": "kms:key", "ecs:DescribeServices": "ecs:service"}
TAGS = [{"Key": "CostCenter", "Value": "cc-100"}]


@pytest.fixture()
def enforcing_moto() -> Iterator[str]:
    """A moto server in its own process; IAM enforcement is switched on by the test after seeding."""
    port = free_port()
    env = {**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _enforce_iam(url: str) -> None:
    """Switch moto's IAM enforcement on for every following request (none of them is let through)."""
    # A plain-text body: under urllib's default form content type the server reads an empty body.
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["status"] == "ok"


def _client(url: str, service: str, keys: dict[str, str]) -> Any:
    config = Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})
    return boto3.client(service, endpoint_url=url, region_name=REGION, config=config, **keys)


ROOT_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _seed(url: str) -> None:
    """One tagged resource of every enforced type (so per-item tag and describe calls are made too)."""
    def c(service: str) -> Any:
        return _client(url, service, ROOT_KEYS)

    ec2 = c("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
    spec = [{"ResourceType": "instance", "Tags": TAGS}]
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro", TagSpecifications=spec)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1,
                               TagSpecifications=[{"ResourceType": "volume", "Tags": TAGS}])
    ec2.create_snapshot(VolumeId=volume["VolumeId"], TagSpecifications=[{"ResourceType": "snapshot", "Tags": TAGS}])
    eip = ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": TAGS}])
    ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=eip["AllocationId"],
                           TagSpecifications=[{"ResourceType": "natgateway", "Tags": TAGS}])
    c("sqs").create_queue(QueueName="orders", tags={"CostCenter": "cc-100"})
    c("sns").create_topic(Name="alerts", Tags=TAGS)
    c("kms").create_key(Tags=[{"TagKey": "CostCenter", "TagValue": "cc-100"}])
    c("dynamodb").create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                               BillingMode="PAY_PER_REQUEST", Tags=TAGS)
    c("logs").create_log_group(logGroupName="/app/orders", tags={"CostCenter": "cc-100"})
    c("secretsmanager").create_secret(Name="db-password", SecretString="x", Tags=TAGS)
    c("ecr").create_repository(repositoryName="orders", tags=TAGS)
    c("kinesis").create_stream(StreamName="clicks", ShardCount=1)
    c("kinesis").add_tags_to_stream(StreamName="clicks", Tags={"CostCenter": "cc-100"})
    elb = c("elbv2")
    elb.create_load_balancer(Name="web", Subnets=subnets, Tags=TAGS)
    elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc, Tags=TAGS)
    rds = c("rds")
    rds.create_db_instance(DBInstanceIdentifier="orders", DBInstanceClass="db.t3.micro", Engine="postgres",
                           AllocatedStorage=20, MasterUsername="app", MasterUserPassword="password123", Tags=TAGS)
    rds.create_db_cluster(DBClusterIdentifier="reports", Engine="aurora-postgresql", MasterUsername="app",
                          MasterUserPassword="password123", Tags=TAGS)
    c("elasticache").create_cache_cluster(CacheClusterId="sessions", Engine="redis", CacheNodeType="cache.t3.micro",
                                          NumCacheNodes=1, Tags=TAGS)
    ecs = c("ecs")
    ecs.create_cluster(clusterName="apps", tags=[{"key": "CostCenter", "value": "cc-100"}])
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 64}])
    ecs.create_service(cluster="apps", serviceName="web", taskDefinition="web", desiredCount=0,
                       tags=[{"key": "CostCenter", "value": "cc-100"}])
    c("stepfunctions").create_state_machine(
        name="billing", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        tags=[{"key": "CostCenter", "value": "cc-100"}])
    c("organizations").create_organization(FeatureSet="ALL")


def _user_with_policy(iam: Any, name: str, document: dict[str, Any]) -> tuple[str, dict[str, str]]:
    arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
    user_arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return user_arn, {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def _attached_documents(iam: Any, role_name: str) -> list[dict[str, Any]]:
    """The documents of the managed policies attached to ``role_name`` (it has no inline ones)."""
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == []
    documents = []
    for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]
        documents.append(json.loads(document["Document"]) if isinstance(document["Document"], str)
                         else document["Document"])
    return documents


def _collect(url: str, keys: dict[str, str]) -> tuple[Any, str]:
    factory = AwsSessionFactory(endpoint_url=url, default_region=REGION, credentials=keys)
    account = factory.caller_account()
    return collect_shard(factory, account, REGION, ENFORCED_TYPES, max_workers=2), account


def test_stackset_template_deploys_and_its_role_scans_under_iam_enforcement(enforcing_moto: str) -> None:
    url = enforcing_moto
    _seed(url)
    iam = _client(url, "iam", ROOT_KEYS)
    read_only = json.loads((ROOT / iam_policy.READ_ONLY_FILE).read_text(encoding="utf-8"))
    management = json.loads((ROOT / iam_policy.MANAGEMENT_FILE).read_text(encoding="utf-8"))
    scanner_arn, scanner_keys = _user_with_policy(iam, "finops-scanner", management)
    trimmed = json.loads(json.dumps(read_only))
    for statement in trimmed["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in TRIMMED_ACTIONS]
    _, trimmed_keys = _user_with_policy(iam, "trimmed-scanner", trimmed)

    # The template as committed, deployed by CloudFormation with the writer role switched on.
    cfn = _client(url, "cloudformation", ROOT_KEYS)
    cfn.create_stack(StackName="finops-scanner-role", Capabilities=["CAPABILITY_NAMED_IAM"],
                     TemplateBody=(ROOT / iam_policy.TEMPLATE_FILE).read_text(encoding="utf-8"),
                     Parameters=[{"ParameterKey": "ScannerPrincipalArn", "ParameterValue": scanner_arn},
                                 {"ParameterKey": "ExternalId", "ParameterValue": EXTERNAL_ID},
                                 {"ParameterKey": "EnableTaggingWriter", "ParameterValue": "true"}])
    stack = cfn.describe_stacks(StackName="finops-scanner-role")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    role_arn = outputs["ScannerRoleArn"]
    assert role_arn.endswith(":role/FinOpsTagComplianceScanner")
    assert outputs["TaggingWriterRoleArn"].endswith(":role/FinOpsTagComplianceTagger")
    role = iam.get_role(RoleName="FinOpsTagComplianceScanner")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"AWS": scanner_arn}
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
    assert _attached_documents(iam, "FinOpsTagComplianceScanner") == [read_only]
    writer = json.loads((ROOT / iam_policy.WRITER_FILE).read_text(encoding="utf-8"))
    tagger = _attached_documents(iam, "FinOpsTagComplianceTagger")
    assert sorted(tagger, key=json.dumps) == sorted([read_only, writer], key=json.dumps)

    # From here on every request must be allowed by IAM.
    _enforce_iam(url)
    with pytest.raises(ClientError) as denied:
        _client(url, "sqs", ROOT_KEYS).list_queues()
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    sts = _client(url, "sts", scanner_keys)
    # (moto lets a call without any ExternalId through, which AWS refuses: only a wrong one is checked.)
    with pytest.raises(ClientError) as refused:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="finops-tag-compliance", ExternalId="not-the-secret")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="finops-tag-compliance", ExternalId=EXTERNAL_ID,
                            DurationSeconds=3600)["Credentials"]
    role_keys = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                 "aws_session_token": creds["SessionToken"]}

    # The role's read-only policy is enough for every enforced type...
    result, account = _collect(url, role_keys)
    assert result.failures == []
    assert {r.resource_type for r in result.resources} == set(ENFORCED_TYPES)
    role_factory = AwsSessionFactory(endpoint_url=url, default_region=REGION, credentials=role_keys)
    assert REGION in discover_regions(role_factory, account)

    # ...the management principal alone cannot read a single one...
    alone, _ = _collect(url, scanner_keys)
    assert {f.resource_type for f in alone.failures} == set(ENFORCED_TYPES)
    assert all(f.code in {"AccessDenied", "AccessDeniedException", "403", "HTTP403"} for f in alone.failures), [
        (f.resource_type, f.code) for f in alone.failures]

    # ...and a policy missing one action fails exactly the type that needs it.
    partial, _ = _collect(url, trimmed_keys)
    assert {f.resource_type for f in partial.failures} == set(TRIMMED_ACTIONS.values()), partial.failures
    assert {r.resource_type for r in partial.resources} >= set(ENFORCED_TYPES) - set(TRIMMED_ACTIONS.values())

    # The management policy covers the organization reads the scanner makes from that account.
    org = _client(url, "organizations", scanner_keys)
    org.describe_organization()
    active, _skipped = list_organization_accounts(org)
    assert account in {a.id for a in active}
    assert list_tag_policies(org) == []
