"""AwsSessionFactory without a server: AssumeRole parameters, caching, refresh, client config."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import scanner.providers.aws.session as session_module
from scanner.providers.aws.session import AwsSessionFactory, UnboundAccountError, acting_account

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
    """Gives the factory a stubbed STS client as its base-credentials STS client."""

    def __init__(self, factory: AwsSessionFactory) -> None:
        self.client = boto3.Session(**CREDS).client("sts", region_name="us-east-1")
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        factory._sts = self.client


class Sent(Exception):
    """Raised instead of sending: the request was signed and is what the test looks at."""


class SignedKeys:
    """Records the access key of every request a client's signer signed, then stops it from being sent."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.threads: list[str] = []
        self.accounts: list[str | None] = []

    def watch(self, client: Any) -> None:
        client.meta.events.register("before-send", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        authorization = request.headers["Authorization"].decode()
        self.keys.append(authorization.split("Credential=")[1].split("/")[0])
        self.threads.append(threading.current_thread().name)
        self.accounts.append(acting_account())
        raise Sent()


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
    signed = SignedKeys()
    member_client = factory.client(MEMBER, "sqs", "us-east-1")
    signed.watch(member_client)
    with pytest.raises(Sent):
        member_client.list_queues()
    assert signed.keys == ["ASIAEXAMPLE00000"]
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


def test_one_base_sts_client_serves_every_assume_role(monkeypatch: pytest.MonkeyPatch) -> None:
    factory = AwsSessionFactory(credentials=CREDS)
    made: list[str] = []
    real = boto3.Session.client

    def counting_client(self: boto3.Session, service: str, *args: Any, **kwargs: Any) -> Any:
        made.append(service)
        client = real(self, service, *args, **kwargs)
        stubber = Stubber(client)
        stubber.add_response("get_caller_identity", IDENTITY)
        for _ in range(3):
            stubber.add_response("assume_role", _assumed(timedelta(hours=1)))
        stubber.activate()
        return client

    monkeypatch.setattr(boto3.Session, "client", counting_client)
    for member in ("111111111111", "222222222222", "333333333333"):
        assert factory.credentials_for(member) is not None
    assert made == ["sts"]


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
    assert factory.client(CALLER, "ec2", "eu-west-1")._client is ec2._client
    assert factory.client(CALLER, "ec2", "us-west-2")._client is not ec2._client
    assert ec2.meta.endpoint_url == "http://127.0.0.1:5999"
    assert ec2.meta.region_name == "eu-west-1"
    assert ec2.meta.config.retries["total_max_attempts"] == 1
    assert ec2.meta.config.max_pool_connections == 7
    assert factory.client(CALLER, "cloudfront", "global").meta.region_name == "us-east-1"


def test_prepare_builds_the_shared_clients_without_io_and_they_sign_per_account() -> None:
    factory, _sts = _member_factory()
    factory.endpoint_url = "http://192.0.2.1:9"  # unroutable: a request made while preparing would hang or fail
    assert factory.prepare(["sqs", "ec2"], ["eu-west-1", "global", "us-east-1"]) == 4
    assert set(factory._clients) == {("sqs", "eu-west-1"), ("ec2", "eu-west-1"), ("sqs", "us-east-1"),
                                     ("ec2", "us-east-1")}
    prepared = factory._clients[("sqs", "eu-west-1")]
    member = factory.client(MEMBER, "sqs", "eu-west-1")
    assert member._client is prepared
    signed = SignedKeys()
    signed.watch(member)
    with pytest.raises(Sent):
        member.list_queues()
    assert signed.keys == ["ASIAEXAMPLE00000"]


def test_prepare_stops_at_the_cache_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "MAX_CACHED_CLIENTS", 3)
    factory = AwsSessionFactory(credentials=CREDS)
    assert factory.prepare(["sqs", "sns"], ["us-east-1", "eu-west-1", "us-west-2"]) == 3


