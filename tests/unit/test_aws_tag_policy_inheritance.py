"""Effective tag policies: every documented AWS example, every inheritance rule, and properties.

Documentation examples reproduced here (input policies -> expected effective policy, compared with
the JSON AWS prints):

* AWS Organizations User Guide, "Inheritance examples" (inheritance-examples.html; also the
  "Policy inheritance examples" section of "Policy syntax and inheritance for management policy
  types" in the awsdocs/aws-organizations-docs archive):
  Example 1 (child overwrites tag values with @@assign), Example 2 (@@append), Example 3 (@@remove),
  Example 4 (a child uses an operator its parent forbids: the tag_key change is ignored),
  Example 5 (child control operators at one level intersect; the page shows no resulting policy, so
  the expected results are derived from its text), Example 6 (the first policy attached at a level
  wins a conflicting @@assign).
* AWS Organizations User Guide, "Tag policy syntax and examples": the basic syntax example (both the
  ``secretsmanager:*`` and the ``300*`` / ``secretsmanager:ALL_SUPPORTED`` versions), and "Define
  organization-wide tag key case" + "Define values" (policy A at the root locks the keys with
  @@none, policy B at an account assigns values; the expected effective policy is the page's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.aws.inheritance import EffectiveTagPolicy, effective_policy
from policies.aws.tag_policy import TagPolicyDoc, parse_tag_policy
from policies.policy import PolicyError

# --- the documentation's policies, as the pages print them --------------------------------------------

POLICY_A = {"tags": {"costcenter": {"tag_key": {"@@assign": "CostCenter"},
                                    "tag_value": {"@@assign": ["Development", "Support"]}}}}
POLICY_B = {"tags": {"costcenter": {"tag_key": {"@@assign": "CostCenter"},
                                    "tag_value": {"@@assign": ["Sandbox"]},
                                    "enforced_for": {"@@assign": ["redshift:*", "dynamodb:table"]}}}}
POLICY_C = {"tags": {"costcenter": {"tag_key": {"@@assign": "CostCenter"},
                                    "tag_value": {"@@append": ["Marketing"]},
                                    "enforced_for": {"@@append": ["redshift:*", "dynamodb:table"]}}}}
# Policy D exactly as printed: the page nests enforced_for INSIDE tag_value, which is not valid syntax.
POLICY_D_AS_PRINTED = {"tags": {"costcenter": {
    "tag_key": {"@@assign": "CostCenter"},
    "tag_value": {"@@remove": ["Development", "Marketing"],
                  "enforced_for": {"@@remove": ["redshift:*", "dynamodb:table"]}}}}}
# Policy D as the page's text and result mean it: enforced_for next to tag_value.
POLICY_D = {"tags": {"costcenter": {"tag_key": {"@@assign": "CostCenter"},
                                    "tag_value": {"@@remove": ["Development", "Marketing"]},
                                    "enforced_for": {"@@remove": ["redshift:*", "dynamodb:table"]}}}}
POLICY_E = {"tags": {"project": {
    "tag_key": {"@@operators_allowed_for_child_policies": ["@@none"], "@@assign": "Project"},
    "tag_value": {"@@operators_allowed_for_child_policies": ["@@append"],
                  "@@assign": ["Maintenance", "Escalations"]}}}}
POLICY_F = {"tags": {"project": {"tag_key": {"@@assign": "PROJECT"},
                                 "tag_value": {"@@append": ["Escalations - research"]}}}}
POLICY_G = {"tags": {"project": {"tag_value": {"@@operators_allowed_for_child_policies": ["@@append"],
                                               "@@assign": ["Maintenance"]}}}}
POLICY_H = {"tags": {"project": {"tag_value": {
    "@@operators_allowed_for_child_policies": ["@@append", "@@remove"]}}}}
POLICY_J = {"tags": {"project": {"tag_key": {"@@assign": "PROJECT"}, "tag_value": {"@@append": ["Maintenance"]}}}}
POLICY_K = {"tags": {"project": {"tag_key": {"@@assign": "project"}}}}

SYNTAX_BASIC = {"tags": {"costcenter": {"tag_key": {"@@assign": "CostCenter"},
                                       "tag_value": {"@@assign": ["100", "200"]},
                                       "enforced_for": {"@@assign": ["secretsmanager:*"]}}}}
SYNTAX_BASIC_CURRENT = {"tags": {"costcenter": {"tag_key": {"@@assign": "CostCenter"},
                                               "tag_value": {"@@assign": ["100", "200", "300*"]},
                                               "enforced_for": {"@@assign": ["secretsmanager:ALL_SUPPORTED"]}}}}
KEY_CASE_ROOT = {"tags": {
    "CostCenter": {"tag_key": {"@@assign": "CostCenter", "@@operators_allowed_for_child_policies": ["@@none"]}},
    "Project": {"tag_key": {"@@assign": "Project", "@@operators_allowed_for_child_policies": ["@@none"]}}}}
DEFINE_VALUES_ACCOUNT = {"tags": {"CostCenter": {"tag_value": {"@@assign": ["Production", "Test"]}},
                                  "Project": {"tag_value": {"@@assign": ["A", "B"]}}}}


def doc(data: dict[str, Any], ident: str, target: str) -> TagPolicyDoc:
    return parse_tag_policy(data, policy_id=ident, target=target)


def aws(levels: Sequence[Sequence[TagPolicyDoc]]) -> dict[str, Any]:
    return effective_policy(levels).to_aws_json()


A = doc(POLICY_A, "A", "root")


# --- "Inheritance examples" ---------------------------------------------------------------------------------


def test_example_1_child_overwrites_only_tag_values() -> None:
    """Inheritance examples, Example 1: policy A at the root, policy B (@@assign) at OU1; the effective
    policy of accounts 111111111111 and 222222222222."""
    assert aws([[A], [doc(POLICY_B, "B", "OU1")]]) == {"tags": {"costcenter": {
        "tag_key": "CostCenter", "tag_value": ["Sandbox"], "enforced_for": ["redshift:*", "dynamodb:table"]}}}


def test_example_2_append_new_values_to_inherited_tags() -> None:
    """Inheritance examples, Example 2: policy C (@@append) at OU2; account 999999999999."""
    assert aws([[A], [doc(POLICY_C, "C", "OU2")]]) == {"tags": {"costcenter": {
        "tag_key": "CostCenter", "tag_value": ["Development", "Support", "Marketing"],
        "enforced_for": ["redshift:*", "dynamodb:table"]}}}


def test_example_3_remove_values_from_inherited_tags() -> None:
    """Inheritance examples, Example 3: A (root), C (OU2) and D (@@remove, account 999999999999).
    The page prints D with enforced_for nested inside tag_value; its text and result (no enforced_for
    left) mean enforced_for beside tag_value, which is what is merged here."""
    levels = [[A], [doc(POLICY_C, "C", "OU2")], [doc(POLICY_D, "D", "account 999999999999")]]
    assert aws(levels) == {"tags": {"costcenter": {"tag_key": "CostCenter", "tag_value": ["Support"]}}}
    # "If you later add more accounts to OU2, their effective tag policies would be different":
    # without D they get Example 2's policy.
    assert aws(levels[:2])["tags"]["costcenter"]["tag_value"] == ["Development", "Support", "Marketing"]


def test_example_3_policy_d_as_printed_is_rejected_at_the_misplaced_key() -> None:
    """Inheritance examples, Example 3: the printed policy D is not valid syntax; the error says where."""
    with pytest.raises(PolicyError) as err:
        parse_tag_policy(POLICY_D_AS_PRINTED)
    [problem] = err.value.problems
    assert problem.location == "tags.costcenter.tag_value.enforced_for"
    assert "belongs next to tag_value" in problem.message


def test_example_4_child_uses_an_operator_its_parent_forbids() -> None:
    """Inheritance examples, Example 4: E at the root locks tag_key (@@none) and allows only @@append on
    tag_value; F at an OU tries to change the case to PROJECT (ignored) and appends a value (kept)."""
    result = effective_policy([[doc(POLICY_E, "E", "root")], [doc(POLICY_F, "F", "OU")]])
    assert result.to_aws_json() == {"tags": {"project": {
        "tag_key": "Project", "tag_value": ["Maintenance", "Escalations", "Escalations - research"]}}}
    [ignored] = result.ignored
    assert ignored.policy == "aws:F (OU)" and ignored.location == "tags.project.tag_key.@@assign"
    assert "@@none" in ignored.reason


def test_example_4_tag_value_allows_only_append_despite_the_pages_wording() -> None:
    """Inheritance examples, Example 4 says children "can overwrite or append tag values", but E lists
    only @@append; the operator list is what is enforced, so an @@assign below E is ignored."""
    child = doc({"tags": {"project": {"tag_value": {"@@assign": ["Other"]}}}}, "X", "OU")
    result = effective_policy([[doc(POLICY_E, "E", "root")], [child]])
    assert result.tags["project"].tag_value == ("Maintenance", "Escalations")
    assert [i.location for i in result.ignored] == ["tags.project.tag_value.@@assign"]


def test_example_5_child_control_operators_at_one_level_intersect() -> None:
    """Inheritance examples, Example 5: G ([@@append]) and H ([@@append, @@remove]) at the root; the
    intersection, @@append, binds children: they can append but cannot remove Maintenance. (The page
    gives no resulting policy; these results follow from its text.)"""
    root = [doc(POLICY_G, "G", "root"), doc(POLICY_H, "H", "root")]
    assert aws([root]) == {"tags": {"project": {"tag_key": "project", "tag_value": ["Maintenance"]}}}
    child = doc({"tags": {"project": {"tag_value": {"@@append": ["Research"], "@@remove": ["Maintenance"]}}}},
                "child", "OU")
    result = effective_policy([root, [child]])
    assert result.tags["project"].tag_value == ("Maintenance", "Research")
    assert [i.location for i in result.ignored] == ["tags.project.tag_value.@@remove"]
    # The order of G and H does not matter: intersection is symmetric.
    assert effective_policy([root[::-1], [child]]).tags["project"].tag_value == ("Maintenance", "Research")


def test_example_6_first_policy_attached_at_a_level_wins() -> None:
    """Inheritance examples, Example 6: J attached to the root first, then K; J's PROJECT wins."""
    j, k = doc(POLICY_J, "J", "root"), doc(POLICY_K, "K", "root")
    assert aws([[j, k]]) == {"tags": {"project": {"tag_key": "PROJECT", "tag_value": ["Maintenance"]}}}
    # Detach and reattach J (K is now first): K's spelling wins. Derived from the page's text.
    assert aws([[k, j]])["tags"]["project"]["tag_key"] == "project"
    assert [str(i) for i in effective_policy([[j, k]]).ignored] == [
        "aws:K (root): tags.project.tag_key.@@assign ignored: aws:J (root) at the same level assigned it "
        "first (the first attached policy wins)"]


