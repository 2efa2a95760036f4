"""Wildcard values, whole-value regexes and "did you mean" suggestions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.matching import (
    ValueMatcher,
    WildcardPattern,
    closest_key,
    closest_value,
    count_wildcards,
    format_matches,
    suggest_format_fix,
    wildcard_match,
)

text = st.text(max_size=20)
no_star = st.text(alphabet=st.characters(blacklist_characters="*"), max_size=12)


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("prod*", "production", True),
    ("prod*", "prod", True),
    ("prod*", "pro", False),
    ("prod*", "xprod", False),
    ("*@example.com", "alice@example.com", True),
    ("*@example.com", "@example.com", True),
    ("*@example.com", "alice@example.org", False),
    ("300*", "3001", True),
    ("300*", "30", False),
    ("a*z", "az", True),
    ("a*z", "abcz", True),
    ("a*z", "abc", False),
    ("ab*ba", "aba", False),  # prefix and suffix may not overlap
    ("ab*ba", "abba", True),
    ("*", "", True),
    ("*", "anything at all", True),
    ("exact", "exact", True),
    ("exact", "Exact", False),
    ("exact", "exactly", False),
])
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


def test_wildcard_case_insensitive() -> None:
    assert wildcard_match("Temp*", "TEMPORARY", case_sensitive=False)
    assert not wildcard_match("Temp*", "TEMPORARY")


def test_wildcard_pattern_refuses_two_stars() -> None:
    with pytest.raises(ValueError, match="at most one"):
        WildcardPattern("*@*.com")
    assert count_wildcards("*@*.com") == 2


@given(text)
def test_star_alone_accepts_any_text(value: str) -> None:
    assert wildcard_match("*", value)
    assert ValueMatcher(["*"]).matches(value)


@given(no_star, text)
def test_prefix_star_accepts_exactly_strings_starting_with_prefix(prefix: str, value: str) -> None:
    assert wildcard_match(prefix + "*", value) is value.startswith(prefix)
    assert wildcard_match(prefix + "*", prefix + value)


@given(no_star, text)
def test_star_suffix_accepts_exactly_strings_ending_with_suffix(suffix: str, value: str) -> None:
    assert wildcard_match("*" + suffix, value) is value.endswith(suffix)


@given(no_star, no_star, text)
def test_infix_star_agrees_with_a_regex(prefix: str, suffix: str, value: str) -> None:
    regex = re.compile(re.escape(prefix) + ".*" + re.escape(suffix), re.DOTALL)
    assert wildcard_match(f"{prefix}*{suffix}", value) is (regex.fullmatch(value) is not None)


@given(no_star, text)
def test_literal_matches_only_itself(literal: str, value: str) -> None:
    assert wildcard_match(literal, value) is (literal == value)


def test_value_matcher_mixes_literals_and_wildcards() -> None:
    m = ValueMatcher(["production", "staging", "dev*", "*-sandbox"])
    assert m.matches("production") and m.matches("dev") and m.matches("dev-eu") and m.matches("x-sandbox")
    assert not m.matches("Production") and not m.matches("test") and not m.matches("sandbox")


def test_value_matcher_case_insensitive() -> None:
    m = ValueMatcher(["Production", "Dev*"], case_sensitive=False)
    assert m.matches("PRODUCTION") and m.matches("development") and not m.matches("prod")


def test_value_matcher_empty_list_matches_nothing() -> None:
    assert not ValueMatcher([]).matches("")


def test_regex_must_match_the_whole_value() -> None:
    assert format_matches(re.compile("PRJ-[0-9]{4}"), "PRJ-0042")
    assert not format_matches(re.compile("PRJ-[0-9]{4}"), "PRJ-00421")
    assert not format_matches(re.compile("PRJ-[0-9]{4}"), "xPRJ-0042")
    # An anchored pattern written for re.match still works, and $ does not let a newline through.
    assert format_matches(re.compile("^PRJ-[0-9]{4}$"), "PRJ-0042")
    assert not format_matches(re.compile("^PRJ-[0-9]{4}$"), "PRJ-0042\n")


ENVIRONMENTS = ["production", "staging", "development", "test"]
COST_CENTERS = ["Engineering", "Marketing", "Sales", "Operations", "Finance", "Data"]


@pytest.mark.parametrize(("value", "allowed", "expected"), [
    ("prod", ENVIRONMENTS, "production"),
    ("Production", ENVIRONMENTS, "production"),
    ("PRODUCTION", ENVIRONMENTS, "production"),
    ("dev", ENVIRONMENTS, "development"),
    ("stg", ENVIRONMENTS, "staging"),
    ("prd", ENVIRONMENTS, "production"),
    ("tset", ENVIRONMENTS, "test"),
    ("production-eu", ENVIRONMENTS, "production"),
    ("Enginering", COST_CENTERS, "Engineering"),
    ("engineering", COST_CENTERS, "Engineering"),
    ("Finanse", COST_CENTERS, "Finance"),
    ("Marketting", COST_CENTERS, "Marketing"),
    ("R&D", COST_CENTERS, None),
    ("xyz", ENVIRONMENTS, None),
    ("", ENVIRONMENTS, None),
    ("qa", ENVIRONMENTS, None),
])
def test_closest_value(value: str, allowed: list[str], expected: str | None) -> None:
    assert closest_value(value, allowed) == expected


def test_closest_value_never_offers_a_wildcard() -> None:
    assert closest_value("alice@example.org", ["*@example.com"]) is None
    assert closest_value("prod", ["prod*", "production"]) == "production"


@pytest.mark.parametrize(("key", "candidates", "expected"), [
    ("CostCenter", ["cost_center", "Name"], "cost_center"),
    ("CostCenter", ["Cost-Center"], "Cost-Center"),
    ("CostCenter", ["COSTCENTER"], "COSTCENTER"),
    ("CostCenter", ["CostCentre"], "CostCentre"),
    ("Environment", ["Env", "Name"], "Env"),
    ("Environment", ["Enviroment"], "Enviroment"),
    ("Owner", ["owner_email"], "owner_email"),
    ("Owner", ["Name", "Team"], None),
    ("Owner", [], None),
])
def test_closest_key(key: str, candidates: list[str], expected: str | None) -> None:
    assert closest_key(key, candidates) == expected


@pytest.mark.parametrize(("value", "pattern", "expected"), [
    ("My App", "[a-z][a-z0-9-]{2,63}", "my-app"),
    (" web-api ", "[a-z][a-z0-9-]{2,63}", "web-api"),
    ("prj-0042", "PRJ-[0-9]{4}", "PRJ-0042"),
    ("my_app", "[a-z][a-z0-9-]{2,63}", "my-app"),
    ("!!!", "[a-z]+", None),
])
def test_suggest_format_fix(value: str, pattern: str, expected: str | None) -> None:
    assert suggest_format_fix(value, re.compile(pattern)) == expected
