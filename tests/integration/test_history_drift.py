"""History and drift on the embedded pipeline against the moto server: scans, real tag changes made with
boto3 between them, then history and drift read back; plus history's rules on synthetic scan rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from services import drift, history, scans
from services.config import Settings
from services.db.engine import Database
from services.db.migrate import upgrade
from services.db.models import (
    PolicyRow,
    ResourceRow,
    ResourceTagChangeRow,
    ScanResourceRow,
    ScanRow,
    ScanShardRow,
    utcnow,
)
from services.errors import InvalidInput
from services.runtime import Runtime
from services.schemas import ScanRequest
from tests.integration.conftest import wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def any_runtime(request: pytest.FixtureRequest, embedded_runtime: Any) -> Iterator[Any]:
    """The embedded runtime on its SQLite file, or the same on a fresh PostgreSQL database (the drift
    write path reads and locks baselines with dialect-specific SQL)."""
    if request.param == "sqlite":
        yield embedded_runtime
        return
    from workers.runtime import use_runtime

    url = request.getfixturevalue("postgres_url")
    upgrade(url)
    rt = Runtime(settings=embedded_runtime.settings.model_copy(update={"database_url": url}), db=Database(url),
                 dispatcher=embedded_runtime.dispatcher)
    use_runtime(rt)
    try:
        yield rt
    finally:
        use_runtime(embedded_runtime)
        rt.db.dispose()


@pytest.fixture()
def small_estate(embedded_runtime: Any) -> Any:
    from scanner.emulator.demo_estate import seed_small_estate

    return seed_small_estate(embedded_runtime.settings.aws_endpoint_url)


def _request(estate: Any, **kw: Any) -> ScanRequest:
    return ScanRequest(accounts=list(estate.member_account_ids), regions=list(estate.regions),
                       resource_types=sorted(estate.resource_types), **kw)


def _scan(rt: Any, estate: Any, **kw: Any) -> Any:
    result = wait_scan(rt, scans.submit(rt, _request(estate, **kw)))
    assert result.status == "succeeded", result.data_quality
    return result


def _resources(rt: Any, scan_id: str) -> list[ScanResourceRow]:
    with rt.db.session() as s:
        return list(s.scalars(select(ScanResourceRow).where(ScanResourceRow.scan_id == scan_id)
                              .order_by(ScanResourceRow.arn)))


def _change_rows(rt: Any) -> list[tuple[Any, ...]]:
    with rt.db.session() as s:
        return [(r.scan_id, r.arn, r.tag_key, r.change, r.old_value, r.new_value, r.impact)
                for r in s.scalars(select(ResourceTagChangeRow).order_by(ResourceTagChangeRow.arn,
                                                                         ResourceTagChangeRow.tag_key))]


# ---------------------------------------------------------------------------------------------- drift

def test_drift_reports_exactly_the_changes_made_regressions_first(any_runtime: Any, small_estate: Any) -> None:
    rt, estate = any_runtime, small_estate
    first = _scan(rt, estate)
    # A first sighting is a baseline, never drift.
    none_yet = drift.detect_tag_drift(rt, lookback_days=1)
    assert none_yet.summary.total == 0 and none_yet.changes == []
    assert none_yet.baseline.resources_compared == 0 and none_yet.baseline.note
    assert none_yet.baseline.resources_first_seen == first.total_resources

    rows = _resources(rt, first.scan_id)
    instance = next(r for r in rows if r.resource_type == "ec2:instance" and r.compliant)
    bucket = next(r for r in rows if r.resource_type == "s3:bucket" and r.compliant)
    missing = next(r for r in rows if r.resource_type in ("ec2:instance", "ec2:volume") and not r.compliant
                   and "CostCenter" not in r.tags and r.arn != instance.arn)
    ec2 = rt.aws.client(instance.account_id, "ec2", instance.region)
    # Instance: remove a required tag (regression), move a required value (attribution), add a free tag.
    ec2.delete_tags(Resources=[instance.resource_id], Tags=[{"Key": "CostCenter"}])
    new_env = "staging" if instance.tags["Environment"] != "staging" else "test"
    ec2.create_tags(Resources=[instance.resource_id], Tags=[{"Key": "Environment", "Value": new_env},
                                                           {"Key": "Team", "Value": "platform"}])
    # Bucket: an Owner outside the allowed domain (regression); S3 replaces the whole tag set.
    s3 = rt.aws.client(bucket.account_id, "s3", rt.settings.aws_default_region)
    bucket_tags = {**bucket.tags, "Owner": "someone@gmail.com"}
    s3.put_bucket_tagging(Bucket=bucket.resource_id, Tagging={"TagSet": [
        {"Key": k, "Value": v} for k, v in bucket_tags.items()]})
    # A resource missing CostCenter gets it (improvement).
    rt.aws.client(missing.account_id, "ec2", missing.region).create_tags(
        Resources=[missing.resource_id], Tags=[{"Key": "CostCenter", "Value": "Finance"}])

    second = _scan(rt, estate)
    report = drift.detect_tag_drift(rt, lookback_days=1)
    got = {(c.resource_arn, c.tag_key, c.change, c.old_value, c.new_value) for c in report.changes}
    assert got == {
        (instance.arn, "CostCenter", "removed", instance.tags["CostCenter"], None),
        (instance.arn, "Environment", "changed", instance.tags["Environment"], new_env),
        (instance.arn, "Team", "added", None, "platform"),
        (bucket.arn, "Owner", "changed", bucket.tags["Owner"], "someone@gmail.com"),
        (missing.arn, "CostCenter", "added", None, "Finance"),
    }
    assert report.summary.model_dump() == {"total": 5, "added": 2, "removed": 1, "changed": 2, "regressions": 2,
                                           "required_tag_changes": 1, "improvements": 1, "neutral": 1,
                                           "resources": 3}
    impacts = [(c.tag_key, c.impact) for c in report.changes]
    assert [i for _k, i in impacts] == ["regression", "regression", "required_tag_changed", "improvement", "neutral"]
    assert {k for k, i in impacts if i == "regression"} == {"CostCenter", "Owner"}
    removed = next(c for c in report.changes if c.tag_key == "CostCenter" and c.change == "removed")
    assert removed.regression and removed.required_tag
    assert removed.compliant_before is True and removed.compliant_after is False
    assert removed.scan_id == second.scan_id and removed.previous_scan_id == first.scan_id
    assert removed.previous_seen_at is not None and removed.previous_seen_at < removed.observed_at
    assert report.baseline.resources_compared == second.total_resources
    assert report.data_quality.status == "complete"

    # Filters: tag keys ignore case, types narrow, both keep totals honest; limit bounds the list only.
    only_cc = drift.detect_tag_drift(rt, tag_keys=["costcenter"], lookback_days=1)
    assert {(c.resource_arn, c.change) for c in only_cc.changes} == {(instance.arn, "removed"), (missing.arn, "added")}
    only_s3 = drift.detect_tag_drift(rt, resource_types=["s3:bucket"], lookback_days=1)
    assert [(c.resource_arn, c.tag_key) for c in only_s3.changes] == [(bucket.arn, "Owner")]
    top = drift.detect_tag_drift(rt, lookback_days=1, limit=2)
    assert top.changes_returned == 2 and top.changes_total == 5 and top.truncated
    assert all(c.regression for c in top.changes)
    assert {g.key: g.regressions for g in report.by_tag_key}["CostCenter"] == 1

    # A third scan with nothing changed reports nothing new: a change is reported once.
    _scan(rt, estate)
    assert drift.detect_tag_drift(rt, lookback_days=1).summary.total == 5


def test_redelivered_shard_does_not_duplicate_changes(any_runtime: Any, small_estate: Any) -> None:
    rt, estate = any_runtime, small_estate
    first = _scan(rt, estate)
    target = next(r for r in _resources(rt, first.scan_id) if r.resource_type == "ec2:instance")
    rt.aws.client(target.account_id, "ec2", target.region).create_tags(
        Resources=[target.resource_id], Tags=[{"Key": "CostCenter", "Value": "Data"},
                                              {"Key": "Team", "Value": "blue"}])
    second = _scan(rt, estate)
    before = _change_rows(rt)
    assert {(c[1], c[2]) for c in before} == {(target.arn, "CostCenter"), (target.arn, "Team")}
    with rt.db.session() as s:
        shard_id = s.scalar(select(ScanResourceRow.shard_id).where(ScanResourceRow.scan_id == second.scan_id,
                                                                   ScanResourceRow.arn == target.arn))
        # acks_late redelivery of the shard whose worker died after writing: it runs again.
        s.execute(update(ScanShardRow).where(ScanShardRow.id == shard_id).values(status="running"))
    assert scans.run_shard(rt, shard_id).status == "succeeded"
    assert _change_rows(rt) == before
    # ...and once more straight through the store step (same result rows, same transaction shape).
    with rt.db.session() as s:
        s.execute(update(ScanShardRow).where(ScanShardRow.id == shard_id).values(status="running"))
    assert scans.run_shard(rt, shard_id).status == "succeeded"
    assert _change_rows(rt) == before
    with rt.db.session() as s:
        row = s.get(ResourceRow, target.arn)
        assert row is not None and row.last_scan_id == second.scan_id
        assert row.previous_scan_id == first.scan_id and row.previous_tags == dict(target.tags)
    report = drift.detect_tag_drift(rt, lookback_days=1)
    assert report.summary.total == 2 and report.summary.resources == 1


def test_an_older_scans_late_shard_neither_drifts_nor_rolls_back(any_runtime: Any, small_estate: Any) -> None:
    rt, estate = any_runtime, small_estate
    first = _scan(rt, estate)
    target = next(r for r in _resources(rt, first.scan_id) if r.resource_type == "ec2:instance")
    ec2 = rt.aws.client(target.account_id, "ec2", target.region)
    ec2.create_tags(Resources=[target.resource_id], Tags=[{"Key": "Team", "Value": "blue"}])
    second = _scan(rt, estate)
    before = _change_rows(rt)
    ec2.create_tags(Resources=[target.resource_id], Tags=[{"Key": "Team", "Value": "red"}])
    with rt.db.session() as s:
        old_shard = s.scalar(select(ScanResourceRow.shard_id).where(ScanResourceRow.scan_id == first.scan_id,
                                                                    ScanResourceRow.arn == target.arn))
        # The first scan's shard runs again after the second scan stored (a late retry): it sees Team=red.
        s.execute(update(ScanShardRow).where(ScanShardRow.id == old_shard).values(status="running"))
    assert scans.run_shard(rt, old_shard).status == "succeeded"
    assert _change_rows(rt) == before  # an older observation is not drift...
    with rt.db.session() as s:
        row = s.get(ResourceRow, target.arn)
        assert row is not None and row.last_scan_id == second.scan_id  # ...and does not roll the state back
    third = _scan(rt, estate)
    team = [c for c in _change_rows(rt) if c[1] == target.arn and c[2] == "Team" and c[3] == "changed"]
    assert [(c[0], c[4], c[5]) for c in team] == [(third.scan_id, "blue", "red")]  # reported once, by the newer scan


def _latest_arns(rt: Any) -> set[str]:
    with rt.db.session() as s:
        return set(s.scalars(select(ResourceRow.arn)))


def test_resources_gone_from_the_cloud_leave_the_latest_state(any_runtime: Any, small_estate: Any) -> None:
    rt, estate = any_runtime, small_estate
    first = _scan(rt, estate)
    rows = _resources(rt, first.scan_id)
    assert _latest_arns(rt) == {r.arn for r in rows}
    queue = next(r for r in rows if r.resource_type == "sqs:queue")
    bucket = next(r for r in rows if r.resource_type == "s3:bucket")
    sqs = rt.aws.client(queue.account_id, "sqs", queue.region)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=queue.resource_id)["QueueUrl"])
    rt.aws.client(bucket.account_id, "s3", rt.settings.aws_default_region).delete_bucket(Bucket=bucket.resource_id)

    # A scan of one region and one type looks nowhere else: nothing else leaves, the queue (elsewhere) stays.
    other = next(r for r in estate.regions if r != queue.region)
    narrow = wait_scan(rt, scans.submit(rt, ScanRequest(accounts=list(estate.member_account_ids), regions=[other],
                                                        resource_types=["sqs:queue"])))
    assert narrow.status == "succeeded" and narrow.total_resources > 0  # a real look, not a failed one
    assert _latest_arns(rt) == {r.arn for r in rows}

    second = _scan(rt, estate)
    seen = {r.arn for r in _resources(rt, second.scan_id)}
    assert seen == {r.arn for r in rows} - {queue.arn, bucket.arn}
    assert _latest_arns(rt) == seen  # the latest state is what the last full look saw


def test_drift_input_errors_name_the_field(embedded_runtime: Any) -> None:
    rt = embedded_runtime
    for kwargs, field in (({"lookback_days": 0}, "lookback_days"), ({"lookback_days": 3651}, "lookback_days"),
                          ({"resource_types": ["ec2:instanc"]}, "resource_types"),
                          ({"resource_types": ["instance"]}, "resource_types"),
                          ({"tag_keys": [""]}, "tag_keys"), ({"accounts": ["123"]}, "accounts"),
                          ({"limit": 0}, "limit")):
        with pytest.raises(InvalidInput) as err:
            drift.detect_tag_drift(rt, **kwargs)
        assert err.value.field == field and err.value.fix


# -------------------------------------------------------------------------------------------- history

def test_history_averages_same_day_scans_and_leaves_out_adhoc(embedded_runtime: Any, small_estate: Any) -> None:
    rt, estate = embedded_runtime, small_estate
    scheduled = _scan(rt, estate, trigger="scheduled")
    target = next(r for r in _resources(rt, scheduled.scan_id) if r.resource_type == "ec2:instance" and r.compliant)
    rt.aws.client(target.account_id, "ec2", target.region).delete_tags(
        Resources=[target.resource_id], Tags=[{"Key": "CostCenter"}, {"Key": "Owner"}])
    stored = _scan(rt, estate, store_snapshot=True)
    adhoc = _scan(rt, estate)
    assert (scheduled.in_history, stored.in_history, adhoc.in_history) == (True, True, False)
    assert stored.violations_total == scheduled.violations_total + 2
    # Pinned to yesterday 10:00-12:00 UTC so that no day, week or month boundary falls between them.
    noon = (utcnow() - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    for hours, scan in ((2, scheduled), (1, stored), (0, adhoc)):
        _created_at(rt, scan.scan_id, noon - timedelta(hours=hours))

    answer = history.violation_history(rt, days_back=3, group_by="day")
    assert answer.scans_used == 2 and answer.excluded.not_stored == 1
    [day] = answer.series
    assert day.scans == 2
    # Two scans of the same estate: the day holds one estate's worth, not two.
    assert day.total_resources == scheduled.total_resources
    assert day.violations == (scheduled.violations_total + stored.violations_total) / 2
    assert day.compliance_score == pytest.approx((scheduled.compliance_score + stored.compliance_score) / 2, abs=1e-6)
    cc = next(t for t in answer.by_tag if t.key == "CostCenter")
    assert cc.latest.violations == (scheduled.breakdowns.by_tag["CostCenter"].violations
                                    + stored.breakdowns.by_tag["CostCenter"].violations) / 2
    account = next(a for a in answer.by_account if a.key == target.account_id)
    assert account.latest.resources == scheduled.breakdowns.by_account[target.account_id].total
    for group_by in ("week", "month"):
        [period] = history.violation_history(rt, days_back=3, group_by=group_by).series  # type: ignore[arg-type]
        assert (period.scans, period.violations) == (2, day.violations)
    assert answer.trend.direction == "insufficient_data"
    assert answer.scope is not None and sorted(answer.scope.accounts) == sorted(estate.member_account_ids)

    # Move the scheduled snapshot one day earlier: two days, and the score fell by more than a point.
    _created_at(rt, scheduled.scan_id, noon - timedelta(days=1))
    two_days = history.violation_history(rt, days_back=3, group_by="day")
    assert [p.scans for p in two_days.series] == [1, 1]
    assert two_days.series[0].violations == scheduled.violations_total
    assert two_days.series[1].violations == stored.violations_total
    assert two_days.trend.direction == "declining"
    assert two_days.trend.score_change == pytest.approx(stored.compliance_score - scheduled.compliance_score,
                                                        abs=1e-6)
    assert two_days.trend.violations_change == 2
    cc_trend = next(t for t in two_days.by_tag if t.key == "CostCenter").trend
    assert cc_trend.direction == "declining" and cc_trend.measure == "violations"

    # store_snapshot on an existing scan adds it (what check_tag_compliance(scan_id, store_snapshot) does).
    history.store_snapshot(rt, adhoc.scan_id)
    assert history.violation_history(rt, days_back=3).scans_used == 3


def _created_at(rt: Any, scan_id: str, when: datetime) -> None:
    with rt.db.session() as s:
        s.execute(update(ScanRow).where(ScanRow.id == scan_id).values(created_at=when))


def test_scheduled_snapshot_task_is_flagged_and_in_history(embedded_runtime: Any, small_estate: Any) -> None:
    from workers.tasks import scheduled_snapshot

    rt, estate = embedded_runtime, small_estate
    # The task scans the configured defaults; point them at the seeded estate.
    rt.settings = rt.settings.model_copy(update={"accounts": list(estate.member_account_ids),
                                                 "regions": list(estate.regions)})
    result = wait_scan(rt, scheduled_snapshot())
    assert result.status == "succeeded" and result.in_history
    with rt.db.session() as s:
        assert s.scalar(select(ScanRow.trigger).where(ScanRow.id == result.scan_id)) == "scheduled"
    assert history.violation_history(rt, days_back=1).scans_used == 1


def test_rest_history_and_drift(embedded_runtime: Any, small_estate: Any) -> None:
    from api.http.app import create_app

    rt, estate = embedded_runtime, small_estate
    _scan(rt, estate, store_snapshot=True)
    with TestClient(create_app(lambda: rt)) as client:
        body = client.get("/v1/history", params={"days_back": 7, "group_by": "week"}).json()
        assert body["scans_used"] == 1 and body["series"][0]["scans"] == 1
        bad = client.get("/v1/history", params={"group_by": "year"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "query.group_by"
        drift_body = client.get("/v1/drift", params={"tag_keys": "CostCenter,Owner", "lookback_days": 2}).json()
        assert drift_body["filters"]["tag_keys"] == ["CostCenter", "Owner"] and drift_body["summary"]["total"] == 0
        unknown = client.get("/v1/drift", params={"resource_types": "ec2:instanc"})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "resource_types"


# ----------------------------------------------------------------------- history rules on synthetic rows

@pytest.fixture()
def bare_runtime(tmp_path: Path) -> Any:
    """A Runtime on a migrated SQLite file; scans are inserted as rows (no cloud, no worker)."""
    settings = Settings(home=tmp_path, policy_source="file")
    upgrade(settings.effective_database_url)
    rt = Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=None)  # type: ignore[arg-type]
    with rt.db.session() as s:
        s.add(PolicyRow(id="p", version_label="1", source="test", content={}))
    yield rt
    rt.db.dispose()


def _row(rt: Any, scan_id: str, *, days_ago: float, violations: int, status: str = "succeeded",
         in_history: bool = True, trigger: str = "scheduled", failed_shards: int = 0, shards: int = 20,
         accounts: Any = None, requested_by: str | None = None) -> None:
    # From yesterday noon (UTC), so that scans a whole number of days apart never share a day.
    created = (utcnow() - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0) \
        - timedelta(days=days_ago)
    compliant = 10 - violations // 2
    with rt.db.session() as s:
        s.add(ScanRow(
            id=scan_id, status=status, created_at=created, finished_at=created + timedelta(minutes=5),
            trigger=trigger, in_history=in_history, policy_id="p", shards_total=shards,
            requested_by=requested_by or ("beat" if trigger == "scheduled" else "local"),
            request={"accounts": accounts, "regions": None, "resource_types": None},
            total_resources=12, in_scope_resources=10, compliant_resources=compliant,
            compliance_score=compliant / 10,
            breakdowns={"by_resource_type": {"ec2:instance": {"total": 12, "in_scope": 10, "compliant": compliant,
                                                              "violations": violations,
                                                              "compliance_score": compliant / 10}},
                        "by_tag": {"Owner": {"violations": violations, "resources": violations}}},
            data_quality={"status": "complete" if not failed_shards else "partial",
                          "failed_shards": [{"shard": f"x/{i}", "error": "denied"} for i in range(failed_shards)]}))


def test_partial_failed_other_scope_and_running_scans(bare_runtime: Any) -> None:
    rt = bare_runtime
    _row(rt, "ok-1", days_ago=2.0, violations=4)
    _row(rt, "ok-2", days_ago=1.0, violations=8)
    _row(rt, "partial-ok", days_ago=1.0, violations=6, status="partial", failed_shards=1)  # 95 % of 20 shards
    _row(rt, "partial-low", days_ago=1.0, violations=0, status="partial", failed_shards=2)  # 90 %
    _row(rt, "failed", days_ago=1.0, violations=0, status="failed")
    _row(rt, "running", days_ago=0.1, violations=0, status="running")
    _row(rt, "narrow", days_ago=1.0, violations=0, in_history=True, trigger="interactive",
         accounts=["111111111111"])
    _row(rt, "adhoc", days_ago=1.0, violations=0, in_history=False, trigger="interactive")
    _row(rt, "too-old", days_ago=40, violations=0)
    # The latest scheduled scan is an audit schedule's over one account: the daily snapshot's scope still rules.
    _row(rt, "audit-narrow", days_ago=0.5, violations=0, accounts=["111111111111"], requested_by="schedule:abc")

    answer = history.violation_history(rt, days_back=30, group_by="day")
    assert answer.scans_used == 3
    assert [(p.scans, p.partial_scans, p.violations) for p in answer.series] == [(1, 0, 4.0), (2, 1, 7.0)]
    e = answer.excluded
    assert (e.not_stored, e.low_coverage, e.other_scope, e.failed_or_cancelled, e.running) == (1, 1, 2, 1, 1)
    assert set(e.scan_ids) == {"partial-low", "failed", "narrow", "audit-narrow"}
    assert answer.data_quality.status == "partial"
    assert answer.trend.direction == "declining"  # score 0.8 -> mean(0.6, 0.7)
    # A stricter coverage rule leaves the partial scan out too.
    rt.settings = rt.settings.model_copy(update={"history_min_coverage": 1.0})
    strict = history.violation_history(rt, days_back=30, group_by="day")
    assert strict.scans_used == 2 and strict.data_quality.status == "complete"
    # max_points keeps the most recent periods; the trend still spans the window.
    capped = history.violation_history(rt, days_back=30, max_points=1)
    assert len(capped.series) == 1 and capped.periods_total == 2 and capped.trend.from_period is not None


def test_history_input_errors_name_the_field(bare_runtime: Any) -> None:
    for kwargs, field in (({"days_back": 0}, "days_back"), ({"days_back": 3651}, "days_back"),
                          ({"group_by": "year"}, "group_by"), ({"top_n": 51}, "top_n"),
                          ({"max_points": 0}, "max_points")):
        with pytest.raises(InvalidInput) as err:
            history.violation_history(bare_runtime, **kwargs)
        assert err.value.field == field and err.value.fix
    empty = history.violation_history(bare_runtime)
    assert empty.scans_used == 0 and empty.series == [] and empty.trend.direction == "insufficient_data"
    assert "store_snapshot" in " ".join(empty.data_quality.notes)

