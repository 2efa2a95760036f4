"""Exemptions: loading and its errors, matching, what is waived, expiry by ``as_of``, and their lint codes.

The semantics pinned here are the ones stated in the docstrings of ``policies.policy.Exemption``,
``policies.exemptions`` and ``policies.engine`` (the "Exemptions" item), plus ``GlobPattern``.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import policies.lint as lint_module
from policies.engine import CompiledPolicy, compile_policy, evaluate, evaluate_resource
from policies.exemptions import CompiledExemption, ExemptionIndex
from policies.lint import LintFinding, lint_policy
from policies.matching import GlobPattern
from policies.models import Resource, Severity, Violation, ViolationType
from policies.policy import Exemption, Policy, PolicyError, load_policy
from scanner.providers.aws.registry import all_types

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
EXPIRES = date(2025, 6, 30)
DAY = timedelta(days=1)

BASE: dict[str, Any] = {
    "required_tags": [
        {"name": "CostCenter", "allowed_values": ["Engineering", "Sales"]},
        {"name": "Environment", "allowed_values": ["production", "staging"]},
    ],
    "optional_tags": [{"name": "Project", "validation_regex": "PRJ-[0-9]{4}"}],
    "prohibited_tags": ["temp*"],
    "tag_naming_rules": {"case_sensitivity": True, "allow_special_characters": False},
}
GOOD = {"CostCenter": "Engineering", "Environment": "production"}


def exemption(ident: str = "EXC-1", **fields: Any) -> dict[str, Any]:
    """An exemption dict; targets the test account unless another criterion is given."""
    targets = ("arn_patterns", "accounts", "resource_types", "tag_conditions")
    if not any(key in fields for key in targets):
        fields["accounts"] = [ACCOUNT]
    return {"id": ident, "reason": "TICKET-1 legacy fleet", "expires": EXPIRES.isoformat(), **fields}


def load(*exemptions: dict[str, Any], **policy: Any) -> Policy:
    return load_policy({**BASE, **policy, "exemptions": list(exemptions)})


def compiled(*exemptions: dict[str, Any], as_of: date | None = None, **policy: Any) -> CompiledPolicy:
    return compile_policy(load(*exemptions, **policy), as_of)


def res(tags: dict[str, str], rtype: str = "ec2:instance", account: str = ACCOUNT,
        arn: str | None = None) -> Resource:
    arn = arn or f"arn:aws:ec2:us-east-1:{account}:instance/i-0001"
    return Resource(arn=arn, resource_id=arn.rsplit("/", 1)[-1], resource_type=rtype, account_id=account,
                    region="us-east-1", tags=tags)


def ids(vs: tuple[Violation, ...] | list[Violation]) -> list[str]:
    return [v.rule_id for v in vs]


def problems_of(data: Any) -> dict[str, str]:
    """Load ``data`` expecting failure; map location -> message."""
    with pytest.raises(PolicyError) as info:
        load_policy(data)
    return {p.location: p.message for p in info.value.problems}


def exemption_problems(*exemptions: dict[str, Any]) -> dict[str, str]:
    return problems_of({**BASE, "exemptions": list(exemptions)})


# --- loading ----------------------------------------------------------------------------------------


def test_exemption_loads_every_field() -> None:
    policy = load(exemption(arn_patterns=["arn:aws:s3:::legacy-*"], accounts=[ACCOUNT, OTHER_ACCOUNT],
                            resource_types=["s3:bucket", "ec2:*"], tag_conditions={"legacy": "yes*"},
                            tags=["CostCenter"], approved_by="CFO, 2025-01-02"))
    (e,) = policy.exemptions
    assert e.id == "EXC-1" and e.reason == "TICKET-1 legacy fleet"
    assert e.expires == date(2025, 6, 30) and type(e.expires) is date
    assert e.arn_patterns == ["arn:aws:s3:::legacy-*"]
    assert e.accounts == [ACCOUNT, OTHER_ACCOUNT]
    assert e.resource_types == ["s3:bucket", "ec2:*"]
    assert e.tag_conditions == {"legacy": "yes*"}
    assert e.tags == ["CostCenter"]
    assert e.approved_by == "CFO, 2025-01-02"


def test_null_lists_become_empty_and_blank_approver_is_none() -> None:
    (e,) = load(exemption(accounts=[ACCOUNT], arn_patterns=None, resource_types=None, tag_conditions=None,
                          tags=None, approved_by="  ")).exemptions
    assert (e.arn_patterns, e.resource_types, e.tag_conditions, e.tags) == ([], [], {}, [])
    assert e.approved_by is None


def test_expires_accepts_a_date_object_and_surrounding_spaces() -> None:
    assert load(exemption(expires=date(2026, 1, 31))).exemptions[0].expires == date(2026, 1, 31)
    assert load(exemption(expires=" 2026-01-31 ")).exemptions[0].expires == date(2026, 1, 31)


@pytest.mark.parametrize(("key", "hint"), [
    ("id", 'add "id": a short stable name reports use to refer to the exemption'),
    ("reason", 'add "reason": why these resources are exempt (ticket, risk acceptance)'),
    ("expires", 'every exemption needs an end date: add "expires": "YYYY-MM-DD" (the last day it applies)'),
])
def test_missing_required_key_names_the_path_and_what_to_add(key: str, hint: str) -> None:
    item = exemption()
    del item[key]
    found = exemption_problems(exemption("EXC-0"), item)
    assert list(found) == [f"exemptions[1].{key}"]
    assert found[f"exemptions[1].{key}"].startswith("required key is missing; " + hint)


def test_null_expires_says_an_end_date_is_needed() -> None:
    found = exemption_problems(exemption(expires=None))
    assert found == {"exemptions[0].expires": 'every exemption needs an end date: add "expires": "YYYY-MM-DD" (the '
                                              "last day it applies); an exemption without one would waive the rule "
                                              "forever"}


@pytest.mark.parametrize(("value", "message"), [
    ("2025-6-30", "expires must be an ISO date 'YYYY-MM-DD' such as '2025-12-31', got '2025-6-30'"),
    ("30/06/2025", "expires must be an ISO date 'YYYY-MM-DD' such as '2025-12-31', got '30/06/2025'"),
    ("2025-06-30T00:00:00", "expires must be an ISO date 'YYYY-MM-DD' such as '2025-12-31', got "
                            "'2025-06-30T00:00:00'"),
    ("2025-02-30", "'2025-02-30' is not a day of the calendar; fix the month or the day"),
    ("2025-13-01", "'2025-13-01' is not a day of the calendar; fix the month or the day"),
    (20250630, "expires must be an ISO date string 'YYYY-MM-DD' such as '2025-12-31', got 20250630"),
    (True, "expires must be an ISO date string 'YYYY-MM-DD' such as '2025-12-31', got true"),
])
def test_bad_expires_says_how_to_write_it(value: Any, message: str) -> None:
    assert exemption_problems(exemption(expires=value)) == {"exemptions[0].expires": message}


def test_expires_with_a_time_is_refused_with_the_day_to_use() -> None:
    found = exemption_problems(exemption(expires=datetime(2025, 6, 30, 12, 0)))
    assert found == {"exemptions[0].expires": "expires must be a date without a time, e.g. '2025-06-30'"}


def test_exemption_must_name_what_it_covers() -> None:
    item = {"id": "EXC-1", "reason": "r", "expires": "2025-06-30", "tags": ["CostCenter"]}
    found = exemption_problems(item)
    assert list(found) == ["exemptions[0]"]
    assert found["exemptions[0]"].startswith("the exemption matches every resource; say which resources it covers")
    assert "arn_patterns, accounts, resource_types or tag_conditions" in found["exemptions[0]"]
    # Empty criteria are no criteria.
    assert list(exemption_problems({**item, "accounts": [], "tag_conditions": {}})) == ["exemptions[0]"]


@pytest.mark.parametrize(("fields", "location", "message"), [
    ({"id": ""}, "exemptions[0].id", "id must not be empty; give a short stable name such as 'EXC-2024-017'"),
    ({"id": " EXC-1"}, "exemptions[0].id", "id ' EXC-1' has leading or trailing spaces; remove them"),
    ({"reason": "  "}, "exemptions[0].reason",
     "must not be empty; say why the resources are exempt (ticket, risk acceptance)"),
    ({"accounts": [111122223333]}, "exemptions[0].accounts[0]",
     'account id 111122223333 must be a string ("111122223333"), so leading zeros are kept'),
    ({"accounts": ["1111-2222-3333"]}, "exemptions[0].accounts[0]",
     "account id '1111-2222-3333' must be the 12 digits of an AWS account, e.g. '123456789012'; "
     "did you mean '111122223333'?"),
    ({"accounts": ["12345"]}, "exemptions[0].accounts[0]",
     "account id '12345' must be the 12 digits of an AWS account, e.g. '123456789012'"),
    ({"arn_patterns": ["*"]}, "exemptions[0].arn_patterns[0]",
     "ARN pattern '*' matches every resource; name the resources it is for, e.g. 'arn:aws:s3:::legacy-*' or "
     "'arn:aws:ec2:*:123456789012:instance/*'"),
    ({"arn_patterns": ["**"]}, "exemptions[0].arn_patterns[0]",
     "ARN pattern '**' matches every resource; name the resources it is for, e.g. 'arn:aws:s3:::legacy-*' or "
     "'arn:aws:ec2:*:123456789012:instance/*'"),
    ({"arn_patterns": [" "]}, "exemptions[0].arn_patterns[0]", "ARN pattern must not be empty"),
    ({"arn_patterns": ["arn:aws:s3:::x "]}, "exemptions[0].arn_patterns[0]",
     "ARN pattern 'arn:aws:s3:::x ' has leading or trailing spaces; remove them"),
    ({"resource_types": ["EC2:instance"]}, "exemptions[0].resource_types[0]",
     "resource type 'EC2:instance' must look like 'service:resource' with a lowercase service, e.g. "
     "'ec2:instance' or 's3:bucket'; did you mean 'ec2:instance'?"),
    ({"tags": ["Cost*"]}, "exemptions[0].tags[0]",
     "tag name 'Cost*' contains '*'; tag names are literal keys, not patterns"),
    ({"tag_conditions": {"legacy": "a*b*"}}, "exemptions[0].tag_conditions.legacy",
     "allowed value 'a*b*' holds 2 '*' wildcards; AWS allows one '*' per value (e.g. 'prod*' or "
     "'*@example.com'), and '*' alone allows any value"),
    ({"tag_conditions": {"aws:stack": "*"}}, "exemptions[0].tag_conditions.aws:stack",
     "tag name 'aws:stack' uses the prefix 'aws:', which AWS reserves for its own tags"),
    ({"approved_by": 7}, "exemptions[0].approved_by", "must be a string, got 7"),
    ({"tagz": ["CostCenter"]}, "exemptions[0].tagz", "unknown key; did you mean 'tags'?"),
])
def test_bad_field_is_reported_at_its_path(fields: dict[str, Any], location: str, message: str) -> None:
    assert exemption_problems(exemption(**fields)) == {location: message}


def test_every_problem_of_an_exemption_is_reported_at_once() -> None:
    found = exemption_problems(exemption(reason="", expires="2025-02-30", accounts=["1"], tags=["a*"]))
    assert sorted(found) == ["exemptions[0].accounts[0]", "exemptions[0].expires", "exemptions[0].reason",
                             "exemptions[0].tags[0]"]


def test_duplicate_exemption_ids_are_refused() -> None:
    found = exemption_problems(exemption("EXC-1"), exemption("EXC-2"), exemption("EXC-1"))
    assert found == {"exemptions[2].id": "exemption id 'EXC-1' is already used by exemptions[0]; ids must be "
                                         "unique so reports can tell them apart"}


def test_exemption_problems_carry_the_line_of_the_text() -> None:
    text = json.dumps({**BASE, "exemptions": [exemption(), exemption("EXC-2", expires="soon")]}, indent=2)
    with pytest.raises(PolicyError) as info:
        load_policy(text, source="policy.json")
    (problem,) = info.value.problems
    assert problem.location == "exemptions[1].expires"
    lines = text.splitlines()
    assert problem.line is not None and '"expires": "soon"' in lines[problem.line - 1]
    assert "policy.json" in str(info.value)


def test_policy_built_in_code_also_refuses_duplicate_ids() -> None:
    e = Exemption(id="EXC-1", reason="r", expires=EXPIRES, accounts=[ACCOUNT])
    with pytest.raises(ValueError, match=r"exemptions\[1\]\.id: exemption id 'EXC-1' is already used"):
        Policy(exemptions=[e, e])


def test_active_on_is_inclusive_of_the_expires_day() -> None:
    (e,) = load(exemption()).exemptions
    assert e.active_on(EXPIRES - DAY) and e.active_on(EXPIRES)
    assert not e.active_on(EXPIRES + DAY)
    assert e.active_on(None)
    # A datetime counts by its day, at any hour.
    assert e.active_on(datetime(2025, 6, 30, 23, 59, 59))
    assert not e.active_on(datetime(2025, 7, 1, 0, 0))


def test_waives_tag_lists_the_tags_or_all() -> None:
    only, every = load(exemption("A", tags=["CostCenter"]), exemption("B")).exemptions
    assert only.waives_tag("CostCenter") and not only.waives_tag("Environment")
    assert not only.waives_tag("costcenter")  # names are exact
    assert every.waives_tag("Environment") and every.waives_tag("anything")


# --- matching: each criterion, and AND across criteria -------------------------------------------------

S3_ARN = "arn:aws:s3:::legacy-logs"


@pytest.mark.parametrize(("criterion", "matched", "unmatched"), [
    ({"arn_patterns": ["arn:aws:s3:::legacy-*"]},
     res({}, "s3:bucket", arn=S3_ARN),
     res({}, "s3:bucket", arn="arn:aws:s3:::Legacy-logs")),  # ARNs compare case-sensitively
    ({"arn_patterns": ["arn:aws:s3:::legacy-*"]},
     res({}, "s3:bucket", arn="arn:aws:s3:::legacy-"),
     res({}, "s3:bucket", arn="arn:aws:s3:::old-legacy-logs")),  # the whole ARN must match
    ({"arn_patterns": ["arn:aws:ec2:*:111122223333:instance/*"]},
     res({}, arn="arn:aws:ec2:eu-west-1:111122223333:instance/i-9"),
     res({}, arn="arn:aws:ec2:eu-west-1:444455556666:instance/i-9")),
    ({"arn_patterns": ["arn:aws:s3:::a", "arn:aws:s3:::b?"]},  # any pattern of the list; '?' is literal
     res({}, "s3:bucket", arn="arn:aws:s3:::b?"),
     res({}, "s3:bucket", arn="arn:aws:s3:::bc")),
    ({"accounts": [OTHER_ACCOUNT, ACCOUNT]},
     res({}),
     res({}, account="555566667777")),
    ({"resource_types": ["ec2:*"]},
     res({}, "ec2:volume"),
     res({}, "s3:bucket")),
    ({"resource_types": ["ec2:instance"]},
     res({}, "EC2:Instance"),  # types compare ignoring case, as applies_to does
     res({}, "ec2:volume")),
    ({"tag_conditions": {"legacy": "yes"}},
     res({"legacy": "yes"}),
     res({"legacy": "Yes"})),
    ({"tag_conditions": {"legacy": "*"}},  # '*' alone only asks for the key, an empty value included
     res({"legacy": ""}),
     res({"Legacy": "yes"})),
    ({"tag_conditions": {"owner": "*@example.com"}},
     res({"owner": "ops@example.com"}),
     res({"owner": "ops@example.org"})),
    ({"tag_conditions": {"legacy": "yes", "team": "data"}},  # every condition must hold
     res({"legacy": "yes", "team": "data"}),
     res({"legacy": "yes", "team": "web"})),
])
def test_each_criterion_matches_on_its_own(criterion: dict[str, Any], matched: Resource,
                                           unmatched: Resource) -> None:
    compiled_policy = compiled(exemption(**criterion))
    assert [e.id for e in compiled_policy.matching_exemptions(matched)] == ["EXC-1"]
    assert compiled_policy.matching_exemptions(unmatched) == ()
    # And the match decides the waiver: both resources miss every required tag.
    assert evaluate_resource(matched, compiled_policy).compliant_by_exemption
    assert ids(evaluate_resource(unmatched, compiled_policy).violations) == [
        "missing_required_tag:CostCenter", "missing_required_tag:Environment"]


ALL_CRITERIA = exemption(arn_patterns=["arn:aws:ec2:*:111122223333:instance/legacy-*"], accounts=[ACCOUNT],
                         resource_types=["ec2:instance"], tag_conditions={"legacy": "yes"})
FITS_ALL: dict[str, Any] = {"arn": "arn:aws:ec2:us-east-1:111122223333:instance/legacy-7", "rtype": "ec2:instance",
            "account": ACCOUNT, "tags": {"legacy": "yes"}}


@pytest.mark.parametrize(("criterion", "change"), [
    ("arn_patterns", {"arn": "arn:aws:ec2:us-east-1:111122223333:instance/new-7"}),
    ("accounts", {"account": OTHER_ACCOUNT}),
    ("resource_types", {"rtype": "ec2:volume"}),
    ("tag_conditions", {"tags": {"legacy": "no"}}),
])
def test_criteria_combine_with_and(criterion: str, change: dict[str, Any]) -> None:
    compiled_policy = compiled(ALL_CRITERIA)
    everything = res(FITS_ALL["tags"], FITS_ALL["rtype"], FITS_ALL["account"], FITS_ALL["arn"])
    assert [e.id for e in compiled_policy.matching_exemptions(everything)] == ["EXC-1"]
    fields = {**FITS_ALL, **change}
    one_off = res(fields["tags"], fields["rtype"], fields["account"], fields["arn"])
    assert compiled_policy.matching_exemptions(one_off) == ()
    ev = evaluate_resource(one_off, compiled_policy)
    assert ev.waived == () and ev.exempted_by == () and not ev.compliant


def test_tag_conditions_ignore_case_when_case_sensitivity_is_false() -> None:
    insensitive = {**BASE["tag_naming_rules"], "case_sensitivity": False}
    item = exemption(tag_conditions={"Legacy": "Yes*"})
    loose = compiled(item, tag_naming_rules=insensitive)
    strict = compiled(item)
    for tags in ({"LEGACY": "yes-please"}, {"legacy": "YES"}, {"Legacy": "Yes-1"}):
        assert [e.id for e in loose.matching_exemptions(res(tags))] == ["EXC-1"], tags
    assert [e.id for e in strict.matching_exemptions(res({"Legacy": "Yes-1"}))] == ["EXC-1"]
    assert strict.matching_exemptions(res({"LEGACY": "Yes-1"})) == ()
    assert strict.matching_exemptions(res({"Legacy": "yes-1"})) == ()
    assert loose.matching_exemptions(res({"Legacy": "No"})) == ()


def test_arn_patterns_stay_case_sensitive_when_case_sensitivity_is_false() -> None:
    loose = compiled(exemption(arn_patterns=["arn:aws:s3:::legacy-*"]),
                     tag_naming_rules={**BASE["tag_naming_rules"], "case_sensitivity": False})
    assert loose.matching_exemptions(res({}, "s3:bucket", arn="arn:aws:s3:::LEGACY-x")) == ()
    assert len(loose.matching_exemptions(res({}, "s3:bucket", arn="arn:aws:s3:::legacy-x"))) == 1


def test_compiled_exemption_fits_and_matches_separately() -> None:
    (e,) = load(ALL_CRITERIA).exemptions
    ce = CompiledExemption(e, case_sensitive=True)
    assert ce.fits(ACCOUNT, "ec2:instance") and ce.fits(ACCOUNT, "EC2:INSTANCE")
    assert not ce.fits(OTHER_ACCOUNT, "ec2:instance") and not ce.fits(ACCOUNT, "s3:bucket")
    # matches() looks only at ARN and tags: the account and type are fits()'s business.
    assert ce.matches(res({"legacy": "yes"}, "s3:bucket", OTHER_ACCOUNT, FITS_ALL["arn"]))
    assert not ce.matches(res({"legacy": "yes"}, arn="arn:aws:ec2:us-east-1:111122223333:instance/x"))


def test_exemption_index_caches_candidates_per_account_and_type() -> None:
    a, b, c = load(exemption("A", accounts=[ACCOUNT]), exemption("B", resource_types=["s3:bucket"]),
                   exemption("C", accounts=[ACCOUNT], resource_types=["ec2:*"])).exemptions
    index = ExemptionIndex([a, b, c], case_sensitive=True)
    first = index.candidates(ACCOUNT, "ec2:volume")
    assert [e.id for e in first] == ["A", "C"]
    assert index.candidates(ACCOUNT, "ec2:volume") is first
    assert [e.id for e in index.candidates(OTHER_ACCOUNT, "s3:bucket")] == ["B"]
    assert index.candidates(OTHER_ACCOUNT, "ec2:volume") == ()
    assert index.apply(res({}, "ec2:volume", OTHER_ACCOUNT), []) is None


# --- what is waived ------------------------------------------------------------------------------------


def test_tags_specific_exemption_waives_only_the_named_tags() -> None:
    compiled_policy = compiled(exemption(tags=["CostCenter"]))
    ev = evaluate_resource(res({"Environment": "prod", "Project": "x"}), compiled_policy)
    assert ids(ev.waived) == ["missing_required_tag:CostCenter"]
    assert ids(ev.violations) == ["invalid_value:Environment", "invalid_format:Project"]
    assert ev.exempted_by == ("EXC-1",)
    assert not ev.compliant and not ev.compliant_by_exemption


@pytest.mark.parametrize(("tags", "waived_id"), [
    ({"Environment": "production"}, "missing_required_tag:CostCenter"),
    ({"CostCenter": " ", "Environment": "production"}, "missing_required_tag:CostCenter"),
    ({"CostCenter": "Marketing", "Environment": "production"}, "invalid_value:CostCenter"),
    ({"costcenter": "Sales", "Environment": "production"}, "wrong_key_case:CostCenter"),
])
def test_tags_specific_exemption_waives_every_rule_violation_type(tags: dict[str, str], waived_id: str) -> None:
    ev = evaluate_resource(res(tags), compiled(exemption(tags=["CostCenter"])))
    assert ids(ev.waived) == [waived_id]
    assert ev.violations == () and ev.compliant and ev.compliant_by_exemption


def test_tags_specific_exemption_waives_invalid_format() -> None:
    ev = evaluate_resource(res({**GOOD, "Project": "prj 42"}), compiled(exemption(tags=["Project"])))
    assert ids(ev.waived) == ["invalid_format:Project"] and ev.compliant_by_exemption


def test_waived_violations_keep_their_details() -> None:
    ev = evaluate_resource(res({"Environment": "production"}), compiled(exemption(tags=["CostCenter"])))
    (v,) = ev.waived
    assert v.violation_type is ViolationType.MISSING_REQUIRED_TAG and v.tag_name == "CostCenter"
    assert v.severity is Severity.ERROR and v.resource_arn == res({}).arn
    assert v.message == "Required tag 'CostCenter' is missing; allowed: Engineering, Sales"


def test_prohibited_and_naming_findings_are_only_waived_by_whole_resource_exemptions() -> None:
    # 'temp1' is a prohibited key and 'Sales#1' has a character the policy refuses; naming the keys in
    # `tags` does not waive them: those findings concern a key, not a policy tag.
    tags = {"CostCenter": "Sales#1", "Environment": "production", "temp1": "x"}
    specific = compiled(exemption(tags=["CostCenter", "temp1"]))
    ev = evaluate_resource(res(tags), specific)
    assert ids(ev.waived) == ["invalid_value:CostCenter"]
    assert ids(ev.violations) == ["naming_rule:CostCenter:value_characters", "prohibited_tag:temp1"]
    assert [v.violation_type for v in ev.violations] == [ViolationType.NAMING_RULE, ViolationType.PROHIBITED_TAG]

    whole = evaluate_resource(res(tags), compiled(exemption()))
    assert ids(whole.waived) == ["invalid_value:CostCenter", "naming_rule:CostCenter:value_characters",
                                 "prohibited_tag:temp1"]
    assert whole.violations == () and whole.compliant_by_exemption


def test_whole_resource_exemption_waives_the_tag_count_rule() -> None:
    tags = {**GOOD, "a": "1", "b": "2"}
    ev = evaluate_resource(res(tags), compiled(exemption(), max_tags=3))
    assert ids(ev.waived) == ["naming_rule:*:max_tags"] and ev.compliant
    kept = evaluate_resource(res(tags), compiled(exemption(tags=["CostCenter"]), max_tags=3))
    assert ids(kept.violations) == ["naming_rule:*:max_tags"] and kept.waived == ()


def test_tags_names_are_exact() -> None:
    ev = evaluate_resource(res({"Environment": "production"}), compiled(exemption(tags=["costcenter"])))
    assert ids(ev.violations) == ["missing_required_tag:CostCenter"] and ev.waived == ()


def test_only_exemptions_that_waive_something_are_named_in_policy_order() -> None:
    compiled_policy = compiled(exemption("ENV", tags=["Environment"]), exemption("CC", tags=["CostCenter"]),
                               exemption("PRJ", tags=["Project"]))
    ev = evaluate_resource(res({"Environment": "prod"}), compiled_policy)
    assert [e.id for e in compiled_policy.matching_exemptions(res({}))] == ["ENV", "CC", "PRJ"]
    assert ev.exempted_by == ("ENV", "CC")  # policy order, not the order of the violations
    assert ids(ev.waived) == ["missing_required_tag:CostCenter", "invalid_value:Environment"]


def test_every_exemption_covering_a_waived_violation_is_credited() -> None:
    compiled_policy = compiled(exemption("WHOLE"), exemption("CC", tags=["CostCenter"]))
    ev = evaluate_resource(res({"Environment": "production"}), compiled_policy)
    assert ev.exempted_by == ("WHOLE", "CC")
    assert ids(ev.waived) == ["missing_required_tag:CostCenter"]


def test_matching_exemption_that_waives_nothing_changes_nothing() -> None:
    ev = evaluate_resource(res({"Environment": "production"}), compiled(exemption(tags=["Environment"])))
    assert ids(ev.violations) == ["missing_required_tag:CostCenter"]
    assert ev.waived == () and ev.exempted_by == () and not ev.compliant_by_exemption


def test_compliant_fast_path_is_unaffected_by_matching_exemptions(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled_policy = compiled(exemption())
    calls: list[str] = []
    original = ExemptionIndex.apply

    def counting(self: ExemptionIndex, resource: Resource, violations: Any) -> Any:
        calls.append(resource.arn)
        return original(self, resource, violations)

    monkeypatch.setattr(ExemptionIndex, "apply", counting)
    good = res(GOOD)
    for _ in range(3):  # cold caches first, then the cached fast path
        ev = evaluate_resource(good, compiled_policy)
        assert ev.compliant and not ev.compliant_by_exemption
        assert ev.violations == () and ev.waived == () and ev.exempted_by == ()
    assert calls == []  # compliant resources never consult exemptions
    assert [e.id for e in compiled_policy.matching_exemptions(good)] == ["EXC-1"]
    evaluate_resource(res({}), compiled_policy)
    assert len(calls) == 1  # a resource with violations does


def test_out_of_scope_resource_is_not_waived() -> None:
    compiled_policy = compiled(exemption(), required_tags=[{"name": "Owner", "applies_to": ["s3:bucket"]}])
    ev = evaluate_resource(res({"temp": "x"}), compiled_policy)
    assert not ev.in_scope and ev.violations == () and ev.waived == () and ev.exempted_by == ()
    assert not ev.compliant_by_exemption


# --- expiry by as_of ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("as_of", "active"), [
    (EXPIRES - DAY, True),
    (EXPIRES, True),  # expires is the last day it applies
    (EXPIRES + DAY, False),
    (None, True),  # no date: nothing counts as expired
    (datetime(2025, 6, 30, 23, 59), True),
    (datetime(2025, 7, 1, 0, 0), False),
])
def test_exemption_applies_through_its_expires_day(as_of: date | None, active: bool) -> None:
    compiled_policy = compiled(exemption(), as_of=as_of)
    ev = evaluate_resource(res({}), compiled_policy)
    if active:
        assert ev.compliant_by_exemption and ev.exempted_by == ("EXC-1",)
        assert [e.id for e in compiled_policy.active_exemptions] == ["EXC-1"]
        assert compiled_policy.expired_exemptions == ()
    else:
        assert ids(ev.violations) == ["missing_required_tag:CostCenter", "missing_required_tag:Environment"]
        assert ev.waived == () and ev.exempted_by == ()
        assert compiled_policy.active_exemptions == ()
        assert compiled_policy.matching_exemptions(res({})) == ()
        assert [e.id for e in compiled_policy.expired_exemptions] == ["EXC-1"]


def test_datetime_as_of_is_kept_as_its_day() -> None:
    compiled_policy = compiled(exemption(), as_of=datetime(2025, 7, 1, 8, 30))
    assert compiled_policy.as_of == date(2025, 7, 1) and type(compiled_policy.as_of) is date
    assert compiled(exemption()).as_of is None


def test_expired_exemptions_are_listed_with_id_expiry_and_reason() -> None:
    compiled_policy = compiled(exemption("OLD", expires="2025-01-31", reason="migration done in January"),
                               exemption("NOW", expires="2025-03-01"),
                               exemption("OLDER", expires="2024-12-31"),
                               as_of=date(2025, 3, 1))
    assert [(e.id, e.expires, e.reason) for e in compiled_policy.expired_exemptions] == [
        ("OLD", date(2025, 1, 31), "migration done in January"),
        ("OLDER", date(2024, 12, 31), "TICKET-1 legacy fleet"),
    ]
    assert [e.id for e in compiled_policy.active_exemptions] == ["NOW"]
    assert evaluate_resource(res({}), compiled_policy).exempted_by == ("NOW",)


def test_evaluate_with_a_policy_passes_as_of_on() -> None:
    policy = load(exemption())
    assert evaluate([res({})], policy, as_of=EXPIRES).compliant == 1
    assert evaluate([res({})], policy, as_of=EXPIRES + DAY).compliant == 0
    assert evaluate([res({})], policy, as_of=datetime(2025, 6, 30, 18)).compliant == 1
    assert evaluate([res({})], policy).compliant == 1


def test_evaluate_with_a_compiled_policy_accepts_only_its_own_day() -> None:
    compiled_policy = compiled(exemption(), as_of=EXPIRES)
    assert evaluate([res({})], compiled_policy, as_of=EXPIRES).compliant == 1
    # The same day as a datetime is the same day.
    assert evaluate([res({})], compiled_policy, as_of=datetime(2025, 6, 30, 9)).compliant == 1
    with pytest.raises(ValueError, match="pass the date to compile_policy instead"):
        evaluate([res({})], compiled_policy, as_of=EXPIRES + DAY)
    with pytest.raises(ValueError, match="differs from the None"):
        evaluate([res({})], compiled(exemption()), as_of=EXPIRES)


# --- counts in Evaluation ------------------------------------------------------------------------------


def test_evaluation_counts_waivers() -> None:
    policy = load(exemption("CC", tags=["CostCenter"]),
                  exemption("LEGACY", tag_conditions={"legacy": "*"}),
                  exemption("GONE", accounts=[OTHER_ACCOUNT], expires="2025-01-01"))
    resources = [
        res({"Environment": "production"}),                        # compliant by exemption (1 waived)
        res({"Environment": "prod"}),                              # 1 waived, 1 left
        res({"legacy": "1", "temp": "x"}),                         # compliant by exemption (3 waived)
        res(GOOD),                                                 # compliant on its own
        res({}, "s3:bucket", OTHER_ACCOUNT, "arn:aws:s3:::b"),     # GONE expired: 2 violations
    ]
    ev = evaluate(resources, policy, as_of=date(2025, 3, 1))
    assert (ev.total, ev.in_scope, ev.compliant, ev.compliant_by_exemption, ev.waived_violations) == (5, 5, 3, 2, 5)
    assert ev.score == pytest.approx(3 / 5)
    assert [r.exempted_by for r in ev.results] == [("CC",), ("CC",), ("CC", "LEGACY"), (), ()]
    assert [r.compliant_by_exemption for r in ev.results] == [True, False, True, False, False]
    # violations() yields only what is left, never the waived ones.
    assert ids(list(ev.violations())) == ["invalid_value:Environment", "missing_required_tag:CostCenter",
                                          "missing_required_tag:Environment"]
    # The same batch against the policy without exemptions: nothing waived.
    plain = evaluate(resources, load_policy(BASE))
    assert (plain.compliant, plain.compliant_by_exemption, plain.waived_violations) == (1, 0, 0)


def test_evaluation_without_exemptions_counts_zero() -> None:
    ev = evaluate([res({}), res(GOOD)], load_policy(BASE))
    assert (ev.compliant, ev.compliant_by_exemption, ev.waived_violations) == (1, 0, 0)


# --- GlobPattern ---------------------------------------------------------------------------------------


def _reference_glob(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.fullmatch(regex, text, re.DOTALL) is not None


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("arn:aws:ec2:*:111122223333:instance/*", "arn:aws:ec2:us-east-1:111122223333:instance/i-1", True),
    ("arn:aws:ec2:*:111122223333:instance/*", "arn:aws:ec2:us-east-1:111122223333:volume/vol-1", False),
    ("arn:aws:s3:::logs", "arn:aws:s3:::logs", True),
    ("arn:aws:s3:::logs", "arn:aws:s3:::logs2", False),
    ("arn:aws:s3:::logs", "arn:aws:s3:::LOGS", False),  # case-sensitive
    ("a*", "a", True),
    ("*a", "ba", True),
    ("ab*ba", "aba", False),  # prefix and suffix may not overlap
    ("ab*ba", "abba", True),
    ("a*b*c", "abc", True),
    ("a*b*c", "acb", False),
    ("a*b*b*c", "abbc", True),
    ("a*b*b*c", "abc", False),
    ("x?[y]*", "x?[y]z", True),  # only '*' is special
    ("x?[y]*", "xa[y]z", False),
    ("a**b", "ab", True),
    ("*", "", True),
    ("", "", True),
    ("", "a", False),
])
def test_glob_pattern_examples(pattern: str, text: str, expected: bool) -> None:
    assert GlobPattern(pattern).matches(text) is expected
    assert _reference_glob(pattern, text) is expected


# Few letters make pieces collide and overlap (the hard cases); the specials check that they are literal.
GLOB_ALPHABET = "ab*?[.\n"


@st.composite
def glob_cases(draw: st.DrawFn) -> tuple[str, str]:
    """A pattern and a text: random, or one that fills the pattern's wildcards and then maybe mutates it."""
    small = draw(st.booleans())
    alphabet = "ab*" if small else GLOB_ALPHABET
    pattern = draw(st.text(alphabet=alphabet, max_size=10))
    if draw(st.booleans()):
        return pattern, draw(st.text(alphabet=alphabet, max_size=12))
    pieces = pattern.split("*")
    text = pieces[0] + "".join(draw(st.text(alphabet="ab", max_size=3)) + p for p in pieces[1:])
    if text and draw(st.booleans()):
        # Drop, double or swap one character so near misses are tried too.
        i = draw(st.integers(0, len(text) - 1))
        text = draw(st.sampled_from([text[:i] + text[i + 1:], text[:i] + text[i] + text[i:],
                                     text[:i] + ("b" if text[i] == "a" else "a") + text[i + 1:]]))
    return pattern, text


