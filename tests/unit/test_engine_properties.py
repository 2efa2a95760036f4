"""Property tests for the engine: invariants, and agreement with a naive reference evaluator.

The reference below implements the documented semantics in the plainest way (no caches, no fast
path, regexes for wildcards, ``str.isalnum`` for characters). The engine is checked against it on
random policies and random tag sets evaluated in sequence, so cache warm-up is exercised too.
"""

from __future__ import annotations

import random
import re
import unicodedata
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from policies.engine import compile_policy, evaluate, evaluate_resource
from policies.models import Resource, Severity, ViolationType
from policies.policy import Policy, load_policy

TYPES = ["ec2:instance", "ec2:volume", "s3:bucket", "rds:db", "lambda:function"]
NAMES = ["CostCenter", "Owner", "Env", "Team", "Project"]
VALUES = ["Engineering", "Sales", "prod", "production", "dev", "alice@example.com", "bob@example.org",
          "PRJ-0042", "prj-42", "x", "", "  ", "a#b", "Ünïcode", "temp", "web-api"]
ALLOWED = [["Engineering", "Sales"], ["production", "staging", "dev"], ["*@example.com"], ["prod*"],
           ["*"], ["PRJ-*", "none"], ["a*b"], ["engineering"]]
REGEXES = ["PRJ-[0-9]{4}", "[a-z][a-z0-9-]{2,63}", "^[A-Za-z]+$", ".*", "[^#]*"]
PROHIBITED = ["tmp*", "*-old", "DeleteMe", "*"]
EXTRA_KEYS = ["Name", "tmpfile", "backup-old", "deleteme", "aws:createdBy", "AWS:x", "Na#me", "k" * 21,
              "costcenter", "COSTCENTER", "owner", "env", "ENV", "team", "project", "Cost Center"]


def _wild(pattern: str, value: str, case_sensitive: bool) -> bool:
    if not case_sensitive:
        pattern, value = pattern.casefold(), value.casefold()
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _char_ok(c: str) -> bool:
    return c.isalnum() or c in "_ .:/=+-@" or unicodedata.category(c) in ("Zs", "Zl", "Zp")


def reference(policy: Policy, r: Resource) -> set[tuple[Any, ...]] | None:
    """(rule_id, type, severity, current_value) of every violation; None when out of scope."""
    tags = dict(r.tags)
    rules = [(rule, True) for rule in policy.required_tags if rule.applies_to_type(r.resource_type)]
    if not rules:
        return None
    rules += [(rule, False) for rule in policy.optional_tags if rule.applies_to_type(r.resource_type)]
    cs = policy.tag_naming_rules.case_sensitivity
    out: set[tuple[Any, ...]] = set()
    for rule, required in rules:
        variants = sorted(k for k in tags if k.casefold() == rule.name.casefold() and k != rule.name)
        if cs:
            for i, k in enumerate(variants):
                rid = f"wrong_key_case:{rule.name}" + ("" if i == 0 else f":{k}")
                out.add((rid, ViolationType.WRONG_KEY_CASE, rule.severity, k))
        key = rule.name if rule.name in tags else (variants[0] if variants else None)
        if key is None:
            if required:
                out.add((f"missing_required_tag:{rule.name}", ViolationType.MISSING_REQUIRED_TAG,
                         rule.severity, None))
            continue
        value = tags[key]
        if required and not value.strip():
            out.add((f"missing_required_tag:{rule.name}", ViolationType.MISSING_REQUIRED_TAG,
                     rule.severity, value))
            continue
        if rule.allowed_values and not any(_wild(a, value, cs) for a in rule.allowed_values):
            out.add((f"invalid_value:{rule.name}", ViolationType.INVALID_VALUE, rule.severity, value))
        if rule.validation_regex and re.fullmatch(rule.validation_regex, value) is None:
            out.add((f"invalid_format:{rule.name}", ViolationType.INVALID_FORMAT, rule.severity, value))
    naming = policy.tag_naming_rules
    warn, nr = Severity.WARNING, ViolationType.NAMING_RULE
    for k, v in tags.items():
        if k.lower().startswith("aws:"):
            out.add((f"naming_rule:{k}:reserved_prefix", nr, warn, v))
        if any(_wild(p, k, False) for p in policy.prohibited_tags):
            out.add((f"prohibited_tag:{k}", ViolationType.PROHIBITED_TAG, Severity.ERROR, v))
        if len(k) > naming.max_key_length:
            out.add((f"naming_rule:{k}:key_length", nr, warn, v))
        if len(v) > naming.max_value_length:
            out.add((f"naming_rule:{k}:value_length", nr, warn, v))
        if not naming.allow_special_characters:
            if not all(map(_char_ok, k)):
                out.add((f"naming_rule:{k}:key_characters", nr, warn, v))
            if not all(map(_char_ok, v)):
                out.add((f"naming_rule:{k}:value_characters", nr, warn, v))
    user_tags = [k for k in tags if not k.lower().startswith("aws:")]
    if policy.max_tags is not None and len(user_tags) > policy.max_tags:
        out.add(("naming_rule:*:max_tags", nr, warn, str(len(user_tags))))
    return out