# --- "Tag policy syntax and examples" --------------------------------------------------------------------


@pytest.mark.parametrize("policy", [SYNTAX_BASIC, SYNTAX_BASIC_CURRENT])
def test_syntax_page_basic_example_is_its_own_effective_policy(policy: dict[str, Any]) -> None:
    """Tag policy syntax and examples, "Tag policy syntax": the basic example alone at the root."""
    key = policy["tags"]["costcenter"]
    assert aws([[doc(policy, "basic", "root")]]) == {"tags": {"costcenter": {
        "tag_key": "CostCenter", "tag_value": key["tag_value"]["@@assign"],
        "enforced_for": key["enforced_for"]["@@assign"]}}}


def test_syntax_page_key_case_then_values_example() -> None:
    """Tag policy syntax and examples, "Define organization-wide tag key case" (policy A, root) and
    "Define values" (policy B, account): "Policy A + Policy B = effective tag policy for account"."""
    levels = [[doc(KEY_CASE_ROOT, "A", "root")], [doc(DEFINE_VALUES_ACCOUNT, "B", "account")]]
    assert aws(levels) == {"tags": {
        "Project": {"tag_value": ["A", "B"], "tag_key": "Project"},
        "CostCenter": {"tag_value": ["Production", "Test"], "tag_key": "CostCenter"}}}
    # The lock is on tag_key only: B's values are not restricted.
    assert effective_policy(levels).ignored == ()


