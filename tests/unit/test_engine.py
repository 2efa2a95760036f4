"""Engine semantics, one test (or a few) per rule of the module docstring of policies.engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from policies.engine import (
    CompiledPolicy,
    Evaluation,
    ResourceEvaluation,
    compile_policy,
    compliance_score,
    evaluate,
    evaluate_resource,
)
from policies.models import GLOBAL_REGION, Resource, Severity, Violation, ViolationType
from policies.policy import load_policy, load_policy_file

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
ENVIRONMENTS = ["production", "staging", "development", "test"]
COST_CENTERS = ["Engineering", "Marketing", "Sales", "Operations", "Finance", "Data"]

BASE: dict[str, Any] = {
    "required_tags": [
        {"name": "CostCenter", "allowed_values": COST_CENTERS},
        {"name": "Owner", "allowed_values": ["*@example.com"]},
        {"name": "Environment", "allowed_values": ENVIRONMENTS},
        {"name": "Application", "validation_regex": "[a-z][a-z0-9-]{2,63}", "severity": "warning",
         "applies_to": ["ec2:instance", "lambda:function"]},
    ],
    "optional_tags": [
        {"name": "DataClassification", "allowed_values": ["public", "internal"], "applies_to": ["s3:bucket"]},
        {"name": "Project", "validation_regex": "PRJ-[0-9]{4}"},
    ],
    "prohibited_tags": ["temp*", "DeleteMe"],
    "max_tags": 50,
    "tag_naming_rules": {"case_sensitivity": True, "allow_special_characters": True},
}
GOOD = {"CostCenter": "Engineering", "Owner": "alice@example.com", "Environment": "production",
        "Application": "web-api"}


def policy(**overrides: Any) -> CompiledPolicy:
    data = {**BASE, **overrides}
    return compile_policy(load_policy(data))


def naming(**rules: Any) -> CompiledPolicy:
    return policy(tag_naming_rules={**BASE["tag_naming_rules"], **rules})


def res(tags: dict[str, str], rtype: str = "ec2:instance", n: int = 1) -> Resource:
    return Resource(arn=f"arn:aws:ec2:us-east-1:111122223333:instance/i-{n:04d}", resource_id=f"i-{n:04d}",
                    resource_type=rtype, account_id="111122223333", region="us-east-1", tags=tags)


def violations(tags: dict[str, str], compiled: CompiledPolicy | None = None,
               rtype: str = "ec2:instance") -> list[Violation]:
    return list(evaluate_resource(res(tags, rtype), compiled or policy()).violations)


def kinds(vs: list[Violation]) -> list[tuple[ViolationType, str]]:
    return [(v.violation_type, v.tag_name) for v in vs]


# --- scope ---------------------------------------------------------------------------------------


def test_fully_tagged_resource_is_compliant() -> None:
    ev = evaluate_resource(res(GOOD), policy())
    assert ev.in_scope and ev.violations == () and ev.compliant


def test_resource_is_in_scope_when_a_required_tag_applies_to_its_type() -> None:
    compiled = policy(required_tags=[{"name": "Owner", "applies_to": ["s3:bucket"]}])
    assert evaluate_resource(res({}, "s3:bucket"), compiled).in_scope
    out = evaluate_resource(res({}, "ec2:instance"), compiled)
    assert not out.in_scope and out.violations == () and not out.compliant


def test_out_of_scope_resources_get_no_violations_at_all() -> None:
    # Only optional, prohibited and naming rules could apply here: none is reported.
    compiled = policy(required_tags=[{"name": "Owner", "applies_to": ["s3:bucket"]}])
    ev = evaluate_resource(res({"temp": "x", "Project": "bad", "aws:x": "y", "k" * 200: "v"}, "ec2:instance"),
                           compiled)
    assert not ev.in_scope and ev.violations == ()


def test_only_applicable_rules_are_checked() -> None:
    # Application applies to ec2:instance only; an s3 bucket without it is fine.
    tags = {k: v for k, v in GOOD.items() if k != "Application"}
    assert violations(tags, rtype="s3:bucket") == []
    assert kinds(violations(tags, rtype="ec2:instance")) == [
        (ViolationType.MISSING_REQUIRED_TAG, "Application")]


def test_applies_to_service_wildcard_and_case() -> None:
    compiled = policy(required_tags=[{"name": "Owner", "applies_to": ["rds:*", "ec2:instance"]}])
    assert compiled.in_scope("rds:cluster") and compiled.in_scope("rds:db")
    assert compiled.in_scope("EC2:Instance")
    assert not compiled.in_scope("ec2:volume")


def test_policy_without_required_tags_has_nothing_in_scope() -> None:
    compiled = policy(required_tags=[])
    result = evaluate([res({}), res({"temp": "1"}, n=2)], compiled)
    assert (result.total, result.in_scope, result.compliant, result.score) == (2, 0, 0, 1.0)


def test_rules_for_lists_required_then_optional() -> None:
    compiled = policy()
    assert [r.name for r in compiled.rules_for("s3:bucket")] == [
        "CostCenter", "Owner", "Environment", "DataClassification", "Project"]
    assert compiled.rules_for("ec2:instance")[3].name == "Application"


# --- missing_required_tag ----------------------------------------------------------------------------


def test_missing_required_tag() -> None:
    tags = {k: v for k, v in GOOD.items() if k != "Environment"}
    (v,) = violations(tags)
    assert v.violation_type is ViolationType.MISSING_REQUIRED_TAG
    assert v.rule_id == "missing_required_tag:Environment"
    assert v.tag_name == "Environment" and v.current_value is None and v.severity is Severity.ERROR
    assert v.allowed_values == tuple(ENVIRONMENTS)
    assert v.message == ("Required tag 'Environment' is missing; "
                         "allowed: production, staging, development, test")
    assert v.suggestion == "add tag 'Environment'; allowed: production, staging, development, test"


@pytest.mark.parametrize("blank", ["", "   "])
def test_empty_value_on_required_tag_counts_as_missing(blank: str) -> None:
    (v,) = violations({**GOOD, "CostCenter": blank})
    assert v.violation_type is ViolationType.MISSING_REQUIRED_TAG
    assert v.current_value == blank
    assert "present but empty" in v.message
    assert v.suggestion is not None and v.suggestion.startswith("set a value for tag 'CostCenter'")


def test_missing_tag_suggests_renaming_a_lookalike_key() -> None:
    tags = {k: v for k, v in GOOD.items() if k != "CostCenter"} | {"cost_center": "Engineering"}
    (v,) = violations(tags)
    assert v.suggestion == "rename key 'cost_center' to 'CostCenter'"


def test_missing_presence_only_tag() -> None:
    compiled = policy(required_tags=[{"name": "Team"}], optional_tags=[])
    (v,) = violations({}, compiled)
    assert v.allowed_values is None and v.message == "Required tag 'Team' is missing"
    assert v.suggestion == "add tag 'Team'"
    assert violations({"Team": "anything"}, compiled) == []
    # Blank values never satisfy a required tag, also when the rule has no value constraint.
    for _ in range(2):  # the second round runs on warm caches
        assert kinds(violations({"Team": "  "}, compiled)) == [(ViolationType.MISSING_REQUIRED_TAG, "Team")]


def test_missing_regex_tag_mentions_the_format() -> None:
    (v,) = violations({k: v for k, v in GOOD.items() if k != "Application"})
    assert v.message.endswith("required format: [a-z][a-z0-9-]{2,63}")
    assert v.severity is Severity.WARNING


def test_untagged_resource_reports_every_required_tag() -> None:
    assert kinds(violations({})) == [(ViolationType.MISSING_REQUIRED_TAG, n)
                                      for n in ("CostCenter", "Owner", "Environment", "Application")]


# --- wrong_key_case --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["costcenter", "COSTCENTER", "costCenter"])
def test_wrong_key_case_is_its_own_violation_not_missing(variant: str) -> None:
    tags = {k: v for k, v in GOOD.items() if k != "CostCenter"} | {variant: "Engineering"}
    (v,) = violations(tags)
    assert v.violation_type is ViolationType.WRONG_KEY_CASE
    assert v.rule_id == "wrong_key_case:CostCenter" and v.tag_name == "CostCenter"
    assert v.current_value == variant
    assert v.suggestion == f"rename key '{variant}' to 'CostCenter'"
    assert v.severity is Severity.ERROR


def test_wrong_key_case_value_is_still_checked() -> None:
    tags = {k: v for k, v in GOOD.items() if k != "CostCenter"} | {"costcenter": "Enginering"}
    vs = violations(tags)
    assert kinds(vs) == [(ViolationType.WRONG_KEY_CASE, "CostCenter"),
                         (ViolationType.INVALID_VALUE, "CostCenter")]
    assert vs[1].current_value == "Enginering" and vs[1].suggestion == "Engineering"
    assert "(key 'costcenter')" in vs[1].message


def test_wrong_key_case_with_empty_value_is_also_missing() -> None:
    tags = {k: v for k, v in GOOD.items() if k != "Owner"} | {"owner": ""}
    assert kinds(violations(tags)) == [(ViolationType.WRONG_KEY_CASE, "Owner"),
                                       (ViolationType.MISSING_REQUIRED_TAG, "Owner")]


def test_case_variant_next_to_the_exact_key_is_reported() -> None:
    vs = violations({**GOOD, "costcenter": "Engineering"})
    assert kinds(vs) == [(ViolationType.WRONG_KEY_CASE, "CostCenter")]


def test_several_case_variants_get_distinct_rule_ids() -> None:
    tags = {k: v for k, v in GOOD.items() if k != "CostCenter"}
    tags |= {"costcenter": "Sales", "COSTCENTER": "Sales"}
    ids = [v.rule_id for v in violations(tags)]
    assert ids == ["wrong_key_case:CostCenter", "wrong_key_case:CostCenter:costcenter"]


def test_wrong_key_case_on_optional_tag() -> None:
    vs = violations({**GOOD, "project": "PRJ-0001"})
    assert kinds(vs) == [(ViolationType.WRONG_KEY_CASE, "Project")]
    assert vs[0].severity is Severity.WARNING


def test_case_insensitive_policy_accepts_variants_silently() -> None:
    compiled = naming(case_sensitivity=False)
    tags = {"costcenter": "engineering", "OWNER": "Bob@Example.com", "environment": "PRODUCTION",
            "application": "web-api"}
    assert violations(tags, compiled) == []


def test_case_insensitive_policy_still_checks_variant_values() -> None:
    compiled = naming(case_sensitivity=False)
    tags = {**GOOD, "project": "nope"}
    del tags["Environment"]
    tags["environment"] = "prod"
    vs = violations(tags, compiled)
    assert kinds(vs) == [(ViolationType.INVALID_VALUE, "Environment"),
                         (ViolationType.INVALID_FORMAT, "Project")]


def test_case_insensitive_policy_keeps_regex_as_written() -> None:
    compiled = naming(case_sensitivity=False)
    assert kinds(violations({**GOOD, "Application": "Web-API"}, compiled)) == [
        (ViolationType.INVALID_FORMAT, "Application")]


# --- invalid_value / invalid_format ------------------------------------------------------------------


def test_invalid_value_message_and_suggestion() -> None:
    (v,) = violations({**GOOD, "Environment": "prod"})
    assert v.violation_type is ViolationType.INVALID_VALUE and v.rule_id == "invalid_value:Environment"
    assert v.message.startswith("Tag 'Environment' has value 'prod', which is not allowed; "
                                "allowed: production, staging, development, test")
    assert v.current_value == "prod" and v.allowed_values == tuple(ENVIRONMENTS)
    assert v.suggestion == "production"


@pytest.mark.parametrize(("value", "suggestion"), [
    ("Enginering", "Engineering"), ("engineering", "Engineering"), ("R&D", None)])
def test_invalid_value_did_you_mean(value: str, suggestion: str | None) -> None:
    (v,) = violations({**GOOD, "CostCenter": value})
    assert v.suggestion == suggestion


def test_wildcard_allowed_value() -> None:
    assert violations({**GOOD, "Owner": "bob.smith@example.com"}) == []
    (v,) = violations({**GOOD, "Owner": "bob@example.org"})
    assert v.violation_type is ViolationType.INVALID_VALUE and v.allowed_values == ("*@example.com",)
    assert v.suggestion is None


def test_star_alone_allows_any_value_but_not_absence() -> None:
    compiled = policy(required_tags=[{"name": "Team", "allowed_values": ["*"]}], optional_tags=[])
    assert violations({"Team": "x y z"}, compiled) == []
    assert kinds(violations({}, compiled)) == [(ViolationType.MISSING_REQUIRED_TAG, "Team")]


def test_invalid_format_uses_fullmatch() -> None:
    (v,) = violations({**GOOD, "Application": "web-api!"})
    assert v.violation_type is ViolationType.INVALID_FORMAT and v.rule_id == "invalid_format:Application"
    assert v.allowed_values is None and v.severity is Severity.WARNING
    assert "does not match the required format [a-z][a-z0-9-]{2,63}" in v.message


def test_invalid_format_suggests_a_mechanical_fix() -> None:
    (v,) = violations({**GOOD, "Application": "My App"})
    assert v.suggestion == "my-app"


def test_anchored_regex_still_works() -> None:
    compiled = policy(required_tags=[{"name": "Code", "validation_regex": "^[A-Z]{3}$"}], optional_tags=[])
    assert violations({"Code": "ABC"}, compiled) == []
    assert kinds(violations({"Code": "ABCD"}, compiled)) == [(ViolationType.INVALID_FORMAT, "Code")]


def test_rule_with_values_and_regex_reports_each_failure() -> None:
    compiled = policy(
        required_tags=[{"name": "Code", "allowed_values": ["AB*"], "validation_regex": "[A-Z]{4}"}],
        optional_tags=[])
    assert violations({"Code": "ABCD"}, compiled) == []
    assert kinds(violations({"Code": "ABC"}, compiled)) == [(ViolationType.INVALID_FORMAT, "Code")]
    assert kinds(violations({"Code": "XYZW"}, compiled)) == [(ViolationType.INVALID_VALUE, "Code")]
    assert kinds(violations({"Code": "x"}, compiled)) == [(ViolationType.INVALID_VALUE, "Code"),
                                                          (ViolationType.INVALID_FORMAT, "Code")]


# --- optional tags ---------------------------------------------------------------------------------


def test_absent_optional_tag_is_fine() -> None:
    assert violations(GOOD, rtype="ec2:instance") == []


def test_present_optional_tag_is_checked_with_its_severity() -> None:
    (v,) = violations({**GOOD, "Project": "prj-42"})
    assert v.violation_type is ViolationType.INVALID_FORMAT and v.severity is Severity.WARNING
    good_s3 = {k: v for k, v in GOOD.items() if k != "Application"}
    (v,) = violations({**good_s3, "DataClassification": "secret"}, rtype="s3:bucket")
    assert v.violation_type is ViolationType.INVALID_VALUE and v.tag_name == "DataClassification"


def test_optional_tag_is_not_checked_on_types_it_does_not_apply_to() -> None:
    assert violations({**GOOD, "DataClassification": "secret"}, rtype="ec2:instance") == []


def test_optional_tag_with_error_severity() -> None:
    compiled = policy(optional_tags=[{"name": "Project", "validation_regex": "PRJ-[0-9]{4}",
                                      "severity": "error"}])
    (v,) = violations({**GOOD, "Project": "x"}, compiled)
    assert v.severity is Severity.ERROR


def test_empty_optional_value_is_checked_like_any_value() -> None:
    (v,) = violations({**GOOD, "Project": ""})
    assert v.violation_type is ViolationType.INVALID_FORMAT and v.current_value == ""


# --- prohibited_tag --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["temp", "temporary", "TEMP-debug", "Temp", "DeleteMe", "deleteme"])
def test_prohibited_keys(key: str) -> None:
    (v,) = violations({**GOOD, key: "1"})
    assert v.violation_type is ViolationType.PROHIBITED_TAG and v.rule_id == f"prohibited_tag:{key}"
    assert v.tag_name == key and v.current_value == "1" and v.severity is Severity.ERROR
    assert v.suggestion == f"remove tag '{key}'"


@pytest.mark.parametrize("key", ["attempt", "DeleteMeNot", "contemporary"])
def test_not_prohibited_keys(key: str) -> None:
    assert violations({**GOOD, key: "1"}) == []


# --- naming_rule -----------------------------------------------------------------------------------


def test_key_too_long() -> None:
    compiled = naming(max_key_length=12)  # "Application" (11) still fits
    (v,) = violations({**GOOD, "VeryLongKeyName": "x"}, compiled)
    assert v.violation_type is ViolationType.NAMING_RULE
    assert v.rule_id == "naming_rule:VeryLongKeyName:key_length"
    assert v.severity is Severity.WARNING and "15 characters long; the maximum is 12" in v.message


def test_value_too_long() -> None:
    compiled = naming(max_value_length=17)  # "alice@example.com" (17) still fits
    (v,) = violations({**GOOD, "Note": "x" * 18}, compiled)
    assert v.rule_id == "naming_rule:Note:value_length" and v.current_value == "x" * 18


def test_policy_tag_values_obey_length_rules_too() -> None:
    compiled = naming(max_value_length=17)
    vs = violations({**GOOD, "Owner": "alice.smith@example.com"}, compiled)
    assert [v.rule_id for v in vs] == ["naming_rule:Owner:value_length"]


def test_one_key_can_break_several_naming_rules_with_distinct_ids() -> None:
    compiled = naming(max_key_length=5, max_value_length=3, allow_special_characters=False)
    vs = violations({**GOOD, "Bad#Key": "v!lue"}, compiled)
    ids = [v.rule_id for v in vs if v.tag_name == "Bad#Key"]
    assert sorted(ids) == ["naming_rule:Bad#Key:key_characters", "naming_rule:Bad#Key:key_length",
                           "naming_rule:Bad#Key:value_characters", "naming_rule:Bad#Key:value_length"]


def test_too_many_tags() -> None:
    compiled = policy(max_tags=6)
    tags = {**GOOD, "A": "1", "B": "2"}
    assert violations(tags, compiled) == []
    tags["C"] = "3"
    (v,) = violations(tags, compiled)
    assert v.rule_id == "naming_rule:*:max_tags" and v.tag_name == "*" and v.current_value == "7"
    assert v.message == "Resource has 7 user tags; the maximum is 6"


def test_aws_keys_do_not_count_towards_max_tags() -> None:
    compiled = policy(max_tags=4)
    vs = violations({**GOOD, "aws:cloudformation:stack-name": "s"}, compiled)
    assert [v.rule_id for v in vs] == ["naming_rule:aws:cloudformation:stack-name:reserved_prefix"]


def test_max_tags_none_turns_the_check_off() -> None:
    compiled = policy(max_tags=None)
    assert violations({**GOOD, **{f"K{i}": "v" for i in range(80)}}, compiled) == []


@pytest.mark.parametrize("key", ["aws:createdBy", "AWS:foo"])
def test_reserved_aws_prefix(key: str) -> None:
    (v,) = violations({**GOOD, key: "x"})
    assert v.violation_type is ViolationType.NAMING_RULE and v.rule_id == f"naming_rule:{key}:reserved_prefix"
    assert v.severity is Severity.WARNING


@pytest.mark.parametrize("ok", ["Cost Center", "a_b.c:d/e=f+g-h@i", "Ünïcødé", "日本語", "123", "x\u00a0y"])
def test_special_characters_allowed_set(ok: str) -> None:
    compiled = naming(allow_special_characters=False)
    assert violations({**GOOD, ok: ok}, compiled) == []


@pytest.mark.parametrize("bad", ["a#b", "a,b", "a!b", "tab\there", "new\nline", "a*b", "(x)"])
def test_special_characters_rejected(bad: str) -> None:
    compiled = naming(allow_special_characters=False)
    vs = violations({**GOOD, bad: "fine", "Note": bad}, compiled)
    assert sorted(v.rule_id for v in vs) == sorted([f"naming_rule:{bad}:key_characters",
                                                    "naming_rule:Note:value_characters"])


def test_special_characters_allowed_when_rule_is_on() -> None:
    assert violations({**GOOD, "a#b": "x!y"}, naming(allow_special_characters=True)) == []


# --- severity, score and ids -----------------------------------------------------------------------


def test_warnings_make_a_resource_non_compliant() -> None:
    ev = evaluate_resource(res({**GOOD, "Application": "BAD APP"}), policy())
    assert {v.severity for v in ev.violations} == {Severity.WARNING}
    assert not ev.compliant
    result = evaluate([res(GOOD, n=1), res({**GOOD, "Application": "BAD APP"}, n=2)], policy())
    assert result.score == 0.5


def test_violation_carries_the_resource_identity() -> None:
    r = Resource(arn="arn:aws:s3:::bucket-a", resource_id="bucket-a", resource_type="s3:bucket",
                 account_id="999988887777", region=GLOBAL_REGION, tags={})
    (v, *_) = evaluate_resource(r, policy()).violations
    assert (v.resource_arn, v.resource_id, v.resource_type, v.account_id, v.region) == (
        "arn:aws:s3:::bucket-a", "bucket-a", "s3:bucket", "999988887777", GLOBAL_REGION)


def test_rule_ids_are_unique_per_resource() -> None:
    compiled = naming(allow_special_characters=False, max_key_length=6, max_value_length=4)
    tags = {"costcenter": "Enginering!", "COSTCENTER": "", "Owner": "", "temp#1": "v!!!!", "aws:x": "y",
            "Project": "nope", "Application": "Web App"}
    ids = [v.rule_id for v in violations(tags, compiled)]
    assert len(ids) == len(set(ids)) > 8


def test_violation_order_is_rules_then_sorted_keys() -> None:
    tags = {"temp-b": "1", "temp-a": "1", **GOOD, "Environment": "prod"}
    assert [v.rule_id for v in violations(tags)] == [
        "invalid_value:Environment", "prohibited_tag:temp-a", "prohibited_tag:temp-b"]


def test_violation_order_does_not_depend_on_tag_order() -> None:
    tags = {"temp-b": "1", "x#": "1", "costcenter": "Sales", "Owner": "x", "aws:q": "1", "Environment": "dev"}
    forward = violations(tags, naming(allow_special_characters=False))
    backward = violations(dict(reversed(list(tags.items()))), naming(allow_special_characters=False))
    assert forward == backward


def test_compliance_score() -> None:
    assert compliance_score(0, 0) == 1.0
    assert compliance_score(3, 4) == 0.75
    assert compliance_score(0, 5) == 0.0


def test_evaluate_counts_and_score() -> None:
    compiled = policy(required_tags=[{"name": "Owner", "applies_to": ["ec2:instance"]}], optional_tags=[])
    resources = [res({"Owner": "a"}, n=1), res({}, n=2), res({"Owner": "b"}, n=3),
                 res({}, "s3:bucket", n=4)]
    result = evaluate(resources, compiled)
    assert isinstance(result, Evaluation)
    assert (result.total, result.in_scope, result.compliant) == (4, 3, 2)
    assert result.score == pytest.approx(2 / 3)
    assert [r.resource for r in result.results] == resources
    assert [v.resource_id for v in result.violations()] == ["i-0002"]


def test_evaluate_accepts_an_uncompiled_policy() -> None:
    result = evaluate([res(GOOD)], load_policy(BASE))
    assert result.compliant == 1


def test_evaluate_empty_input() -> None:
    result = evaluate([], policy())
    assert (result.total, result.in_scope, result.compliant, result.score, list(result.violations())) == (
        0, 0, 0, 1.0, [])


def test_compliant_results_share_one_empty_tuple() -> None:
    compiled = policy()
    a = evaluate_resource(res(GOOD, n=1), compiled)
    b = evaluate_resource(res(GOOD, n=2), compiled)
    assert a.violations is b.violations
    assert a.violations == ()


def test_resource_evaluation_compliant_property() -> None:
    r = res({})
    assert ResourceEvaluation(r, True, ()).compliant
    assert not ResourceEvaluation(r, False, ()).compliant


def test_caches_do_not_change_results() -> None:
    compiled = policy()
    bad = {**GOOD, "Environment": "prod"}
    batch = [GOOD, bad, GOOD, bad]
    first = [evaluate_resource(res(t, n=i), compiled).violations for i, t in enumerate(batch)]
    fresh = [evaluate_resource(res(t, n=i), policy()).violations for i, t in enumerate(batch)]
    assert first == fresh
    assert first[0] == () and len(first[1]) == 1


def test_policy_hash_is_the_content_hash() -> None:
    p = load_policy(BASE)
    assert compile_policy(p).policy_hash == p.content_hash()


def test_default_example_on_a_realistic_resource() -> None:
    compiled = compile_policy(load_policy_file(EXAMPLES / "default.json"))
    tags = {"CostCenter": "Engineering", "Owner": "ops@example.com", "Environment": "production",
            "Application": "billing-api", "Name": "billing api #1"}
    (v,) = violations(tags, compiled)
    assert v.rule_id == "naming_rule:Name:value_characters" and v.suggestion == "billing api -1"
    del tags["Name"]
    assert violations(tags, compiled) == []
    # ec2:volume is outside Application's applies_to, the other three still apply.
    assert [v.tag_name for v in violations({}, compiled, "ec2:volume")] == [
        "CostCenter", "Owner", "Environment"]


def test_evaluate_restores_the_garbage_collector_state() -> None:
    import gc

    assert gc.isenabled()
    evaluate([res(GOOD)], policy())
    assert gc.isenabled()

    def broken() -> Any:
        yield res(GOOD)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        evaluate(broken(), policy())
    assert gc.isenabled()
    gc.disable()
    try:
        evaluate([res(GOOD)], policy())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_caches_stay_bounded_and_results_stay_right(monkeypatch: pytest.MonkeyPatch) -> None:
    import policies.engine as engine

    monkeypatch.setattr(engine, "_CACHE_LIMIT", 8)
    compiled = naming(allow_special_characters=False)
    batch = [res({**GOOD, "Owner": f"user{i}@example.com", f"Key{i}": f"v{i}",
                  "Environment": "prod" if i % 3 == 0 else "test"}, n=i) for i in range(200)]
    result = evaluate(batch, compiled)
    assert result.compliant == 200 - len(range(0, 200, 3))
    assert all(len(r.violations) == (1 if i % 3 == 0 else 0) for i, r in enumerate(result.results))
    rs = compiled._ruleset("ec2:instance")
    assert rs is not None
    assert len(rs.good_keys) <= 8 and len(compiled._good_values) <= 8
    assert all(len(rule.known_good) <= 8 for rule in rs.rules)
