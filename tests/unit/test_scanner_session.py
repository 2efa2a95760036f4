"""AwsSessionFactory without a server: AssumeRole parameters, caching, refresh, client config."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from scanner.providers.aws.session import AwsSessionFactory

CALLER = "111122223333"
MEMBER = "444455556666"
CREDS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"}
IDENTITY = {"Account": CALLER, "Arn": f"arn:aws:iam::{CALLER}:user/scanner", "UserId": "AIDAEXAMPLE"}


def _assumed(expires_in: timedelta) -> dict[str, Any]:
    return {
        "Credentials": {
            "AccessKeyId": "ASIAEXAMPLE00000",
            "SecretAccessKey": "s" * 20,
            "SessionToken": "t" * 20,
            "Expiration": datetime.now(UTC) + expires_in,
        }
    }


class StubbedSts:
    """Routes the factory's STS clients to one stubbed client."""

    def __init__(self, factory: AwsSessionFactory) -> None:
        self.client = boto3.Session(**CREDS).client("sts", region_name="us-east-1")
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        real = factory._new_client

        def new_client(service: str, region: str, creds: Any = None) -> Any:
            return self.client if service == "sts" else real(service, region, creds)

        factory._new_client = new_client  # type: ignore[method-assign]


def test_construction_does_no_io() -> None:
    # An unroutable endpoint: any call at construction would fail or hang.
    factory = AwsSessionFactory(endpoint_url="http://192.0.2.1:9", credentials=CREDS)
    assert factory._base is None and factory._clients == {} and factory._caller_account is None


def test_caller_account_is_asked_once() -> None:
    factory = AwsSessionFactory(credentials=CREDS)
    sts = StubbedSts(factory)
    sts.stubber.add_response("get_caller_identity", IDENTITY)
    assert factory.caller_account() == CALLER
    assert factory.caller_account() == CALLER
    sts.stubber.assert_no_pending_responses()


def test_assume_role_parameters_and_cache() -> None:
    factory = AwsSessionFactory(credentials=CREDS, role_name="ScannerRole", external_id="ext-123")
    sts = StubbedSts(factory)
    sts.stubber.add_response("get_caller_identity", IDENTITY)
    sts.stubber.add_response(
        "assume_role",
        _assumed(timedelta(hours=1)),
        {
            "RoleArn": f"arn:aws:iam::{MEMBER}:role/ScannerRole",
            "RoleSessionName": "finops-tag-compliance",
            "DurationSeconds": 3600,
            "ExternalId": "ext-123",
        },
    )
    creds = factory.credentials_for(MEMBER)
    assert factory.credentials_for(MEMBER) is creds  # cached, no second AssumeRole
    assert creds is not None and creds.access_key == "ASIAEXAMPLE00000"
    assert factory.credentials_for(CALLER) is None  # the caller's own account: the base credentials
    # A member's client signs with the member's credentials, not the base ones.
    member_client = factory.client(MEMBER, "sqs", "us-east-1")
    assert member_client._request_signer._credentials.access_key == "ASIAEXAMPLE00000"
    sts.stubber.assert_no_pending_responses()


def test_refreshes_when_less_than_five_minutes_remain() -> None:
    factory = AwsSessionFactory(credentials=CREDS)
    sts = StubbedSts(factory)
    sts.stubber.add_response("get_caller_identity", IDENTITY)
    sts.stubber.add_response("assume_role", _assumed(timedelta(minutes=4)))
    sts.stubber.add_response("assume_role", _assumed(timedelta(hours=1)))
    first = factory.credentials_for(MEMBER)
    second = factory.credentials_for(MEMBER)  # the first expires in 4 min: refreshed
    assert second is not first
    assert factory.credentials_for(MEMBER) is second
    sts.stubber.assert_no_pending_responses()


def test_concurrent_shards_assume_the_role_once() -> None:
    factory = AwsSessionFactory(credentials=CREDS)
    sts = StubbedSts(factory)
    sts.stubber.add_response("get_caller_identity", IDENTITY)
    sts.stubber.add_response("assume_role", _assumed(timedelta(hours=1)))
    sessions: list[Any] = []
    threads = [
        threading.Thread(target=lambda: sessions.append(factory.credentials_for(MEMBER))) for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sessions) == 16 and len({id(s) for s in sessions}) == 1
    sts.stubber.assert_no_pending_responses()


def test_clients_are_cached_configured_and_pointed_at_the_endpoint() -> None:
    factory = AwsSessionFactory(
        endpoint_url="http://127.0.0.1:5999", credentials=CREDS, max_pool_connections=7
    )
    factory._caller_account = CALLER  # skip STS
    ec2 = factory.client(CALLER, "ec2", "eu-west-1")
    assert factory.client(CALLER, "ec2", "eu-west-1") is ec2
    assert factory.client(CALLER, "ec2", "us-west-2") is not ec2
    assert ec2.meta.endpoint_url == "http://127.0.0.1:5999"
    assert ec2.meta.region_name == "eu-west-1"
    assert ec2.meta.config.retries["total_max_attempts"] == 1
    assert ec2.meta.config.max_pool_connections == 7
    assert factory.client(CALLER, "cloudfront", "global").meta.region_name == "us-east-1"


@pytest.mark.parametrize("threads", [8])
def test_client_cache_is_thread_safe(threads: int) -> None:
    factory = AwsSessionFactory(credentials=CREDS)
    factory._caller_account = CALLER
    got: list[Any] = []
    workers = [
        threading.Thread(target=lambda: got.append(factory.client(CALLER, "sqs", "us-east-1")))
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len({id(c) for c in got}) == 1