# --- each inheritance rule --------------------------------------------------------------------------------


def p(tags: dict[str, Any], ident: str = "p", target: str = "root", **top: Any) -> TagPolicyDoc:
    return parse_tag_policy({"tags": tags, **top}, policy_id=ident, target=target)


def values(result: EffectiveTagPolicy, key: str = "cc") -> tuple[str, ...] | None:
    return result.tags[key].tag_value


ROOT = p({"cc": {"tag_key": {"@@assign": "CC"}, "tag_value": {"@@assign": ["a", "b"]},
                 "report_required_tag_for": {"@@assign": ["ec2:instance"]}}}, "root")


def test_assign_replaces_an_inherited_list_and_the_tag_key() -> None:
    child = p({"cc": {"tag_key": {"@@assign": "cC"}, "tag_value": {"@@assign": ["z"]},
                      "report_required_tag_for": {"@@assign": ["s3:bucket"]}}}, "child", "OU")
    tag = effective_policy([[ROOT], [child]]).tags["cc"]
    assert (tag.tag_key, tag.tag_value, tag.report_required_tag_for) == ("cC", ("z",), ("s3:bucket",))


def test_assign_of_an_empty_list_clears_it() -> None:
    child = p({"cc": {"report_required_tag_for": {"@@assign": []}}}, "child", "OU")
    assert effective_policy([[ROOT], [child]]).to_aws_json() == {
        "tags": {"cc": {"tag_key": "CC", "tag_value": ["a", "b"]}}}