@settings(max_examples=2000)
@given(glob_cases())
def test_glob_pattern_agrees_with_a_regex_reference(case: tuple[str, str]) -> None:
    pattern, text = case
    assert GlobPattern(pattern).matches(text) is _reference_glob(pattern, text)


# --- lint codes for exemptions --------------------------------------------------------------------------


def _documented_codes() -> dict[str, Severity]:
    rows = re.findall(r"^([a-z][a-z0-9-]+)\s+(error|warning)\s", lint_module.__doc__ or "", flags=re.MULTILINE)
    return {code: Severity(sev) for code, sev in rows}


DOCUMENTED = _documented_codes()


def lint(policy: Policy, **kwargs: Any) -> list[LintFinding]:
    findings = lint_policy(policy, **kwargs)
    for f in findings:
        assert DOCUMENTED.get(f.code) == f.severity, f"{f.code} is undocumented or has the wrong severity"
    return findings


def pairs(findings: list[LintFinding]) -> list[tuple[str, str]]:
    return [(f.location, f.code) for f in findings]


def test_new_exemption_codes_are_documented_with_their_severity() -> None:
    assert DOCUMENTED["exemption-expired"] is Severity.WARNING
    assert DOCUMENTED["exemption-expiring"] is Severity.WARNING
    assert DOCUMENTED["exemption-unknown-tag"] is Severity.ERROR
    assert lint_module.EXPIRY_WARNING_DAYS == 14


