"""Beat's daily snapshot runs at FINOPS_SNAPSHOT_TIME in FINOPS_SNAPSHOT_TIMEZONE (02:00 UTC by default);
bad values are refused with a message naming the variable."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.config import Settings, get_settings
from services.errors import InvalidInput
from workers.app import create_app


def _entry(settings: Settings) -> dict[str, object]:
    entry: dict[str, object] = create_app(settings).conf.beat_schedule["daily-compliance-snapshot"]
    return entry


def test_default_is_0200_utc(tmp_path: Path) -> None:
    entry = _entry(Settings(home=tmp_path))
    assert entry["task"] == "scan.scheduled_snapshot"
    schedule = entry["schedule"]
    assert (schedule.cron, schedule.zone) == ("0 2 * * *", "UTC")  # type: ignore[attr-defined]


def test_configured_time_is_when_beat_fires(tmp_path: Path) -> None:
    schedule = _entry(Settings(home=tmp_path, snapshot_time="7:45"))["schedule"]
    assert schedule.cron == "45 7 * * *"  # type: ignore[attr-defined]
    last_run = datetime(2026, 11, 4, 7, 45, tzinfo=UTC)
    schedule.nowfun = lambda: datetime(2026, 11, 5, 7, 44, tzinfo=UTC)  # type: ignore[attr-defined]
    assert not schedule.is_due(last_run).is_due  # type: ignore[attr-defined]
    schedule.nowfun = lambda: datetime(2026, 11, 5, 7, 45, 5, tzinfo=UTC)  # type: ignore[attr-defined]
    assert schedule.is_due(last_run).is_due  # type: ignore[attr-defined]


def test_time_zone_is_honoured_across_daylight_saving(tmp_path: Path) -> None:
    schedule = _entry(Settings(home=tmp_path, snapshot_time="02:00", snapshot_timezone="Europe/Paris"))["schedule"]
    # 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
    schedule.nowfun = lambda: datetime(2026, 1, 15, 1, 0, 5, tzinfo=UTC)  # type: ignore[attr-defined]
    assert schedule.is_due(datetime(2026, 1, 14, 1, 0, tzinfo=UTC)).is_due  # type: ignore[attr-defined]
    schedule.nowfun = lambda: datetime(2026, 7, 15, 0, 0, 5, tzinfo=UTC)  # type: ignore[attr-defined]
    assert schedule.is_due(datetime(2026, 7, 14, 0, 0, tzinfo=UTC)).is_due  # type: ignore[attr-defined]
    schedule.nowfun = lambda: datetime(2026, 7, 14, 23, 59, tzinfo=UTC)  # type: ignore[attr-defined]
    assert not schedule.is_due(datetime(2026, 7, 14, 0, 0, tzinfo=UTC)).is_due  # type: ignore[attr-defined]
    # beat stores its entries pickled: the zone survives.
    again = pickle.loads(pickle.dumps(schedule))
    assert (again.cron, again.zone) == ("0 2 * * *", "Europe/Paris")


@pytest.mark.parametrize("value", ["24:00", "2", "02:60", "two", "02:00:00", ""])
def test_invalid_time_is_refused_with_the_variable_named(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError, match="FINOPS_SNAPSHOT_TIME must be HH:MM"):
        Settings(home=tmp_path, snapshot_time=value)


def test_invalid_zone_and_environment_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="FINOPS_SNAPSHOT_TIMEZONE must be an IANA time zone"):
        Settings(home=tmp_path, snapshot_timezone="Mars/Olympus")
    monkeypatch.setenv("FINOPS_SNAPSHOT_TIME", "25:00")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidInput, match="FINOPS_SNAPSHOT_TIME must be HH:MM") as err:
            get_settings()
        assert err.value.field == "environment"
    finally:
        get_settings.cache_clear()