@st.composite
def rules(draw: st.DrawFn, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        rule: dict[str, Any] = {"name": name}
        if draw(st.booleans()):
            rule["allowed_values"] = draw(st.sampled_from(ALLOWED))
        if draw(st.integers(0, 2)) == 0:
            rule["validation_regex"] = draw(st.sampled_from(REGEXES))
        if draw(st.booleans()):
            rule["applies_to"] = draw(st.lists(st.sampled_from([*TYPES, "rds:*"]), min_size=1, max_size=3))
        if draw(st.booleans()):
            rule["severity"] = draw(st.sampled_from(["error", "warning"]))
        out.append(rule)
    return out


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    names = draw(st.permutations(NAMES))
    n_required = draw(st.integers(0, 3))
    n_optional = draw(st.integers(0, 2))
    data: dict[str, Any] = {
        "required_tags": draw(rules(names[:n_required])),
        "optional_tags": draw(rules(names[n_required:n_required + n_optional])),
        "prohibited_tags": draw(st.lists(st.sampled_from(PROHIBITED), max_size=2, unique=True)),
        "max_tags": draw(st.one_of(st.none(), st.integers(1, 8))),
        "tag_naming_rules": {
            "case_sensitivity": draw(st.booleans()),
            "allow_special_characters": draw(st.booleans()),
            "max_key_length": draw(st.integers(3, 20)),
            "max_value_length": draw(st.integers(3, 20)),
        },
    }
    # A prohibited pattern may not hit a defined tag (a load error); drop the ones that would.
    defined = [r["name"] for r in data["required_tags"] + data["optional_tags"]]
    data["prohibited_tags"] = [p for p in data["prohibited_tags"]
                               if not any(_wild(p, n, False) for n in defined)]
    return load_policy(data)


tag_sets = st.dictionaries(st.sampled_from(NAMES + EXTRA_KEYS),
                           st.one_of(st.sampled_from(VALUES), st.text(max_size=6)), max_size=9)


@st.composite
def resources(draw: st.DrawFn, max_size: int = 12) -> list[Resource]:
    tag_list = draw(st.lists(tag_sets, max_size=max_size))
    return [Resource(arn=f"arn:aws:x:us-east-1:1:r/{i}", resource_id=f"r-{i}",
                     resource_type=draw(st.sampled_from(TYPES)), account_id="1", region="us-east-1",
                     tags=tags)
            for i, tags in enumerate(tag_list)]


def summary(ev: Any) -> set[tuple[Any, ...]]:
    return {(v.rule_id, v.violation_type, v.severity, v.current_value) for v in ev.violations}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), resources())
def test_engine_agrees_with_reference(policy: Policy, batch: list[Resource]) -> None:
    compiled = compile_policy(policy)  # one compiled policy for the batch: caches fill as it goes
    for r in batch + batch:  # twice: the second pass runs on warm caches
        ev = evaluate_resource(r, compiled)
        expected = reference(policy, r)
        if expected is None:
            assert not ev.in_scope and ev.violations == ()
        else:
            assert ev.in_scope
            assert summary(ev) == expected
            assert len({v.rule_id for v in ev.violations}) == len(ev.violations)
            assert all(v.message and v.tag_name for v in ev.violations)


@given(policies(), resources())
def test_score_is_within_bounds_and_one_iff_no_in_scope_violations(policy: Policy,
                                                                    batch: list[Resource]) -> None:
    result = evaluate(batch, compile_policy(policy))
    assert 0.0 <= result.score <= 1.0
    clean = all(not r.violations for r in result.results if r.in_scope)
    assert (result.score == 1.0) is clean
    assert result.compliant <= result.in_scope <= result.total == len(batch)
    assert sum(1 for _ in result.violations()) == sum(len(r.violations) for r in result.results)


@given(policies(), resources(), st.randoms(use_true_random=False))
def test_evaluation_is_deterministic_and_order_independent(policy: Policy, batch: list[Resource],
                                                           rnd: random.Random) -> None:
    first = evaluate(batch, compile_policy(policy))
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    second = evaluate(shuffled, compile_policy(policy))
    assert (first.total, first.in_scope, first.compliant, first.score) == (
        second.total, second.in_scope, second.compliant, second.score)
    by_arn = {r.resource.arn: r.violations for r in second.results}
    for r in first.results:
        # Equal violations, in equal order, whatever came before.
        assert r.violations == by_arn[r.resource.arn]