@pytest.mark.parametrize(("days_left", "code", "phrase"), [
    (-30, "exemption-expired", "exemption 'EXC-1' expired on 2025-06-30 and waives nothing any more"),
    (-1, "exemption-expired", "exemption 'EXC-1' expired on 2025-06-30 and waives nothing any more"),
    (0, "exemption-expiring", "exemption 'EXC-1' ends today (2025-06-30)"),
    (1, "exemption-expiring", "exemption 'EXC-1' ends in 1 day (2025-06-30)"),
    (14, "exemption-expiring", "exemption 'EXC-1' ends in 14 days (2025-06-30)"),
    (15, None, None),
    (400, None, None),
])
def test_expiry_codes_follow_as_of(days_left: int, code: str | None, phrase: str | None) -> None:
    policy = load(exemption())
    found = lint(policy, as_of=EXPIRES - timedelta(days=days_left))
    if code is None:
        assert found == []
    else:
        assert pairs(found) == [("exemptions[0].expires", code)]
        assert phrase is not None and found[0].message.startswith(phrase)


def test_expiry_codes_need_as_of_and_accept_a_datetime() -> None:
    policy = load(exemption(expires="2020-01-01"))
    assert lint(policy) == []
    assert pairs(lint(policy, as_of=datetime(2020, 1, 1, 23, 0))) == [("exemptions[0].expires", "exemption-expiring")]
    assert pairs(lint(policy, as_of=datetime(2020, 1, 2, 0, 0))) == [("exemptions[0].expires", "exemption-expired")]