def test_append_adds_only_new_values_in_order_and_creates_missing_lists() -> None:
    child = p({"cc": {"tag_value": {"@@append": ["b", "c", "d"]}, "enforced_for": {"@@append": ["ec2:volume"]}}},
              "child", "OU")
    tag = effective_policy([[ROOT], [child]]).tags["cc"]
    assert tag.tag_value == ("a", "b", "c", "d") and tag.enforced_for == ("ec2:volume",)


def test_remove_takes_away_present_values_and_ignores_absent_ones() -> None:
    child = p({"cc": {"tag_value": {"@@remove": ["a", "nope"]}, "enforced_for": {"@@remove": ["ec2:volume"]}}},
              "child", "OU")
    tag = effective_policy([[ROOT], [child]]).tags["cc"]
    assert tag.tag_value == ("b",) and tag.enforced_for == ()


def test_removing_every_value_leaves_no_value_list() -> None:
    child = p({"cc": {"tag_value": {"@@remove": ["a", "b"]}}}, "child", "OU")
    result = effective_policy([[ROOT], [child]])
    assert values(result) is None and "tag_value" not in result.to_aws_json()["tags"]["cc"]


def test_without_tag_key_the_lowercase_policy_key_is_the_required_spelling() -> None:
    result = effective_policy([[p({"CostCenter": {"tag_value": {"@@assign": ["1"]}}})]])
    assert result.to_aws_json() == {"tags": {"CostCenter": {"tag_key": "costcenter", "tag_value": ["1"]}}}


