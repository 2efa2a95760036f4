"""Assumed-role credentials shared through a real Redis: one AssumeRole per account for all processes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from scanner.emulator.server import fake_credentials
from scanner.providers.aws.session import AwsSessionFactory
from scanner.shared_credentials import RedisCredentialCache
from tests.conftest import free_port

pytestmark = pytest.mark.integration

MEMBER = "111111111111"


def _factory(endpoint: str, cache: Any, calls: list[str]) -> AwsSessionFactory:
    creds = {k: v for k, v in fake_credentials().items() if k != "region_name"}
    factory = AwsSessionFactory(endpoint_url=endpoint, credentials=creds, credential_cache=cache,
                                external_id="ext-1")
    factory.base_session().events.register("before-send.sts.AssumeRole", lambda **_kw: calls.append("assume"))
    factory.base_session().events.register("before-send.sts.GetCallerIdentity",
                                           lambda **_kw: calls.append("who-am-i"))
    return factory


def test_workers_share_one_assume_role_per_account(emulator: Any, redis_url: str) -> None:
    calls: list[str] = []
    # Waiters give the lock holder 30 s (5 s by default): under a loaded full suite the holder's AssumeRole on the
    # in-process moto server once took longer, and a second AssumeRole was made (what is tested here is the
    # sharing, not the default wait).
    cache = RedisCredentialCache(redis_url, prefix="test:creds", wait_seconds=30)
    # Eight "processes" (separate factories, as prefork children are) reach the member at once.
    factories = [_factory(emulator.endpoint_url, cache, calls) for _ in range(8)]
    keys: list[str] = []
    barrier = threading.Barrier(len(factories))

    def reach(f: AwsSessionFactory) -> None:
        barrier.wait()
        keys.append(f.credentials_for(MEMBER).access_key)  # type: ignore[union-attr]

    threads = [threading.Thread(target=reach, args=(f,)) for f in factories]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # One GetCallerIdentity (to tell the caller's own account from members) and one AssumeRole for all eight.
    assert sorted(calls) == ["assume", "who-am-i"] and len(set(keys)) == 1, (calls, keys)
    assert {f.caller_account() for f in factories} == {emulator.client("sts").get_caller_identity()["Account"]}
    # The shared credentials work: the member's own identity answers.
    sts = factories[3].client(MEMBER, "sts", "us-east-1")
    assert sts.get_caller_identity()["Account"] == MEMBER
    # Another External ID is another role session: not served from this entry.
    other = AwsSessionFactory(endpoint_url=emulator.endpoint_url, credential_cache=cache, external_id="ext-2",
                              credentials={k: v for k, v in fake_credentials().items() if k != "region_name"})
    other.base_session().events.register("before-send.sts.AssumeRole", lambda **_kw: calls.append("assume"))
    other.credentials_for(MEMBER)
    assert sorted(calls) == ["assume", "assume", "who-am-i"]  # the caller's account still came from Redis


def test_without_sharing_each_process_assumes(emulator: Any) -> None:
    calls: list[str] = []
    for factory in [_factory(emulator.endpoint_url, None, calls) for _ in range(3)]:
        factory.credentials_for(MEMBER)
    assert calls == ["who-am-i", "assume"] * 3


def test_redis_down_still_assumes_in_the_process(emulator: Any) -> None:
    calls: list[str] = []
    dead = RedisCredentialCache(f"redis://127.0.0.1:{free_port()}/0")
    factory = _factory(emulator.endpoint_url, dead, calls)
    assert factory.client(MEMBER, "sts", "us-east-1").get_caller_identity()["Account"] == MEMBER
    assert calls == ["who-am-i", "assume"]  # both asked in the process