@given(policies(), resources(), st.randoms(use_true_random=False))
def test_tag_insertion_order_does_not_matter(policy: Policy, batch: list[Resource],
                                             rnd: random.Random) -> None:
    compiled = compile_policy(policy)
    for r in batch:
        items = list(r.tags.items())
        rnd.shuffle(items)
        other = Resource(r.arn, r.resource_id, r.resource_type, r.account_id, r.region, dict(items))
        assert evaluate_resource(r, compiled).violations == evaluate_resource(other, compiled).violations


def _value_satisfying(allowed: list[str] | None, regex: str | None) -> str | None:
    """A value both constraints accept, when one is known for this vocabulary."""
    for cand in ["Engineering", "production", "alice@example.com", "prod-eu", "PRJ-0042", "web-api", "acb",
                 "engineering", "anything"]:
        if allowed and not any(_wild(a, cand, True) for a in allowed):
            continue
        if regex and re.fullmatch(regex, cand) is None:
            continue
        return cand
    return None


@given(policies(), st.sampled_from(TYPES))
def test_resource_with_exactly_allowed_values_has_no_violations(policy: Policy, rtype: str) -> None:
    tags: dict[str, str] = {}
    for rule, _required in policy.rules():
        if rule.applies_to_type(rtype):
            value = _value_satisfying(rule.allowed_values, rule.validation_regex)
            assume(value is not None)
            assert value is not None
            tags[rule.name] = value
    naming = policy.tag_naming_rules
    assume(all(len(k) <= naming.max_key_length for k in tags))
    assume(all(len(v) <= naming.max_value_length for v in tags.values()))
    assume(policy.max_tags is None or len(tags) <= policy.max_tags)
    r = Resource("arn:x", "x", rtype, "1", "us-east-1", tags)
    assert evaluate_resource(r, compile_policy(policy)).violations == ()


@given(st.text(max_size=30))
def test_star_alone_accepts_any_nonblank_text(value: str) -> None:
    compiled = compile_policy(load_policy({"required_tags": [{"name": "Team", "allowed_values": ["*"]}]}))
    ev = evaluate_resource(Resource("arn:x", "x", "ec2:instance", "1", "r", {"Team": value}), compiled)
    if value.strip():
        assert ev.violations == ()
    else:
        assert [v.violation_type for v in ev.violations] == [ViolationType.MISSING_REQUIRED_TAG]


@given(st.text(alphabet="abcP-", max_size=4), st.text(alphabet="abcP-", max_size=8))
def test_prefix_wildcard_accepts_exactly_values_with_that_prefix(prefix: str, value: str) -> None:
    compiled = compile_policy(load_policy({
        "optional_tags": [{"name": "Code", "allowed_values": [prefix + "*"]}],
        "required_tags": [{"name": "Owner"}]}))
    r = Resource("arn:x", "x", "ec2:instance", "1", "r", {"Owner": "o", "Code": value})
    assert (evaluate_resource(r, compiled).violations == ()) is value.startswith(prefix)


@given(policies(), st.sampled_from(TYPES), st.data())
def test_renaming_a_key_case_gives_wrong_key_case_not_missing(policy: Policy, rtype: str,
                                                              data: st.DataObject) -> None:
    applicable = [r for r in policy.required_tags if r.applies_to_type(rtype)]
    assume(applicable and policy.tag_naming_rules.case_sensitivity)
    rule = data.draw(st.sampled_from(applicable))
    variant = data.draw(st.sampled_from([rule.name.lower(), rule.name.upper(), rule.name.swapcase()]))
    assume(variant != rule.name)
    r = Resource("arn:x", "x", rtype, "1", "r", {variant: "Engineering"})
    found = {(v.violation_type, v.tag_name) for v in evaluate_resource(r, compile_policy(policy)).violations}
    assert (ViolationType.WRONG_KEY_CASE, rule.name) in found
    assert (ViolationType.MISSING_REQUIRED_TAG, rule.name) not in found


@given(policies(), resources(), st.sampled_from(TYPES))
def test_adding_a_compliant_resource_never_lowers_the_score(policy: Policy, batch: list[Resource],
                                                            rtype: str) -> None:
    compiled = compile_policy(policy)
    before = evaluate(batch, compiled)
    tags: dict[str, str] = {}
    for rule, _required in policy.rules():
        if rule.applies_to_type(rtype):
            value = _value_satisfying(rule.allowed_values, rule.validation_regex)
            assume(value is not None and len(value) <= policy.tag_naming_rules.max_value_length)
            assert value is not None
            tags[rule.name] = value
    assume(all(len(k) <= policy.tag_naming_rules.max_key_length for k in tags))
    assume(policy.max_tags is None or len(tags) <= policy.max_tags)
    extra = Resource("arn:extra", "extra", rtype, "1", "r", tags)
    after = evaluate([*batch, extra], compiled)
    assert after.score >= before.score
    bad = Resource("arn:bad", "bad", rtype, "1", "r", {"tmp-x": "1", "aws:y": "1"})
    worse = evaluate([*batch, bad], compiled)
    assert worse.score <= before.score