def test_lint_and_engine_agree_on_the_last_day() -> None:
    policy = load(exemption())
    for day in (EXPIRES - DAY, EXPIRES, EXPIRES + DAY):
        expired = "exemption-expired" in {f.code for f in lint(policy, as_of=day)}
        assert expired is bool(compile_policy(policy, day).expired_exemptions), day


def test_exemption_unknown_tag_names_the_entry_and_a_guess() -> None:
    policy = load(exemption(tags=["CostCenter", "costcenter", "Zzzzzzzz"]))
    found = lint(policy)
    assert pairs(found) == [("exemptions[0].tags[1]", "exemption-unknown-tag"),
                            ("exemptions[0].tags[2]", "exemption-unknown-tag")]
    assert found[0].message == ("'costcenter' is not a tag the policy defines, so this waiver does nothing (names "
                                "are exact); did you mean 'CostCenter'?")
    assert found[1].message.endswith("name a tag from required_tags or optional_tags")


def test_exemption_tags_defined_by_an_override_or_as_optional_are_known() -> None:
    policy = load(exemption(tags=["Team", "Project"]),
                  overrides=[{"id": "data", "accounts": [ACCOUNT], "required_tags": [{"name": "Team"}]}])
    assert lint(policy) == []


def test_exemption_resource_types_are_checked_against_the_registry() -> None:
    policy = load(exemption(resource_types=["ec2:instanse", "ec2:*", "s3:bucket"]))
    found = lint(policy, known_resource_types=all_types())
    assert pairs(found) == [("exemptions[0].resource_types[0]", "unknown-resource-type")]
    assert "did you mean 'ec2:instance'?" in found[0].message
    assert lint(policy) == []  # without the registry the check is off