def test_a_key_appears_only_once_something_took_effect() -> None:
    only_limits = p({"cc": {"@@operators_allowed_for_child_policies": ["@@none"]}})
    assert effective_policy([[only_limits]]).tags == {}
    remove_nothing = p({"cc": {"tag_value": {"@@remove": ["x"]}}})
    assert effective_policy([[remove_nothing]]).tags == {}
    assert effective_policy([]).to_aws_json() == {"tags": {}}
    assert effective_policy([[], [ROOT], []]).tags["cc"].tag_key == "CC"


@pytest.mark.parametrize(("level", "allowed", "kept"), [
    ("field", ["@@none"], []),
    ("field", ["@@append"], ["@@append"]),
    ("field", ["@@assign", "@@remove"], ["@@assign", "@@remove"]),
    ("field", ["@@all"], ["@@assign", "@@append", "@@remove"]),
    # A key-level limit covers every field of the key.
    ("key", ["@@remove"], ["@@remove"]),
])
def test_child_control_decides_which_operators_of_a_child_take_effect(
        level: str, allowed: list[str], kept: list[str]) -> None:
    control = {"@@operators_allowed_for_child_policies": allowed}
    tag_value: dict[str, Any] = {"@@assign": ["a", "b"], **(control if level == "field" else {})}
    root = p({"cc": {"tag_value": tag_value, **(control if level == "key" else {})}})
    for op, result_if_kept in (("@@assign", ("x",)), ("@@append", ("a", "b", "x")), ("@@remove", ("b",))):
        operand = ["x"] if op != "@@remove" else ["a"]
        child = p({"cc": {"tag_value": {op: operand}}}, "child", "OU")
        result = effective_policy([[root], [child]])
        if op in kept:
            assert values(result) == result_if_kept and result.ignored == ()
        else:
            assert values(result) == ("a", "b")
            assert [i.location for i in result.ignored] == [f"tags.cc.tag_value.{op}"]


@pytest.mark.parametrize("where", ["document", "tags"])
def test_a_document_wide_limit_covers_every_key_including_new_ones(where: str) -> None:
    control = {"@@operators_allowed_for_child_policies": ["@@none"]}
    tags: dict[str, Any] = {"cc": {"tag_value": {"@@assign": ["a"]}}}
    root = p({**tags, **control}) if where == "tags" else p(tags, **control)
    child = p({"cc": {"tag_value": {"@@append": ["b"]}}, "new": {"tag_key": {"@@assign": "New"}}}, "child", "OU")
    result = effective_policy([[root], [child]])
    assert result.to_aws_json() == {"tags": {"cc": {"tag_key": "cc", "tag_value": ["a"]}}}
    assert {i.location for i in result.ignored} == {"tags.cc.tag_value.@@append", "tags.new.tag_key.@@assign"}


def test_limits_are_inherited_through_levels_that_do_not_restate_them() -> None:
    root = p({"cc": {"tag_key": {"@@assign": "CC", "@@operators_allowed_for_child_policies": ["@@none"]}}})
    ou = p({"other": {"tag_key": {"@@assign": "Other"}}}, "ou", "OU")
    account = p({"cc": {"tag_key": {"@@assign": "cc"}}}, "acct", "account")
    result = effective_policy([[root], [ou], [account]])
    assert result.tags["cc"].tag_key == "CC"
    assert [i.policy for i in result.ignored] == ["aws:acct (account)"]


def test_a_child_cannot_widen_what_a_parent_forbade() -> None:
    root = p({"cc": {"tag_value": {"@@assign": ["a"], "@@operators_allowed_for_child_policies": ["@@append"]}}})
    ou = p({"cc": {"tag_value": {"@@append": ["b"], "@@operators_allowed_for_child_policies": ["@@all"]}}},
           "ou", "OU")
    account = p({"cc": {"tag_value": {"@@assign": ["z"]}}}, "acct", "account")
    result = effective_policy([[root], [ou], [account]])
    assert values(result) == ("a", "b")
    assert [i.location for i in result.ignored] == ["tags.cc.tag_value.@@assign"]


