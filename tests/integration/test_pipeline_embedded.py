"""The scan pipeline in the embedded mode: a moto server over HTTP, a SQLite file and the same Celery
tasks on an in-process worker. Counts are compared with what the seeder created."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from sqlalchemy import func, select, update

from scanner.providers.aws import registry
from scanner.providers.aws.session import acting_account
from services import scans
from services.db.models import ScanResourceRow, ScanRow, ScanShardRow, ViolationRow
from services.errors import InvalidInput, NotFound
from services.schemas import ScanRequest, ViolationFilters
from tests.integration.conftest import expected_by_type, wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture()
def small_estate(embedded_runtime: Any) -> Any:
    from scanner.emulator.demo_estate import seed_small_estate

    return seed_small_estate(embedded_runtime.settings.aws_endpoint_url)


def _request(estate: Any, **kw: Any) -> ScanRequest:
    return ScanRequest(accounts=list(estate.member_account_ids), regions=list(estate.regions),
                       resource_types=sorted(estate.resource_types), **kw)


def test_scan_finds_exactly_what_was_seeded(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate
    scan_id = scans.submit(rt, _request(estate))
    result = wait_scan(rt, scan_id)

    assert result.status == "succeeded", result.data_quality
    assert result.data_quality.status == "complete"
    expected = expected_by_type(estate, list(estate.member_account_ids))
    assert {k: v.total for k, v in result.breakdowns.by_resource_type.items()} == expected
    assert result.total_resources == sum(expected.values())
    assert set(result.breakdowns.by_account) == set(estate.member_account_ids)
    # Every seeded ARN is found, keyed by ARN.
    with rt.db.session() as s:
        found = set(s.scalars(select(ScanResourceRow.arn).where(ScanResourceRow.scan_id == scan_id)))
    seeded = {r.arn for r in estate.resources if r.account_id in estate.member_account_ids}
    assert seeded <= found
    # The score is compliant / in scope, and the violation total adds up.
    assert result.in_scope_resources and result.compliant_resources is not None
    assert result.compliance_score == pytest.approx(result.compliant_resources / result.in_scope_resources, abs=1e-6)
    assert result.violations_total == sum(e.violations for e in result.breakdowns.by_resource_type.values())
    assert result.violations_total > 0
    # Every shard reports its calls.
    assert result.progress.shards_done == result.progress.shards_total > 0
    assert result.progress.api_calls > 0


def test_redelivered_shard_and_finalize_change_nothing(embedded_runtime: Any, small_estate: Any) -> None:
    rt = embedded_runtime
    scan_id = scans.submit(rt, _request(small_estate))
    before = wait_scan(rt, scan_id)

    def counts() -> tuple[int, int]:
        with rt.db.session() as s:
            return (s.scalar(select(func.count()).select_from(ScanResourceRow)
                             .where(ScanResourceRow.scan_id == scan_id)),
                    s.scalar(select(func.count()).select_from(ViolationRow).where(ViolationRow.scan_id == scan_id)))

    baseline = counts()
    with rt.db.session() as s:
        shard_id = s.scalars(select(ScanShardRow.id).where(ScanShardRow.scan_id == scan_id,
                                                            ScanShardRow.resources_found > 0)).first()
        # Simulate acks_late redelivery of a shard whose worker died after writing.
        s.execute(update(ScanShardRow).where(ScanShardRow.id == shard_id).values(status="running"))
    assert scans.run_shard(rt, shard_id).status == "succeeded"
    assert counts() == baseline
    # A finished shard delivered again is not run again.
    assert scans.run_shard(rt, shard_id).status == "succeeded"
    scans.finalize_scan(rt, scan_id)
    after = scans.get_scan(rt, scan_id, violations_limit=0)
    assert (after.total_resources, after.compliance_score, after.violations_total) == (
        before.total_resources, before.compliance_score, before.violations_total)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kw: Any) -> Any:
        yield self._data

    def read(self, *_a: Any) -> bytes:
        return self._data


def test_access_denied_makes_only_its_shard_partial(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate
    denied_account, denied_region = estate.member_account_ids[0], estate.regions[0]

    def deny(request: Any, **_kw: Any) -> AWSResponse | None:
        if acting_account() != denied_account:  # the client is shared by every account
            return None
        body = json.dumps({"__type": "AccessDeniedException",
                           "message": "User is not authorized to perform: dynamodb:ListTables"}).encode()
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "AccessDeniedException",
                                              "Content-Type": "application/x-amz-json-1.0"}, _Body(body))

    # The factory shares one client per service and region: the shard's worker calls pass this hook.
    rt.aws.client(denied_account, "dynamodb", denied_region).meta.events.register("before-send.dynamodb.*", deny)
    scan_id = scans.submit(rt, _request(small_estate))
    result = wait_scan(rt, scan_id)

    assert result.status == "partial"
    assert result.data_quality.status == "partial"
    assert len(result.data_quality.failed_shards) == 1
    failed = result.data_quality.failed_shards[0]
    # The account-region's types share one shard: the failure names the denied type, the others are kept.
    assert failed.shard == f"{denied_account}/{denied_region}/{scans.PACKED_GROUP}"
    assert "dynamodb:table: AccessDenied" in failed.error
    # Everything else is still counted: only the denied tables are missing.
    expected = expected_by_type(estate, list(estate.member_account_ids))
    missing = estate.counts.get((denied_account, denied_region, "dynamodb:table"), 0)
    assert result.total_resources == sum(expected.values()) - missing


def test_cancel_a_running_scan(embedded_runtime: Any, small_estate: Any) -> None:
    rt = embedded_runtime
    scan_id = scans.submit(rt, _request(small_estate))
    cancelled = scans.cancel_scan(rt, scan_id)
    final = wait_scan(rt, scan_id)
    assert final.status == "cancelled", cancelled
    assert final.data_quality.status == "partial"
    with pytest.raises(InvalidInput, match="already ended"):
        scans.cancel_scan(rt, scan_id)


def test_tagging_api_long_tail_is_labelled(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate
    scan_id = scans.submit(rt, ScanRequest(accounts=list(estate.member_account_ids)[:1],
                                           regions=list(estate.regions)[:1], resource_types="all"))
    result = wait_scan(rt, scan_id)
    assert result.status == "succeeded", result.data_quality
    assert any("only tagged resources" in n for n in result.data_quality.notes)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("regions", ["us-east-1", "mars-north-1"], "unknown region"),
    ("resource_types", ["ec2:instance", "ec2:spaceship"], "unknown resource type"),
    ("accounts", ["12345"], "12-digit"),
])
def test_bad_requests_write_nothing(embedded_runtime: Any, field: str, value: list[str], needle: str) -> None:
    rt = embedded_runtime
    with pytest.raises(InvalidInput, match=needle) as info:
        scans.submit(rt, ScanRequest(**{field: value}))
    assert info.value.field == field and info.value.fix
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ScanRow)) == 0


def test_reads_reject_unknown_ids_and_cursors(embedded_runtime: Any, small_estate: Any) -> None:
    rt = embedded_runtime
    with pytest.raises(NotFound):
        scans.get_scan(rt, "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11")
    with pytest.raises(InvalidInput, match="not a scan id"):
        scans.get_scan(rt, "../../etc/passwd")
    scan_id = scans.submit(rt, _request(small_estate))
    wait_scan(rt, scan_id)
    with pytest.raises(InvalidInput, match="cursor"):
        scans.list_violations(rt, scan_id, cursor="bm90LWEtY3Vyc29y")


def test_violation_pages_are_disjoint_and_complete(embedded_runtime: Any, small_estate: Any) -> None:
    rt = embedded_runtime
    scan_id = scans.submit(rt, _request(small_estate))
    result = wait_scan(rt, scan_id)
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = scans.list_violations(rt, scan_id, cursor=cursor, limit=7)
        seen.extend((v.resource_arn, v.rule_id) for v in page.violations)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == result.violations_total
    errors = scans.list_violations(rt, scan_id, filters=ViolationFilters(severity="error"), limit=1000)
    assert errors.violations and all(v.severity == "error" for v in errors.violations)
    # Filtering never changes the score.
    assert scans.get_scan(rt, scan_id, filters=ViolationFilters(severity="warning")).compliance_score == \
        result.compliance_score


def test_region_filter_applies_to_global_listings(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate
    region = estate.regions[1]
    scan_id = scans.submit(rt, ScanRequest(accounts=list(estate.member_account_ids), regions=[region],
                                           resource_types=sorted(estate.resource_types)))
    result = wait_scan(rt, scan_id)
    assert set(result.breakdowns.by_region) <= {region, "global"}
    expected = sum(n for (a, r, _t), n in estate.counts.items() if a in estate.member_account_ids and r == region)
    assert result.total_resources == expected


def test_throttled_shard_is_retried_whole_and_completes(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate
    account, region = estate.member_account_ids[0], estate.regions[0]
    throttled = {"left": 12}  # more than one shard attempt's per-call retries can absorb

    def throttle(request: Any, **_kw: Any) -> AWSResponse | None:
        if throttled["left"] <= 0 or acting_account() != account:
            return None
        throttled["left"] -= 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException",
                                              "Content-Type": "application/x-amz-json-1.0"}, _Body(body))

    rt.aws.client(account, "dynamodb", region).meta.events.register("before-send.dynamodb.*", throttle)
    scan_id = scans.submit(rt, _request(estate))
    result = wait_scan(rt, scan_id, timeout=180)
    assert result.status == "succeeded", result.data_quality
    assert throttled["left"] == 0 and result.progress.retries > 0
    with rt.db.session() as s:
        shard = s.get(ScanShardRow, f"{scan_id}/{account}/{region}/{scans.PACKED_GROUP}")
        assert shard is not None and shard.attempts >= 2 and shard.status == "succeeded"
        # Counted per API family, across the shard's attempts.
        assert shard.api_by_family is not None and shard.api_by_family["dynamodb"]["throttles"] == 12
        assert shard.throttles == 12
    assert result.progress.throttles == 12 and result.progress.shards_retried >= 1
    expected = expected_by_type(estate, list(estate.member_account_ids))
    assert result.total_resources == sum(expected.values())


def test_inventory_is_reused_within_its_ttl_unless_forced(embedded_runtime: Any, small_estate: Any) -> None:
    from tests.integration.conftest import member_volume

    rt, estate = embedded_runtime, small_estate
    rt.settings.inventory_cache_minutes = 10
    first = wait_scan(rt, scans.submit(rt, _request(estate)))
    assert first.status == "succeeded" and first.progress.shards_reused == 0
    # The cloud changes after the first scan.
    account, region = estate.member_account_ids[0], estate.regions[0]
    member_volume(rt.settings.aws_endpoint_url, account, region, {"Owner": "x"}, session_name="cache-test")

    second = wait_scan(rt, scans.submit(rt, _request(estate)))
    assert second.status == "succeeded"
    assert second.progress.shards_reused == second.progress.shards_total > 0
    assert second.progress.api_calls == 0
    # The same inventory, judged again: the new volume is not seen, the figures are the first scan's.
    assert second.total_resources == first.total_resources
    assert second.compliant_resources == first.compliant_resources
    assert any("inventory reused from scan" in note for note in second.data_quality.notes)

    # Another filter is another cache key: the narrower region list reads the cloud.
    narrower = wait_scan(rt, scans.submit(rt, ScanRequest(
        accounts=list(estate.member_account_ids), regions=[region], resource_types=sorted(estate.resource_types))))
    assert narrower.progress.shards_reused == 0 and narrower.progress.api_calls > 0

    forced = wait_scan(rt, scans.submit(rt, _request(estate, force_refresh=True)))
    assert forced.progress.shards_reused == 0 and forced.progress.api_calls > 0
    assert forced.total_resources == first.total_resources + 1

    rt.settings.inventory_cache_minutes = 0  # off: every scan reads the cloud
    fresh = wait_scan(rt, scans.submit(rt, _request(estate)))
    assert fresh.progress.shards_reused == 0 and fresh.total_resources == forced.total_resources


def test_an_organizational_unit_scans_every_account_under_it(embedded_runtime: Any) -> None:
    from scanner.emulator.demo_estate import seed_demo_organization

    rt = embedded_runtime
    estate = seed_demo_organization(rt.settings.aws_endpoint_url, scale=0.1)
    ou_name, ou_id = sorted(estate.ou_ids.items())[0]
    members = sorted(a for a, ou in estate.account_ous.items() if ou == ou_name)
    assert members and len(members) < len(estate.member_account_ids)
    result = wait_scan(rt, scans.submit(rt, ScanRequest(accounts=[ou_id], regions=list(estate.regions),
                                                        resource_types=sorted(estate.resource_types))))
    assert result.status == "succeeded", result.data_quality
    assert sorted(result.breakdowns.by_account) == members
    assert result.total_resources == sum(expected_by_type(estate, members).values())
    # An OU id and an account id together: the union, each account once.
    other = next(a for a in estate.member_account_ids if a not in members)
    both = wait_scan(rt, scans.submit(rt, ScanRequest(accounts=[ou_id, other, members[0]],
                                                      regions=list(estate.regions),
                                                      resource_types=sorted(estate.resource_types))))
    assert sorted(both.breakdowns.by_account) == sorted([*members, other])
    with pytest.raises(InvalidInput, match="organizational unit") as bad:
        scans.submit(rt, ScanRequest(accounts=["ou-nope"]))
    assert bad.value.field == "accounts"


def test_an_account_region_is_one_shard_until_a_type_grows_big_there(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate

    def shards_of(scan_id: str) -> dict[tuple[str, str], dict[str, list[str]]]:
        with rt.db.session() as s:
            rows = s.scalars(select(ScanShardRow).where(ScanShardRow.scan_id == scan_id)).all()
        plan: dict[tuple[str, str], dict[str, list[str]]] = {}
        for row in rows:
            plan.setdefault((row.account_id, row.region), {})[row.group] = sorted(row.resource_types)
        return plan

    first = wait_scan(rt, scans.submit(rt, _request(estate)))
    assert first.status == "succeeded", first.data_quality
    plan = shards_of(first.scan_id)
    regional = sorted(t for t in estate.resource_types if t in registry.regional_types())
    for account in estate.member_account_ids:
        for region in estate.regions:
            assert plan[(account, region)] == {scans.PACKED_GROUP: regional}

    # The biggest (account, region, type) of the estate crosses the split size: the next scan gives it a shard
    # of its own there, and only there; what is found does not change.
    (account, region, rtype), biggest = max(
        ((k, n) for k, n in estate.counts.items() if k[2] in regional and k[0] in estate.member_account_ids),
        key=lambda kv: kv[1])
    rt.settings.shard_split_resources = biggest
    try:
        second = wait_scan(rt, scans.submit(rt, _request(estate)))
    finally:
        rt.settings.shard_split_resources = 1000
    assert second.status == "succeeded", second.data_quality
    split = shards_of(second.scan_id)
    alone = f"{registry.group_of(rtype)}-{rtype.split(':', 1)[1]}"
    assert split[(account, region)] == {alone: [rtype], scans.PACKED_GROUP: [t for t in regional if t != rtype]}
    heavy_elsewhere = {k for k, n in estate.counts.items()
                       if n >= biggest and k[2] in regional and k[0] in estate.member_account_ids}
    assert sum(len(groups) for groups in split.values()) == sum(len(groups) for groups in plan.values()) + len(
        heavy_elsewhere)
    assert second.total_resources == first.total_resources
    assert second.breakdowns.by_resource_type == first.breakdowns.by_resource_type


def test_shards_run_while_other_accounts_are_still_being_planned(embedded_runtime: Any, small_estate: Any) -> None:
    import threading
    import time

    rt, estate = embedded_runtime, small_estate
    slow = estate.member_account_ids[-1]
    release = threading.Event()

    def hold(**_kw: Any) -> None:
        if acting_account() == slow:
            release.wait(20)  # this account's regions stay unknown until the test has looked

    ec2 = rt.aws.client(slow, "ec2", rt.settings.aws_default_region)
    ec2.meta.events.register("before-send.ec2.DescribeRegions", hold)
    try:
        scan_id = scans.submit(rt, _request(estate))
        seen_during_planning: set[str] = set()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not seen_during_planning:
            with rt.db.session() as s:
                scan = s.get(ScanRow, scan_id)
                assert scan is not None and scan.status != "succeeded"  # never finalized mid-plan
                done = s.scalars(select(ScanShardRow.account_id).where(
                    ScanShardRow.scan_id == scan_id, ScanShardRow.status == "succeeded")).all()
                if (scan.data_quality or {}).get(scans.PLANNING_KEY):
                    seen_during_planning = set(done)
            time.sleep(0.1)
        # Other accounts' shards ran to the end while one account was still being reached.
        assert seen_during_planning and slow not in seen_during_planning
    finally:
        release.set()
    result = wait_scan(rt, scan_id)
    ec2.meta.events.unregister("before-send.ec2.DescribeRegions", hold)
    assert result.status == "succeeded", result.data_quality
    expected = expected_by_type(estate, list(estate.member_account_ids))
    assert result.total_resources == sum(expected.values())
    assert result.progress.shards_total == result.progress.shards_done
    with rt.db.session() as s:
        scan = s.get(ScanRow, scan_id)
        assert scan is not None and scan.shards_total == result.progress.shards_total
        assert scans.PLANNING_KEY not in (scan.data_quality or {})
