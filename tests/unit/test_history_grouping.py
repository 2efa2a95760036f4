"""History arithmetic: periods, averaging (never summing) several scans of one period, trend thresholds,
and the pure parts of drift (tag diff, impact classification)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.drift import classify, diff_tags
from services.history import (
    SCORE_THRESHOLD,
    Measure,
    Snapshot,
    TagMeasure,
    group_snapshots,
    period_label,
    period_start,
    trend_of,
)

T0 = datetime(2026, 11, 4, 2, 0, tzinfo=UTC)  # a Wednesday


def snap(at: datetime, *, total: float = 10, in_scope: float = 10, compliant: float = 5, violations: float = 7,
         accounts: dict[str, Measure] | None = None, tags: dict[str, TagMeasure] | None = None,
         partial: bool = False, scan_id: str = "s") -> Snapshot:
    score = 1.0 if in_scope == 0 else compliant / in_scope
    return Snapshot(scan_id=scan_id, at=at, overall=Measure(total, in_scope, compliant, violations, score),
                    by_account=accounts or {}, by_tag=tags or {}, partial=partial)


def test_periods_are_utc_days_iso_weeks_and_months() -> None:
    assert period_start(T0, "day") == date(2026, 11, 4)
    assert period_start(T0, "week") == date(2026, 11, 2)  # Monday
    assert period_start(T0, "month") == date(2026, 11, 1)
    # 00:30 in Paris on the 5th is still the 4th in UTC.
    paris = T0.replace(hour=23, minute=30).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert period_start(paris, "day") == date(2026, 11, 4)
    assert period_label(date(2026, 11, 2), "week") == "2026-W45"
    assert period_label(date(2026, 11, 1), "month") == "2026-11"
    assert period_label(date(2026, 11, 4), "day") == "2026-11-04"
    # ISO week-year: 2026-12-28 (Monday) is week 53 of 2026; 2027-01-01 belongs to it.
    assert period_start(datetime(2027, 1, 1, tzinfo=UTC), "week") == date(2026, 12, 28)


def test_three_scans_in_one_day_average_instead_of_summing() -> None:
    scans = [snap(T0, violations=10, compliant=4), snap(T0 + timedelta(hours=3), violations=20, compliant=6),
             snap(T0 + timedelta(hours=6), violations=30, compliant=8)]
    [day] = group_snapshots(scans, "day")
    assert day.scans == 3
    assert day.overall.violations == 20  # mean, not 60
    assert day.overall.total == 10 and day.overall.in_scope == 10  # not 30
    assert day.overall.compliant == 6
    assert day.overall.score == pytest.approx((0.4 + 0.6 + 0.8) / 3)


def test_weeks_and_months_gather_days() -> None:
    days = [snap(T0 + timedelta(days=i), violations=i) for i in range(10)]  # Wed 4th .. Fri 13th
    weeks = group_snapshots(days, "week")
    assert [(w.start, w.scans) for w in weeks] == [(date(2026, 11, 2), 5), (date(2026, 11, 9), 5)]
    assert weeks[0].overall.violations == pytest.approx(sum(range(5)) / 5)
    assert weeks[1].overall.violations == pytest.approx(sum(range(5, 10)) / 5)
    [month] = group_snapshots(days, "month")
    assert month.scans == 10 and month.overall.violations == pytest.approx(4.5)


def test_accounts_average_over_scans_that_saw_them_tags_over_every_scan() -> None:
    a = Measure(5, 5, 5, 0, 1.0)
    b = Measure(3, 3, 0, 6, 0.0)
    scans = [snap(T0, accounts={"111": a, "222": b}, tags={"CostCenter": TagMeasure(6, 3)}),
             snap(T0 + timedelta(hours=1), accounts={"111": a})]  # 222 gone; CostCenter fixed
    [day] = group_snapshots(scans, "day")
    assert day.by_account["111"] == (a, 2)
    assert day.by_account["222"] == (b, 1)  # no resources in the second scan: not a zero
    tag, n = day.by_tag["CostCenter"]
    assert n == 2 and tag.violations == 3 and tag.resources == 1.5  # fixed in the second scan: a real 0


def test_trend_threshold_is_one_percentage_point() -> None:
    assert trend_of(("d1", 0.80, 5), ("d2", 0.80 + SCORE_THRESHOLD, 4), by="compliance_score").direction == "improving"
    assert trend_of(("d1", 0.80, 5), ("d2", 0.805, 4), by="compliance_score").direction == "stable"
    declining = trend_of(("d1", 0.80, 5), ("d2", 0.70, 9), by="compliance_score")
    assert declining.direction == "declining"
    assert declining.score_change == pytest.approx(-0.10) and declining.violations_change == 4
    assert trend_of(("d1", 0.8, 5), ("d1", 0.8, 5), by="compliance_score").direction == "insufficient_data"
    assert trend_of(None, None, by="compliance_score").direction == "insufficient_data"
    # Tag keys have no score: 5 % of the first value (and at least one violation).
    assert trend_of(("d1", None, 100), ("d2", None, 96), by="violations").direction == "stable"
    assert trend_of(("d1", None, 100), ("d2", None, 90), by="violations").direction == "improving"
    assert trend_of(("d1", None, 2), ("d2", None, 2.5), by="violations").direction == "stable"
    assert trend_of(("d1", None, 2), ("d2", None, 3), by="violations").direction == "declining"


measures = st.builds(
    lambda total, ins, comp, viol: Measure(total, min(ins, total), min(comp, ins, total), viol,
                                           1.0 if min(ins, total) == 0 else min(comp, ins, total) / min(ins, total)),
    st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 5000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60 * 24 * 40), measures), min_size=1, max_size=40),
       st.sampled_from(["day", "week", "month"]))
def test_grouping_never_inflates(points: list[tuple[int, Measure]], group_by: str) -> None:
    """Each period's numbers lie between the smallest and largest of its scans (a mean, never a sum), the
    scans are all counted once, and duplicating every scan changes nothing."""
    scans = [Snapshot(scan_id=str(i), at=T0 + timedelta(minutes=m), overall=ms) for i, (m, ms) in enumerate(points)]
    periods = group_snapshots(scans, group_by)  # type: ignore[arg-type]
    assert sum(p.scans for p in periods) == len(scans)
    assert [p.start for p in periods] == sorted({period_start(s.at, group_by) for s in scans})  # type: ignore[arg-type]
    for p in periods:
        members = [s.overall for s in scans if period_start(s.at, group_by) == p.start]  # type: ignore[arg-type]
        for attr in ("total", "in_scope", "compliant", "violations", "score"):
            values = [getattr(m, attr) for m in members]
            assert min(values) - 1e-9 <= getattr(p.overall, attr) <= max(values) + 1e-9, attr
    doubled = group_snapshots(scans + scans, group_by)  # type: ignore[arg-type]
    for a, b in zip(periods, doubled, strict=True):
        assert b.scans == 2 * a.scans
        assert b.overall.violations == pytest.approx(a.overall.violations)
        assert b.overall.score == pytest.approx(a.overall.score)


# ----------------------------------------------------------------------------------------------- drift

def test_diff_tags_reports_added_removed_changed_exactly() -> None:
    old = {"CostCenter": "Finance", "Owner": "a@example.com", "env": "prod", "Same": "x"}
    new = {"CostCenter": "Sales", "Owner": "a@example.com", "Env": "prod", "Same": "x", "Project": ""}
    assert diff_tags(old, new) == [
        ("CostCenter", "changed", "Finance", "Sales"),
        ("Env", "added", None, "prod"),
        ("Project", "added", None, ""),
        ("env", "removed", "prod", None),
    ]
    assert diff_tags(new, new) == []


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=8),
       st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=8))
def test_applying_the_diff_turns_old_into_new(old: dict[str, str], new: dict[str, str]) -> None:
    state = dict(old)
    for key, kind, before, after in diff_tags(old, new):
        assert state.get(key) == before
        if kind == "removed":
            del state[key]
        else:
            state[key] = after  # type: ignore[assignment]
    assert state == new


def test_classify_puts_compliance_first() -> None:
    assert classify("removed", "CostCenter", required=True, violation_before=None,
                    violation_after="missing_required_tag")[0] == "regression"
    # Removing a required tag that was already invalid still loses the tag.
    assert classify("removed", "CostCenter", required=True, violation_before="invalid_value",
                    violation_after="missing_required_tag")[0] == "regression"
    assert classify("changed", "Owner", required=True, violation_before=None,
                    violation_after="invalid_value")[0] == "regression"
    assert classify("added", "temp-debug", required=False, violation_before=None,
                    violation_after="prohibited_tag")[0] == "regression"
    impact, reason = classify("changed", "Environment", required=True, violation_before=None, violation_after=None)
    assert impact == "required_tag_changed" and "attribution" in reason
    assert classify("added", "CostCenter", required=True, violation_before="missing_required_tag",
                    violation_after=None)[0] == "improvement"
    assert classify("added", "Project", required=False, violation_before=None, violation_after=None)[0] == "neutral"