@pytest.mark.parametrize("threads", [8])
def test_client_cache_is_thread_safe(threads: int) -> None:
    factory = AwsSessionFactory(credentials=CREDS)
    factory._caller_account = CALLER
    got: list[Any] = []
    workers = [
        threading.Thread(target=lambda: got.append(factory.client(CALLER, "sqs", "us-east-1")._client))
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len({id(c) for c in got}) == 1


def _member_factory() -> tuple[AwsSessionFactory, StubbedSts]:
    factory = AwsSessionFactory(credentials=CREDS)
    sts = StubbedSts(factory)
    sts.stubber.add_response("get_caller_identity", IDENTITY)
    sts.stubber.add_response("assume_role", _assumed(timedelta(hours=1)))
    return factory, sts


def test_accounts_share_one_client_and_each_call_signs_as_its_account() -> None:
    factory, _sts = _member_factory()
    member, caller = factory.client(MEMBER, "sqs", "us-east-1"), factory.client(CALLER, "sqs", "us-east-1")
    assert member._client is caller._client  # one client built, two accounts served
    signed = SignedKeys()
    signed.watch(member)
    for client in (member, caller, member):
        with pytest.raises(Sent):
            client.list_queues()
    assert signed.keys == ["ASIAEXAMPLE00000", "AKIDEXAMPLE", "ASIAEXAMPLE00000"]
    assert signed.accounts == [MEMBER, CALLER, MEMBER]  # what event handlers on the shared client see
    assert acting_account() is None  # and nothing after the calls


def test_paginators_sign_as_the_account_they_came_from() -> None:
    factory, _sts = _member_factory()
    signed = SignedKeys()
    member = factory.client(MEMBER, "sqs", "us-east-1")
    signed.watch(member)
    for client in (member, factory.client(CALLER, "sqs", "us-east-1")):
        with pytest.raises(Sent):
            next(iter(client.get_paginator("list_queues").paginate()))
    assert signed.keys == ["ASIAEXAMPLE00000", "AKIDEXAMPLE"]


def test_the_shared_client_called_directly_refuses_to_sign() -> None:
    factory, _sts = _member_factory()
    member = factory.client(MEMBER, "sqs", "us-east-1")
    with pytest.raises(UnboundAccountError, match="no account bound"):
        member._client.list_queues()
    # A finished call leaves nothing bound behind in the thread.
    signed = SignedKeys()
    signed.watch(member)
    with pytest.raises(Sent):
        member.list_queues()
    with pytest.raises(UnboundAccountError):
        member._client.list_queues()


def test_threads_acting_for_different_accounts_never_sign_as_each_other() -> None:
    factory, _sts = _member_factory()
    clients = {"member": factory.client(MEMBER, "sqs", "us-east-1"),
               "caller": factory.client(CALLER, "sqs", "us-east-1")}
    signed = SignedKeys()
    signed.watch(clients["member"])
    start = threading.Barrier(2)

    def calls(name: str) -> None:
        start.wait()
        for _ in range(40):
            with pytest.raises(Sent):
                clients[name].list_queues()

    threads = [threading.Thread(target=calls, args=(name,), name=name) for name in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {"member": "ASIAEXAMPLE00000", "caller": "AKIDEXAMPLE"}
    assert len(signed.keys) == 80
    assert all(key == expected[thread] for key, thread in zip(signed.keys, signed.threads, strict=True))


def test_warm_up_leaves_nothing_to_parse_for_the_first_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.loaders

    from scanner.providers.aws.session import shared_botocore_session, warm_up

    # A fresh process-wide loader: models other tests parsed must not make this pass without warm_up.
    shared_botocore_session.cache_clear()
    warm_up(["kinesis"])

    def no_more_parsing(*_a: Any, **_kw: Any) -> None:
        raise AssertionError("a model file was read after warm_up")

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", no_more_parsing)
    factory = AwsSessionFactory(credentials=CREDS)
    factory._caller_account = CALLER
    client = factory.client(CALLER, "kinesis", "us-east-1")
    assert client.can_paginate("list_streams")
    assert client.meta.service_model.service_name == "kinesis"