def test_a_parent_can_narrow_further_for_the_levels_below_it() -> None:
    limit = "@@operators_allowed_for_child_policies"
    root = p({"cc": {"tag_value": {"@@assign": ["a"], limit: ["@@append", "@@remove"]}}})
    ou = p({"cc": {"tag_value": {"@@append": ["b"], limit: ["@@remove"]}}}, "ou", "OU")
    account = p({"cc": {"tag_value": {"@@append": ["c"], "@@remove": ["a"]}}}, "acct", "account")
    result = effective_policy([[root], [ou], [account]])
    assert values(result) == ("b",)
    assert [i.location for i in result.ignored] == ["tags.cc.tag_value.@@append"]


def test_limits_do_not_bind_policies_attached_at_the_same_level() -> None:
    locker = p({"cc": {"tag_value": {"@@assign": ["a"], "@@operators_allowed_for_child_policies": ["@@none"]}}},
               "locker")
    sibling = p({"cc": {"tag_value": {"@@append": ["b"]}}}, "sibling")
    assert values(effective_policy([[locker, sibling]])) == ("a", "b")
    # ...but they bind the next level.
    child = p({"cc": {"tag_value": {"@@append": ["c"]}}}, "child", "OU")
    assert values(effective_policy([[locker, sibling], [child]])) == ("a", "b")


def test_same_level_first_assignment_of_a_list_wins_then_appends_then_removes() -> None:
    first = p({"cc": {"tag_value": {"@@assign": ["a", "b"], "@@remove": ["c"]}}}, "first")
    second = p({"cc": {"tag_value": {"@@assign": ["z"], "@@append": ["c", "d"]}}}, "second")
    result = effective_policy([[first, second]])
    # second's @@assign loses to first's; its @@append still counts; first's @@remove runs last.
    assert values(result) == ("a", "b", "d")
    assert [str(i) for i in result.ignored] == [
        "aws:second (root): tags.cc.tag_value.@@assign ignored: aws:first (root) at the same level "
        "assigned it first (the first attached policy wins)"]


def test_a_level_assignment_replaces_what_the_levels_above_set() -> None:
    a = p({"cc": {"tag_value": {"@@append": ["x"]}}}, "a", "OU")
    b = p({"cc": {"tag_value": {"@@assign": ["y"]}}}, "b", "OU")
    assert values(effective_policy([[ROOT], [a, b]])) == ("y", "x")


def test_policy_keys_match_ignoring_case_and_keep_the_first_spelling() -> None:
    child = p({"CC": {"tag_value": {"@@append": ["c"]}}}, "child", "OU")
    result = effective_policy([[ROOT], [child]])
    assert list(result.to_aws_json()["tags"]) == ["cc"] and values(result) == ("a", "b", "c")


def test_sources_name_the_policies_that_shaped_each_key() -> None:
    ou = p({"cc": {"tag_value": {"@@append": ["c"]}}, "owner": {"tag_key": {"@@assign": "Owner"}}}, "p-ou", "OU Prod")
    account = p({"cc": {"tag_value": {"@@remove": ["nope"]}}}, "p-acct", "account 1")
    result = effective_policy([[ROOT], [ou], [account]])
    assert result.tags["cc"].sources == ("aws:root (root)", "aws:p-ou (OU Prod)", "aws:p-acct (account 1)")
    assert result.tags["owner"].sources == ("aws:p-ou (OU Prod)",)
    # An @@assign makes the earlier contributors of that field irrelevant.
    reset = p({"cc": {"tag_key": {"@@assign": "Cc"}, "tag_value": {"@@assign": ["q"]},
                      "report_required_tag_for": {"@@assign": []}}}, "p-reset", "account 2")
    assert effective_policy([[ROOT], [reset]]).tags["cc"].sources == ("aws:p-reset (account 2)",)


