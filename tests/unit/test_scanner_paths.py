"""Registry paths: the plain-field fast path answers exactly what JMESPath answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jmespath
from hypothesis import given
from hypothesis import strategies as st

from scanner.providers.aws.collectors import _compiled_path, _search
from scanner.providers.aws.registry import all_types, get

KEYS = st.sampled_from(["Id", "State", "Name", "Tags", "a", "b_2"])
JSON: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@given(data=JSON, keys=st.lists(KEYS, min_size=1, max_size=3))
def test_plain_paths_match_jmespath(data: Any, keys: list[str]) -> None:
    path = ".".join(keys)
    assert _search(path, data) == jmespath.search(path, data)
    assert _search("@", data) == jmespath.search("@", data)


def test_other_expressions_go_to_jmespath() -> None:
    page = {"Reservations": [{"Instances": [{"InstanceId": "i-1"}, {"InstanceId": "i-2"}]}, {"Instances": []}],
            "Tags": [{"Key": "Name", "Value": "web"}]}
    assert _search("Reservations[].Instances[].InstanceId", page) == ["i-1", "i-2"]
    assert _search("Tags[?Key=='Name'].Value | [0]", page) == "web"
    assert _search("Reservations[0].Instances[1].InstanceId", page) == "i-2"


def test_every_registry_path_compiles() -> None:
    # Each resource type's paths are compiled (plain or JMESPath) without error, once each.
    for rtype in all_types():
        info = get(rtype)
        for path in (info.id_field, info.name_field, info.arn_field, info.listing.items_path):
            if path:
                assert callable(_compiled_path(path))


# AWS sends UTC ("Z") or whole-minute offsets; dateutil, botocore's parser, rejects second-level offsets.
@given(moment=st.datetimes(min_value=datetime(1970, 1, 2), timezones=st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])))
def test_fast_timestamps_equal_botocores(moment: Any) -> None:
    from botocore.utils import parse_timestamp

    from scanner.providers.aws.session import parse_aws_timestamp

    for text in (moment.isoformat(), moment.isoformat(timespec="milliseconds"),
                 moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")):
        assert parse_aws_timestamp(text) == parse_timestamp(text)


def test_other_timestamp_forms_are_botocores() -> None:
    from botocore.utils import parse_timestamp

    from scanner.providers.aws.session import parse_aws_timestamp

    for value in (1700000000, 1700000000.5, "Tue, 14 Nov 2023 22:13:20 GMT", "2023-11-14T22:13:20"):
        assert parse_aws_timestamp(value) == parse_timestamp(value)
        assert parse_aws_timestamp(value).tzinfo is not None or parse_timestamp(value).tzinfo is None
