"""The latest-state writes of a shard, on SQLite and PostgreSQL: services.db.engine.upsert_rows (one JSON
document unpacked by json_to_recordset on PostgreSQL, an executemany on SQLite; both must store the same
thing) and services.scans._forget_unseen (which rows a shard's complete listing proves gone)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from services.db.engine import Database, upsert_rows
from services.db.migrate import upgrade
from services.db.models import ResourceRow

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'upsert.db'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")
    upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def _row(arn: str, tags: dict[str, Any], seen: datetime, **extra: Any) -> dict[str, Any]:
    return {"arn": arn, "resource_id": arn.rsplit("/", 1)[-1], "resource_type": "ec2:volume",
            "account_id": "111111111111", "region": "eu-west-1", "name": extra.pop("name", None), "tags": tags,
            "first_seen": seen, "last_seen": seen, **extra}


def _stored(db: Database) -> dict[str, ResourceRow]:
    with db.session() as s:
        return {r.arn: r for r in s.scalars(select(ResourceRow))}


def test_values_round_trip_with_their_types(db: Database) -> None:
    awkward = {"Name": 'quote " backslash \\ newline \n', "Owner": "équipe-données ✓", "Empty": ""}
    with db.session() as s:
        upsert_rows(s, ResourceRow, [
            _row("arn:aws:ec2:eu-west-1:111111111111:volume/vol-1", awkward, T0, name="it's mine",
                 previous_tags=None, attributes={"size_gb": 8, "encrypted": True, "kms": None}),
        ], ["arn"])
    row = _stored(db)["arn:aws:ec2:eu-west-1:111111111111:volume/vol-1"]
    assert row.tags == awkward
    assert row.name == "it's mine"
    assert row.attributes == {"size_gb": 8, "encrypted": True, "kms": None}
    assert row.previous_tags is None
    # Same instant (SQLite keeps no offset: compare as UTC).
    assert row.first_seen.replace(tzinfo=row.first_seen.tzinfo or UTC) == T0


def test_conflict_overwrites_all_but_keep(db: Database) -> None:
    arn = "arn:aws:ec2:eu-west-1:111111111111:volume/vol-2"
    with db.session() as s:
        upsert_rows(s, ResourceRow, [_row(arn, {"env": "dev"}, T0)], ["arn"], keep=("first_seen",))
    later = T0 + timedelta(days=1)
    with db.session() as s:
        upsert_rows(s, ResourceRow, [_row(arn, {"env": "prod"}, later, name="renamed")], ["arn"],
                    keep=("first_seen",))
    row = _stored(db)[arn]
    assert row.tags == {"env": "prod"} and row.name == "renamed"
    assert row.first_seen.replace(tzinfo=UTC) == T0  # kept
    assert row.last_seen.replace(tzinfo=UTC) == later  # overwritten


def test_a_key_twice_in_one_batch_keeps_the_last_row(db: Database) -> None:
    arn = "arn:aws:ec2:eu-west-1:111111111111:volume/vol-3"
    with db.session() as s:
        upsert_rows(s, ResourceRow, [_row(arn, {"v": "1"}, T0), _row(arn, {"v": "2"}, T0)], ["arn"])
    stored = _stored(db)
    assert len(stored) == 1 and stored[arn].tags == {"v": "2"}


def test_columns_left_out_get_the_model_defaults(db: Database) -> None:
    arn = "arn:aws:ec2:eu-west-1:111111111111:volume/vol-4"
    with db.session() as s:
        upsert_rows(s, ResourceRow, [_row(arn, {}, T0)], ["arn"])  # no attributes: default dict -> {}
    assert _stored(db)[arn].attributes == {}


def test_many_rows_in_one_call(db: Database) -> None:
    rows = [_row(f"arn:aws:ec2:eu-west-1:111111111111:volume/vol-{i:04d}", {"i": str(i)}, T0) for i in range(1200)]
    with db.session() as s:
        upsert_rows(s, ResourceRow, rows, ["arn"])
    stored = _stored(db)
    assert len(stored) == 1200
    assert stored["arn:aws:ec2:eu-west-1:111111111111:volume/vol-0777"].tags == {"i": "777"}


def test_a_value_json_cannot_hold_is_refused_before_anything_is_written(db: Database) -> None:
    class Opaque:
        pass

    # SQLite's executemany wraps the TypeError in a StatementError.
    with pytest.raises((TypeError, StatementError), match="Opaque"), db.session() as s:
        upsert_rows(s, ResourceRow, [_row("arn:aws:ec2:eu-west-1:111111111111:volume/vol-5", {}, T0,
                                          attributes={"x": Opaque()})], ["arn"])
    assert _stored(db) == {}


# ------------------------------------------------------------------- resources gone from the latest state

def _forget(db: Database, scope: Any, failed: set[str], at: datetime) -> set[str]:
    from services.scans import _forget_unseen

    with db.session() as s:
        _forget_unseen(s, scope, failed, at)
    return set(_stored(db))


def test_only_completely_listed_types_in_the_shards_scope_are_forgotten(db: Database) -> None:
    from services.scans import ShardScope

    def arn(kind: str, region: str, name: str, account: str = "111111111111") -> str:
        return f"arn:aws:{kind}:{region}:{account}:{name}"

    rows = [
        {**_row(arn("ec2", "eu-west-1", "volume/old"), {}, T0), "resource_type": "ec2:volume"},
        {**_row(arn("sqs", "eu-west-1", "old-queue"), {}, T0), "resource_type": "sqs:queue"},
        {**_row(arn("ec2", "us-east-1", "volume/elsewhere"), {}, T0), "region": "us-east-1"},
        {**_row(arn("ec2", "eu-west-1", "volume/other-account", "222222222222"), {}, T0),
         "account_id": "222222222222"},
        {**_row(arn("ec2", "eu-west-1", "volume/seen-now"), {}, T0 + timedelta(hours=1))},
        {**_row(arn("ec2", "eu-west-1", "volume/seen-by-newer"), {}, T0 + timedelta(hours=2))},
        {**_row(arn("s3", "", "bucket-eu"), {}, T0), "resource_type": "s3:bucket"},
        {**_row(arn("s3", "", "bucket-us"), {}, T0), "resource_type": "s3:bucket", "region": "us-east-1"},
    ]
    with db.session() as s:
        upsert_rows(s, ResourceRow, rows, ["arn"])
    now = T0 + timedelta(hours=1)
    regional = ShardScope("111111111111", "eu-west-1", ("ec2:volume", "sqs:queue"))
    # SQS failed in this shard: its listing proves nothing; the volume nobody saw since T0 is gone.
    left = _forget(db, regional, {"sqs:queue"}, now)
    assert arn("ec2", "eu-west-1", "volume/old") not in left
    assert {arn("sqs", "eu-west-1", "old-queue"), arn("ec2", "us-east-1", "volume/elsewhere"),
            arn("ec2", "eu-west-1", "volume/other-account", "222222222222"),
            arn("ec2", "eu-west-1", "volume/seen-now"), arn("ec2", "eu-west-1", "volume/seen-by-newer")} <= left
    # A global shard whose scan kept only eu-west-1: the us-east-1 bucket was not looked at.
    left = _forget(db, ShardScope("111111111111", "global", ("s3:bucket",), frozenset({"eu-west-1", "global"})),
                   set(), now)
    assert arn("s3", "", "bucket-eu") not in left and arn("s3", "", "bucket-us") in left
    # Every type failed: nothing is forgotten.
    assert _forget(db, regional, {"ec2:volume", "sqs:queue"}, now) == left