def test_rendering_is_the_aws_display_shape() -> None:
    result = effective_policy([[ROOT]])
    assert result.to_aws_text(indent=2).startswith('{\n  "tags": {\n    "cc": {\n      "tag_key": "CC"')
    assert result.to_aws_json() == {"tags": {"cc": {"tag_key": "CC", "tag_value": ["a", "b"],
                                                    "report_required_tag_for": ["ec2:instance"]}}}


# --- properties ---------------------------------------------------------------------------------------------

_VALUE = st.text(st.sampled_from("abcXYZ09-_ @."), min_size=0, max_size=6)
_VALUES = st.lists(_VALUE, max_size=5)
_TYPES = st.lists(st.sampled_from(["ec2:instance", "ec2:volume", "s3:bucket", "rds:ALL_SUPPORTED", "lambda:*"]),
                  max_size=4)
_KEYS = st.lists(st.sampled_from(["costcenter", "owner", "env", "project"]), min_size=1, max_size=4, unique=True)


@st.composite
def assign_only_policies(draw: st.DrawFn) -> dict[str, Any]:
    tags: dict[str, Any] = {}
    for key in draw(_KEYS):
        body: dict[str, Any] = {}
        if draw(st.booleans()):
            body["tag_key"] = {"@@assign": "".join(c.upper() if draw(st.booleans()) else c for c in key)}
        for name, strategy in (("tag_value", _VALUES), ("enforced_for", _TYPES), ("report_required_tag_for", _TYPES)):
            if draw(st.booleans()):
                operator = draw(st.sampled_from(["@@assign", "@@append"]))
                body[name] = {operator: draw(strategy)}
        tags[key] = body
    return {"tags": tags}


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@settings(max_examples=150, deadline=None)
@given(assign_only_policies())
def test_property_a_single_policy_is_its_own_effective_policy(data: dict[str, Any]) -> None:
    result = effective_policy([[parse_tag_policy(data)]])
    for key, body in data["tags"].items():
        if not body:
            # A key that states nothing has nothing to show.
            assert key not in result.tags
            continue
        expected: dict[str, Any] = {"tag_key": body.get("tag_key", {}).get("@@assign", key)}
        for name in ("tag_value", "enforced_for", "report_required_tag_for"):
            operand = next(iter(body[name].values())) if name in body else []
            if operand:
                expected[name] = _dedupe(operand)
        assert result.tags[key].to_aws_json() == expected


@settings(max_examples=150, deadline=None)
@given(_VALUES, _VALUE, st.booleans())
def test_property_append_then_remove_of_a_new_value_restores_the_parents_list(
        parent_values: list[str], value: str, same_level: bool) -> None:
    if value in parent_values:
        value += "-new"
    parent = p({"cc": {"tag_value": {"@@assign": parent_values}}}, "parent")
    expected = effective_policy([[parent]]).tags["cc"].tag_value
    if same_level:
        child = p({"cc": {"tag_value": {"@@append": [value], "@@remove": [value]}}}, "child", "OU")
        levels = [[parent], [child]]
    else:
        levels = [[parent], [p({"cc": {"tag_value": {"@@append": [value]}}}, "ou", "OU")],
                  [p({"cc": {"tag_value": {"@@remove": [value]}}}, "acct", "account")]]
    assert effective_policy(levels).tags["cc"].tag_value == expected


@settings(max_examples=100, deadline=None)
@given(assign_only_policies(), assign_only_policies())
def test_property_a_locked_parent_ignores_every_child_operation(parent: dict[str, Any], child: dict[str, Any]) -> None:
    locked = parse_tag_policy({**parent, "@@operators_allowed_for_child_policies": ["@@none"]})
    alone = effective_policy([[locked]])
    merged = effective_policy([[locked], [parse_tag_policy(child, policy_id="child")]])
    assert merged.to_aws_json() == alone.to_aws_json()
    assert all(i.policy == "aws:child" for i in merged.ignored)
