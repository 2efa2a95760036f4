"""Generic collectors against botocore Stubber: the API behaviours moto does not reproduce.

moto answers ListFunctions in one page whatever MaxItems says, never creates AWS-managed KMS keys,
never returns S3's legacy "EU" location, ignores Kinesis tag paging and the batch limits of ECS
DescribeServices and OpenSearch DescribeDomains. These tests drive the same collectors
(``collect_shard``) with stubbed clients and check every request's parameters.
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from policies.models import GLOBAL_REGION
from scanner.providers.aws.collect import collect_shard
from scanner.retry import RetryPolicy


@pytest.fixture()
def per_item_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """These call sequences pin the per-item tag calls; bulk reads through the tagging API are proven
    against moto (tests/integration/test_collectors_moto.py)."""
    from scanner.providers.aws import collectors

    monkeypatch.setattr(collectors, "BULK_TAGS_MIN_ITEMS", 10**9)

ACCOUNT = "111122223333"
REGION = "us-east-1"
FAST = RetryPolicy(attempts=3, base_wait=0.0, max_wait=0.0, max_total=None)


class StubFactory:
    """A ClientFactory handing out one stubbed client per (service, region)."""

    default_region = REGION

    def __init__(self) -> None:
        self._session = botocore.session.get_session()
        self.clients: dict[tuple[str, str], Any] = {}
        self.stubbers: dict[tuple[str, str], Stubber] = {}

    def caller_account(self) -> str:
        return ACCOUNT

    def client(self, account_id: str, service: str, region: str) -> Any:
        self.stub(service, region)
        return self.clients[(service, region)]

    def stub(self, service: str, region: str = REGION) -> Stubber:
        key = (service, region)
        if key not in self.stubbers:
            client = self._session.create_client(
                service, region_name=region, aws_access_key_id="x", aws_secret_access_key="x"
            )
            stubber = Stubber(client)
            stubber.activate()
            self.clients[key], self.stubbers[key] = client, stubber
        return self.stubbers[key]

    def assert_done(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def collect(f: StubFactory, types: list[str], region: str = REGION, **kw: Any) -> Any:
    # One worker keeps per-item calls in the order the stubs were queued.
    return collect_shard(f, ACCOUNT, region, types, max_workers=1, retry_policy=FAST, **kw)


def fn_arn(i: int) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f{i}"


def test_lambda_follows_next_marker_past_fifty(per_item_tags: None) -> None:
    f = StubFactory()
    lam = f.stub("lambda")
    page1 = [{"FunctionName": f"f{i}", "FunctionArn": fn_arn(i)} for i in range(50)]
    page2 = [{"FunctionName": f"f{i}", "FunctionArn": fn_arn(i)} for i in range(50, 60)]
    lam.add_response("list_functions", {"Functions": page1, "NextMarker": "m1"}, {"MaxItems": 50})
    lam.add_response("list_functions", {"Functions": page2}, {"MaxItems": 50, "Marker": "m1"})
    for i in range(60):
        lam.add_response("list_tags", {"Tags": {"n": str(i)} if i % 2 else {}}, {"Resource": fn_arn(i)})
    result = collect(f, ["lambda:function"])
    f.assert_done()
    assert result.complete
    assert len(result.resources) == 60
    assert {r.arn: dict(r.tags) for r in result.resources} == {
        fn_arn(i): ({"n": str(i)} if i % 2 else {}) for i in range(60)
    }
    assert result.api_calls == 62


def test_lambda_function_deleted_between_list_and_tags_is_dropped_quietly(per_item_tags: None) -> None:
    f = StubFactory()
    lam = f.stub("lambda")
    lam.add_response(
        "list_functions",
        {
            "Functions": [
                {"FunctionName": "f0", "FunctionArn": fn_arn(0)},
                {"FunctionName": "f1", "FunctionArn": fn_arn(1)},
            ]
        },
    )
    lam.add_client_error("list_tags", "ResourceNotFoundException", "gone", 404)
    lam.add_response("list_tags", {"Tags": {"a": ""}})
    result = collect(f, ["lambda:function"])
    assert result.complete
    assert [(r.arn, dict(r.tags)) for r in result.resources] == [(fn_arn(1), {"a": ""})]


def key(i: int) -> dict[str, str]:
    return {"KeyId": f"k{i}", "KeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k{i}"}


def key_meta(i: int, manager: str) -> dict[str, Any]:
    return {
        "KeyMetadata": {
            "KeyId": f"k{i}",
            "Arn": key(i)["KeyArn"],
            "KeyManager": manager,
            "KeyState": "Enabled",
            "Description": f"key {i}",
        }
    }


def test_kms_skips_aws_managed_keys_and_pages_tags(per_item_tags: None) -> None:
    f = StubFactory()
    kms = f.stub("kms")
    kms.add_response(
        "list_keys", {"Keys": [key(0), key(1)], "Truncated": True, "NextMarker": "n1"}, {"Limit": 1000}
    )
    kms.add_response("list_keys", {"Keys": [key(2)], "Truncated": False}, {"Limit": 1000, "Marker": "n1"})
    kms.add_response("describe_key", key_meta(0, "AWS"), {"KeyId": "k0"})
    kms.add_response("describe_key", key_meta(1, "CUSTOMER"), {"KeyId": "k1"})
    kms.add_response("describe_key", key_meta(2, "CUSTOMER"), {"KeyId": "k2"})
    # No ListResourceTags for the AWS-managed key k0.
    kms.add_response(
        "list_resource_tags",
        {"Tags": [{"TagKey": "a", "TagValue": "1"}], "Truncated": True, "NextMarker": "t1"},
        {"KeyId": "k1"},
    )
    kms.add_response(
        "list_resource_tags",
        {"Tags": [{"TagKey": "b", "TagValue": ""}], "Truncated": False},
        {"KeyId": "k1", "Marker": "t1"},
    )
    kms.add_response("list_resource_tags", {"Tags": [], "Truncated": False}, {"KeyId": "k2"})
    result = collect(f, ["kms:key"])
    f.assert_done()
    assert result.complete
    assert {r.resource_id: dict(r.tags) for r in result.resources} == {"k1": {"a": "1", "b": ""}, "k2": {}}
    assert next(r for r in result.resources if r.resource_id == "k1").name == "key 1"
    assert "kms:key: 1 skipped by exclusion rules" in result.notes


def test_kinesis_tags_page_on_has_more_tags() -> None:
    f = StubFactory()
    kin = f.stub("kinesis")
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/s1"
    summary = {
        "StreamName": "s1",
        "StreamARN": arn,
        "StreamStatus": "ACTIVE",
        "StreamCreationTimestamp": "2024-01-01T00:00:00Z",
    }
    kin.add_response(
        "list_streams", {"StreamNames": ["s1"], "HasMoreStreams": False, "StreamSummaries": [summary]}
    )
    kin.add_response(
        "list_tags_for_stream",
        {"Tags": [{"Key": "a", "Value": "1"}, {"Key": "b"}], "HasMoreTags": True},
        {"StreamName": "s1", "Limit": 50},
    )
    kin.add_response(
        "list_tags_for_stream",
        {"Tags": [{"Key": "c", "Value": "3"}], "HasMoreTags": False},
        {"StreamName": "s1", "Limit": 50, "ExclusiveStartTagKey": "b"},
    )
    result = collect(f, ["kinesis:stream"])
    f.assert_done()
    assert [dict(r.tags) for r in result.resources] == [{"a": "1", "b": "", "c": "3"}]


def test_s3_regions_from_location_and_tags_read_in_the_bucket_region(per_item_tags: None) -> None:
    f = StubFactory()
    s3 = f.stub("s3")
    s3.add_response(
        "list_buckets",
        {"Buckets": [{"Name": "old-eu"}, {"Name": "east"}, {"Name": "mumbai"}, {"Name": "locked"}]},
    )
    s3.add_response("get_bucket_location", {"LocationConstraint": "EU"}, {"Bucket": "old-eu"})
    s3.add_response("get_bucket_location", {}, {"Bucket": "east"})
    s3.add_response("get_bucket_location", {"LocationConstraint": "ap-south-1"}, {"Bucket": "mumbai"})
    s3.add_response("get_bucket_location", {"LocationConstraint": "us-west-2"}, {"Bucket": "locked"})
    f.stub("s3", "eu-west-1").add_response(
        "get_bucket_tagging", {"TagSet": [{"Key": "k", "Value": ""}]}, {"Bucket": "old-eu"}
    )
    s3.add_client_error("get_bucket_tagging", "NoSuchTagSet", "none", 404, expected_params={"Bucket": "east"})
    f.stub("s3", "ap-south-1").add_response(
        "get_bucket_tagging", {"TagSet": [{"Key": "team", "Value": "x"}]}, {"Bucket": "mumbai"}
    )
    f.stub("s3", "us-west-2").add_client_error("get_bucket_tagging", "AccessDenied", "no", 403)
    result = collect(f, ["s3:bucket"], region=GLOBAL_REGION)
    f.assert_done()
    got = {r.resource_id: (r.region, dict(r.tags)) for r in result.resources}
    assert got == {
        "old-eu": ("eu-west-1", {"k": ""}),
        "east": ("us-east-1", {}),
        "mumbai": ("ap-south-1", {"team": "x"}),
    }
    # The bucket whose tags could not be read is left out, and said so: partial, not silent.
    [failure] = result.failures
    assert failure.resource_type == "s3:bucket" and failure.code == "AccessDenied" and not failure.retryable
    assert "arn:aws:s3:::locked" in failure.message


def test_ecs_services_describe_in_batches_of_ten_and_skip_inactive() -> None:
    f = StubFactory()
    ecs = f.stub("ecs")
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c1"
    services = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/c1/s{i}" for i in range(12)]
    ecs.add_response("list_clusters", {"clusterArns": [cluster]}, {"maxResults": 100})
    ecs.add_response(
        "list_services",
        {"serviceArns": services[:7], "nextToken": "p2"},
        {"cluster": cluster, "maxResults": 100},
    )
    ecs.add_response(
        "list_services",
        {"serviceArns": services[7:]},
        {"cluster": cluster, "maxResults": 100, "nextToken": "p2"},
    )

    def described(arns: list[str]) -> dict[str, Any]:
        return {
            "services": [
                {
                    "serviceArn": a,
                    "serviceName": a.rsplit("/", 1)[-1],
                    "status": "INACTIVE" if a.endswith("s3") else "ACTIVE",
                    "tags": [{"key": "n", "value": a[-1]}],
                }
                for a in arns
            ]
        }

    ecs.add_response(
        "describe_services",
        described(services[:10]),
        {"cluster": cluster, "services": services[:10], "include": ["TAGS"]},
    )
    ecs.add_response(
        "describe_services",
        described(services[10:]),
        {"cluster": cluster, "services": services[10:], "include": ["TAGS"]},
    )
    result = collect(f, ["ecs:service"])
    f.assert_done()
    assert result.complete
    assert sorted(r.arn for r in result.resources) == sorted(a for a in services if not a.endswith("s3"))
    assert all(r.resource_id.startswith("c1/") for r in result.resources)


def test_opensearch_batches_of_five_skip_deleted_domains() -> None:
    f = StubFactory()
    es = f.stub("opensearch")
    names = [f"dom{i}" for i in range(7)]
    es.add_response("list_domain_names", {"DomainNames": [{"DomainName": n} for n in names]})

    def status(n: str) -> dict[str, Any]:
        return {
            "DomainId": f"{ACCOUNT}/{n}",
            "DomainName": n,
            "ARN": f"arn:aws:es:{REGION}:{ACCOUNT}:domain/{n}",
            "ClusterConfig": {},
            "Deleted": n == "dom6",
        }

    es.add_response(
        "describe_domains", {"DomainStatusList": [status(n) for n in names[:5]]}, {"DomainNames": names[:5]}
    )
    es.add_response(
        "describe_domains", {"DomainStatusList": [status(n) for n in names[5:]]}, {"DomainNames": names[5:]}
    )
    for n in names[:6]:
        es.add_response(
            "list_tags",
            {"TagList": [{"Key": "d", "Value": n}]},
            {"ARN": f"arn:aws:es:{REGION}:{ACCOUNT}:domain/{n}"},
        )
    result = collect(f, ["opensearch:domain"])
    f.assert_done()
    assert sorted(r.name for r in result.resources) == names[:6]
    assert {r.resource_type for r in result.resources} == {"opensearch:domain"}


def test_dynamodb_tag_pages() -> None:
    f = StubFactory()
    ddb = f.stub("dynamodb")
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tbl"
    ddb.add_response("list_tables", {"TableNames": ["tbl"], "LastEvaluatedTableName": "tbl"}, {"Limit": 100})
    ddb.add_response("list_tables", {"TableNames": []}, {"Limit": 100, "ExclusiveStartTableName": "tbl"})
    ddb.add_response(
        "list_tags_of_resource",
        {"Tags": [{"Key": "a", "Value": "1"}], "NextToken": "x"},
        {"ResourceArn": arn},
    )
    ddb.add_response(
        "list_tags_of_resource", {"Tags": [{"Key": "b", "Value": ""}]}, {"ResourceArn": arn, "NextToken": "x"}
    )
    result = collect(f, ["dynamodb:table"])
    f.assert_done()
    assert [(r.arn, dict(r.tags)) for r in result.resources] == [(arn, {"a": "1", "b": ""})]


def test_repeated_token_fails_the_type_instead_of_looping() -> None:
    f = StubFactory()
    sqs = f.stub("sqs")
    sqs.add_response(
        "list_queues", {"QueueUrls": ["https://q/1/a"], "NextToken": "same"}, {"MaxResults": 1000}
    )
    sqs.add_response(
        "list_queues",
        {"QueueUrls": ["https://q/1/b"], "NextToken": "same"},
        {"MaxResults": 1000, "NextToken": "same"},
    )
    result = collect(f, ["sqs:queue"])
    [failure] = result.failures
    assert failure.code == "PaginationLoopError" and not failure.retryable
    assert result.resources == []


def test_page_size_override_is_coerced_and_clamped() -> None:
    f = StubFactory()
    r53 = f.stub("route53")
    # MaxItems is a string in Route 53's model; 1 stays 1, sent as "1".
    r53.add_response(
        "list_hosted_zones",
        {"HostedZones": [], "IsTruncated": False, "MaxItems": "1", "Marker": ""},
        {"MaxItems": "1"},
    )
    ec2 = f.stub("ec2")
    # DescribeInstances accepts 5..1000 (not in botocore's model; the ListSpec says so): 1 becomes 5.
    ec2.add_response("describe_instances", {"Reservations": []}, {"MaxResults": 5})
    assert collect(f, ["route53:hostedzone"], region=GLOBAL_REGION, page_size=1).complete
    assert collect(f, ["ec2:instance"], page_size=1).complete
    f.assert_done()


def test_unexpected_errors_become_failures_and_others_continue() -> None:
    f = StubFactory()
    f.stub("sns").add_response("list_topics", {"Topics": [{"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t"}]})
    f.stub("sns").add_response("list_tags_for_resource", {"Tags": []}, {"ResourceArn": ANY})
    f.stub("sqs").add_client_error("list_queues", "InternalError", "boom", 500)
    f.stub("sqs").add_client_error("list_queues", "InternalError", "boom", 500)
    f.stub("sqs").add_client_error("list_queues", "InternalError", "boom", 500)
    result = collect(f, ["sqs:queue", "sns:topic"])
    assert [(fl.resource_type, fl.code, fl.retryable) for fl in result.failures] == [
        ("sqs:queue", "InternalError", True)
    ]
    assert result.retries == 2
    assert [r.name for r in result.resources] == ["t"]


@pytest.mark.parametrize("types", [["ec2:volume", "s3:bucket"]])
def test_mixed_scopes_are_rejected_before_any_call(types: list[str]) -> None:
    with pytest.raises(ValueError):
        collect(StubFactory(), types)
