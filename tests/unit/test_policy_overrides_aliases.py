"""Overrides (``Policy.for_account``), tag aliases, their lint codes, and unchanged dumps for plain policies.

Pins the semantics stated in ``policies.policy`` (``Override``, ``Policy.for_account``,
``Policy.alias_map``, ``alias_problems``) and the "Aliases" item of ``policies.engine``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import policies.lint as lint_module
from policies.engine import compile_policy, evaluate_resource
from policies.lint import LintFinding, lint_policy
from policies.models import Resource, Severity, ViolationType
from policies.policy import NamingRules, Override, Policy, PolicyError, TagRule, load_policy, load_policy_file
from scanner.providers.aws.registry import all_types

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
ACCOUNT = "111122223333"
OTHER = "999988887777"
ROOT, MID, LEAF = "r-ab12", "ou-ab12-11111111", "ou-ab12-22222222"
PATH = (ROOT, MID, LEAF)

BASE: dict[str, Any] = {
    "required_tags": [
        {"name": "CostCenter", "allowed_values": ["Engineering", "Sales"]},
        {"name": "Environment", "allowed_values": ["production", "staging", "development"]},
        {"name": "Owner", "allowed_values": ["*@example.com"]},
    ],
    "optional_tags": [{"name": "Project", "validation_regex": "PRJ-[0-9]{4}"}],
    "prohibited_tags": ["temp*"],
}


def with_overrides(*overrides: dict[str, Any], **policy: Any) -> Policy:
    return load_policy({**BASE, **policy, "overrides": list(overrides)})


def cost_center(ident: str, marker: str, **target: Any) -> dict[str, Any]:
    """An override that sets CostCenter's allowed values to ``[marker]`` (to see which one won)."""
    return {"id": ident, **target, "required_tags": [{"name": "CostCenter", "allowed_values": [marker]}]}


def allowed_cost_center(policy: Policy) -> list[str] | None:
    (rule,) = [r for r in policy.required_tags if r.name == "CostCenter"]
    return rule.allowed_values


def rules(policy: Policy) -> tuple[list[str], list[str]]:
    return [r.name for r in policy.required_tags], [r.name for r in policy.optional_tags]


def problems_of(data: Any) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        load_policy(data)
    return {p.location: p.message for p in info.value.problems}


def res(tags: dict[str, str], rtype: str = "ec2:instance") -> Resource:
    return Resource(arn=f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-0001", resource_id="i-0001",
                    resource_type=rtype, account_id=ACCOUNT, region="us-east-1", tags=tags)


# --- overrides: loading ---------------------------------------------------------------------------------


def test_override_loads_with_defaults_per_list() -> None:
    policy = with_overrides({"id": "data", "description": None, "organizational_units": [MID],
                             "required_tags": [{"name": "Team"}], "optional_tags": [{"name": "Ticket"}],
                             "remove_tags": None})
    (o,) = policy.overrides
    assert (o.id, o.description, o.accounts, o.organizational_units, o.remove_tags) == ("data", "", [], [MID], [])
    assert o.required_tags[0].severity is Severity.ERROR
    assert o.optional_tags[0].severity is Severity.WARNING


@pytest.mark.parametrize(("override", "location", "message"), [
    ({"accounts": [ACCOUNT]}, "overrides[0].id",
     'required key is missing; add "id": a short stable name, recorded as the source of the rules it brings'),
    ({"id": "x", "required_tags": [{"name": "Team"}]}, "overrides[0]",
     "the override targets nothing, so it never applies; list the accounts or organizational_units it is for"),
    ({"id": "x", "accounts": ["1234"]}, "overrides[0].accounts[0]",
     "account id '1234' must be the 12 digits of an AWS account, e.g. '123456789012'"),
    ({"id": "x", "organizational_units": ["Production"]}, "overrides[0].organizational_units[0]",
     "'Production' is not an organizational unit id; use the id, not the name: 'ou-ab12-cd34ef56' for an OU or "
     "'r-ab12' for the root (aws organizations list-organizational-units-for-parent)"),
    ({"id": "x", "accounts": [ACCOUNT], "remove_tags": ["owner"]}, "overrides[0].remove_tags[0]",
     "'owner' is not a tag the policy defines, so there is nothing to remove; did you mean 'Owner'?"),
    ({"id": "x", "accounts": [ACCOUNT], "remove_tags": ["Zzzzzz"]}, "overrides[0].remove_tags[0]",
     "'Zzzzzz' is not a tag the policy defines, so there is nothing to remove; remove it from remove_tags"),
    ({"id": "x", "accounts": [ACCOUNT], "required_tags": [{"name": "costcenter"}]},
     "overrides[0].required_tags[0].name",
     "tag name 'costcenter' differs only in case from 'CostCenter' at required_tags[0].name; spell it "
     "'CostCenter' to replace that rule (tag keys are case-sensitive)"),
    ({"id": "x", "accounts": [ACCOUNT], "optional_tags": [{"name": "Team", "required_for": []}]},
     "overrides[0].optional_tags[0].required_for",
     "required_for narrows where a required tag is required; an optional tag is never required — move the rule "
     "to required_tags or remove required_for"),
    ({"id": "x", "accounts": [ACCOUNT], "required_tags": [{"name": "Team", "allowed_value": ["a"]}]},
     "overrides[0].required_tags[0].allowed_value", "unknown key; did you mean 'allowed_values'?"),
    ({"id": "x", "accounts": [ACCOUNT], "remove": ["Owner"]}, "overrides[0].remove",
     "unknown key; did you mean 'remove_tags'?"),
    ({"id": "x", "accounts": [ACCOUNT], "required_tags": [{"name": "tempdir"}]}, "prohibited_tags[0]",
     "pattern 'temp*' prohibits tag 'tempdir' defined at overrides[0].required_tags[0].name; a tag cannot be "
     "both defined and prohibited"),
])
def test_bad_override_is_reported_at_its_path(override: dict[str, Any], location: str, message: str) -> None:
    assert problems_of({**BASE, "overrides": [override]}) == {location: message}


def test_one_override_may_not_define_a_tag_twice() -> None:
    found = problems_of({**BASE, "overrides": [{"id": "x", "accounts": [ACCOUNT], "required_tags": [{"name": "Team"}],
                                                "optional_tags": [{"name": "Team"}]}]})
    assert list(found) == ["overrides[0].optional_tags[0].name"]
    assert found["overrides[0].optional_tags[0].name"].startswith("duplicate tag name 'Team' at "
                                                                  "overrides[0].required_tags[0].name")


def test_override_ids_are_unique_and_remove_tags_may_name_another_overrides_tag() -> None:
    found = problems_of({**BASE, "overrides": [{"id": "x", "accounts": [ACCOUNT], "required_tags": [{"name": "Team"}]},
                                               {"id": "x", "accounts": [OTHER], "remove_tags": ["Team"]}]})
    assert found == {"overrides[1].id": "override id 'x' is already used by overrides[0]; ids must be unique so "
                                        "reports can tell them apart"}


# --- overrides: for_account -------------------------------------------------------------------------------

# Listed least specific last on purpose: list order must not beat specificity.
ORDERED = (
    cost_center("account", "Account", accounts=[ACCOUNT]),
    cost_center("leaf", "Leaf", organizational_units=[LEAF]),
    cost_center("mid", "Mid", organizational_units=[MID]),
    cost_center("root", "Root", organizational_units=[ROOT]),
)


@pytest.mark.parametrize(("account", "ou_path", "expected"), [
    (ACCOUNT, PATH, ["Account"]),
    (OTHER, PATH, ["Leaf"]),
    (OTHER, (ROOT, MID), ["Mid"]),
    (OTHER, (ROOT,), ["Root"]),
    (ACCOUNT, (), ["Account"]),
    (OTHER, (), ["Engineering", "Sales"]),  # nothing applies: the top-level rule
    (OTHER, ("ou-ab12-33333333",), ["Engineering", "Sales"]),
])
def test_most_specific_override_wins(account: str, ou_path: tuple[str, ...], expected: list[str]) -> None:
    assert allowed_cost_center(with_overrides(*ORDERED).for_account(account, ou_path)) == expected


def test_overrides_apply_root_to_leaf_then_account() -> None:
    # Each adds its own tag; the order they were applied in shows as the order tags were appended.
    targets = ("accounts", "organizational_units")
    policy = with_overrides(*[{"id": o["id"], **{k: v for k, v in o.items() if k in targets},
                               "required_tags": [{"name": f"Seen{o['id'].title()}"}]} for o in ORDERED])
    required, _ = rules(policy.for_account(ACCOUNT, PATH))
    assert required == ["CostCenter", "Environment", "Owner", "SeenRoot", "SeenMid", "SeenLeaf", "SeenAccount"]


def test_ties_keep_the_order_of_overrides() -> None:
    policy = with_overrides(cost_center("first", "First", organizational_units=[MID]),
                            cost_center("second", "Second", organizational_units=[MID]),
                            cost_center("acct-1", "Acct1", accounts=[ACCOUNT]),
                            cost_center("acct-2", "Acct2", accounts=[ACCOUNT]))
    assert allowed_cost_center(policy.for_account(OTHER, PATH)) == ["Second"]
    assert allowed_cost_center(policy.for_account(ACCOUNT, PATH)) == ["Acct2"]


def test_an_override_naming_several_ous_of_the_path_counts_at_the_deepest() -> None:
    policy = with_overrides(cost_center("root-and-leaf", "Deep", organizational_units=[LEAF, ROOT]),
                            cost_center("mid", "Mid", organizational_units=[MID]))
    assert allowed_cost_center(policy.for_account(OTHER, PATH)) == ["Deep"]
    # Without the leaf in the path it only counts at the root, so the mid one wins.
    assert allowed_cost_center(policy.for_account(OTHER, (ROOT, MID))) == ["Mid"]


def test_rank_for() -> None:
    both = Override(id="o", accounts=[ACCOUNT], organizational_units=[ROOT, MID])
    assert both.rank_for(ACCOUNT, PATH) == 3
    assert both.rank_for(OTHER, PATH) == 1
    assert both.rank_for(OTHER, (ROOT,)) == 0
    assert both.rank_for(OTHER, (LEAF,)) is None
    assert both.rank_for(ACCOUNT, ()) == 0


def test_remove_tags_drops_required_and_optional_rules_and_their_aliases() -> None:
    policy = with_overrides({"id": "sandbox", "accounts": [ACCOUNT], "remove_tags": ["Owner", "Project"]},
                            tag_aliases={"Owner": ["owner_email"], "Environment": ["env"]})
    effective = policy.for_account(ACCOUNT)
    assert rules(effective) == (["CostCenter", "Environment"], [])
    assert effective.tag_aliases == {"Environment": ["env"]}
    assert rules(policy.for_account(OTHER)) == (["CostCenter", "Environment", "Owner"], ["Project"])


def test_replacing_a_rule_keeps_its_place_and_new_rules_are_appended() -> None:
    policy = with_overrides({"id": "eu", "accounts": [ACCOUNT],
                             "required_tags": [{"name": "Environment", "allowed_values": ["prod"]}, {"name": "Team"}],
                             "optional_tags": [{"name": "Ticket"}]})
    effective = policy.for_account(ACCOUNT)
    assert rules(effective) == (["CostCenter", "Environment", "Owner", "Team"], ["Project", "Ticket"])
    assert effective.required_tags[1].allowed_values == ["prod"]


def test_a_rule_moves_between_required_and_optional() -> None:
    policy = with_overrides({"id": "move", "accounts": [ACCOUNT], "optional_tags": [{"name": "Owner"}],
                             "required_tags": [{"name": "Project", "validation_regex": "PRJ-[0-9]+"}]})
    effective = policy.for_account(ACCOUNT)
    assert rules(effective) == (["CostCenter", "Environment", "Project"], ["Owner"])
    owner = effective.optional_tags[0]
    assert owner.severity is Severity.WARNING and owner.allowed_values is None  # the override's rule, whole
    assert effective.required_tags[2].severity is Severity.ERROR
    # The engine agrees: Owner may be absent, Project may not.
    tags = {"CostCenter": "Sales", "Environment": "staging"}
    ev = evaluate_resource(res(tags), compile_policy(effective))
    assert [(v.rule_id, v.source) for v in ev.violations] == [("missing_required_tag:Project", "override:move")]


def test_rules_brought_by_an_override_record_it_as_their_source() -> None:
    policy = with_overrides({"id": "fin", "accounts": [ACCOUNT],
                             "required_tags": [{"name": "CostCenter", "allowed_values": ["Finance"]},
                                               {"name": "Team", "source": "TICKET-42"}]})
    effective = policy.for_account(ACCOUNT)
    assert [(r.name, r.source) for r in effective.required_tags] == [
        ("CostCenter", "override:fin"), ("Environment", None), ("Owner", None), ("Team", "TICKET-42")]
    # The override itself is not changed by resolving it.
    assert policy.overrides[0].required_tags[0].source is None
    ev = evaluate_resource(res({"CostCenter": "Sales"}), compile_policy(effective))
    assert (ev.violations[0].rule_id, ev.violations[0].source) == ("invalid_value:CostCenter", "override:fin")


def test_later_overrides_see_earlier_ones() -> None:
    policy = with_overrides({"id": "root", "organizational_units": [ROOT], "required_tags": [{"name": "Team"}]},
                            {"id": "leaf", "organizational_units": [LEAF], "remove_tags": ["Team"],
                             "optional_tags": [{"name": "Owner"}]})
    assert rules(policy.for_account(OTHER, PATH)) == (["CostCenter", "Environment"], ["Project", "Owner"])
    assert rules(policy.for_account(OTHER, (ROOT,))) == (["CostCenter", "Environment", "Owner", "Team"], ["Project"])


def test_result_has_no_overrides_keeps_exemptions_and_hashes_its_own_rules() -> None:
    exemption = {"id": "EXC-1", "reason": "legacy", "expires": "2030-01-01", "accounts": [ACCOUNT]}
    policy = with_overrides(cost_center("fin", "Finance", accounts=[ACCOUNT]), exemptions=[exemption])
    effective = policy.for_account(ACCOUNT)
    assert effective.overrides == [] and "overrides" not in effective.model_dump()
    assert [e.id for e in effective.exemptions] == ["EXC-1"]
    assert effective.content_hash() != policy.content_hash()
    assert effective.content_hash() != policy.for_account(OTHER).content_hash()
    # The hash identifies exactly the rules applied: writing them out by hand gives the same one.
    by_hand = load_policy({**BASE, "exemptions": [exemption], "required_tags": [
        {"name": "CostCenter", "allowed_values": ["Finance"], "source": "override:fin"}, *BASE["required_tags"][1:]]})
    assert effective.content_hash() == by_hand.content_hash()
    # Where nothing applies, the result is the top-level policy without its overrides.
    assert policy.for_account(OTHER).content_hash() == load_policy({**BASE, "exemptions": [exemption]}).content_hash()
    assert policy.for_account(OTHER).overrides == []


def test_for_account_leaves_the_policy_unchanged() -> None:
    policy = with_overrides(cost_center("fin", "Finance", accounts=[ACCOUNT]), tag_aliases={"Environment": ["env"]})
    before = policy.content_hash()
    policy.for_account(ACCOUNT)
    assert policy.content_hash() == before and len(policy.overrides) == 1
    assert allowed_cost_center(policy) == ["Engineering", "Sales"]


def test_aliases_of_override_only_tags_are_kept_only_where_the_tag_is_defined() -> None:
    policy = with_overrides({"id": "data", "organizational_units": [MID], "required_tags": [{"name": "Team"}]},
                            tag_aliases={"Team": ["squad"], "Environment": "env"})
    assert policy.for_account(OTHER, PATH).tag_aliases == {"Team": ["squad"], "Environment": ["env"]}
    assert policy.for_account(OTHER, (ROOT,)).tag_aliases == {"Environment": ["env"]}


# --- aliases: loading ----------------------------------------------------------------------------------


def test_alias_shorthand_and_null() -> None:
    policy = load_policy({**BASE, "tag_aliases": {"Environment": "env", "Owner": ["owner_email", "Contact"],
                                                  "CostCenter": None, "Project": []}})
    assert policy.tag_aliases == {"Environment": ["env"], "Owner": ["owner_email", "Contact"]}
    assert policy.alias_map() == {"env": "Environment", "owner_email": "Owner", "contact": "Owner"}


def test_canonical_tag_name() -> None:
    policy = load_policy({**BASE, "tag_aliases": {"Environment": ["env"]}})
    assert policy.canonical_tag_name("Environment") == "Environment"
    assert policy.canonical_tag_name("environment") == "Environment"  # a rule's name in any case
    assert policy.canonical_tag_name("ENV") == "Environment"  # an alias in any case
    assert policy.canonical_tag_name("project") == "Project"
    assert policy.canonical_tag_name("Name") is None


@pytest.mark.parametrize(("aliases", "expected"), [
    ({"Enviroment": ["env"]}, {"tag_aliases.Enviroment": "'Enviroment' is not a tag the policy defines, and aliases "
                                                         "point at a policy tag; did you mean 'Environment'?"}),
    ({"environment": ["env"]}, {"tag_aliases.environment": "'environment' is not a tag the policy defines, and "
                                                           "aliases point at a policy tag; did you mean "
                                                           "'Environment'?"}),
    ({"Team": []}, {"tag_aliases.Team": "'Team' is not a tag the policy defines, and aliases point at a policy tag; "
                                        "add the tag to required_tags or optional_tags, or remove the entry"}),
    ({"Environment": ["ENVIRONMENT"]}, {"tag_aliases.Environment[0]": "alias 'ENVIRONMENT' is 'Environment' in "
                                                                      "another case, which the engine already reports "
                                                                      "as a miscased key (wrong_key_case); remove it"}),
    ({"Environment": ["Environment"]}, {"tag_aliases.Environment[0]": "alias 'Environment' is the tag 'Environment' "
                                                                      "itself, which its rule already covers; remove "
                                                                      "it"}),
    ({"Environment": ["env", "owner"]}, {"tag_aliases.Environment[1]": "alias 'owner' is the policy tag 'Owner' "
                                                                       "(ignoring case), which has its own rule; a key "
                                                                       "cannot also stand for another tag: remove "
                                                                       "it"}),
    ({"Environment": ["env"], "Owner": ["ENV"]}, {"tag_aliases.Owner[0]": "alias 'ENV' is also listed under "
                                                                          "'Environment' (tag_aliases.Environment[0], "
                                                                          "compared ignoring case); an alias can stand "
                                                                          "for one tag only: keep it under one"}),
    ({"Environment": ["env*"]}, {"tag_aliases.Environment[0]": "tag name 'env*' contains '*'; tag names are literal "
                                                               "keys, not patterns"}),
    ({"Environment": ["aws:env"]}, {"tag_aliases.Environment[0]": "tag name 'aws:env' uses the prefix 'aws:', which "
                                                                  "AWS reserves for its own tags"}),
    ({"Environment": 5}, {"tag_aliases.Environment": "must be a list, got 5"}),
    ([], {"tag_aliases": "must be an object, got a list"}),
])
def test_alias_problems_are_reported_at_their_path(aliases: Any, expected: dict[str, str]) -> None:
    assert problems_of({**BASE, "tag_aliases": aliases}) == expected


def test_repeating_an_alias_under_the_same_tag_is_harmless() -> None:
    assert load_policy({**BASE, "tag_aliases": {"Environment": ["env", "ENV"]}}).alias_map() == {"env": "Environment"}


def test_aliases_may_point_at_a_tag_only_an_override_defines() -> None:
    policy = with_overrides({"id": "data", "accounts": [ACCOUNT], "required_tags": [{"name": "Team"}]},
                            tag_aliases={"Team": ["squad"]})
    assert policy.alias_map() == {"squad": "Team"}
    found = problems_of({**BASE, "tag_aliases": {"Team": ["squad"]}})
    assert list(found) == ["tag_aliases.Team"]


def test_policy_built_in_code_also_refuses_alias_conflicts() -> None:
    with pytest.raises(ValueError, match=r"tag_aliases\.Environment\[0\]: alias 'owner' is the policy tag 'Owner'"):
        Policy(required_tags=[TagRule(name="Environment"), TagRule(name="Owner")],
               tag_aliases={"Environment": ["owner"]})


# --- aliases in the engine -----------------------------------------------------------------------------


def aliased(**policy: Any) -> Any:
    return compile_policy(load_policy({**BASE, "tag_aliases": {"Environment": ["env", "stage"]}, **policy}))


FINE = {"CostCenter": "Sales", "Owner": "ops@example.com"}


def missing_environment(tags: dict[str, str], compiled: Any = None) -> tuple[str, str | None]:
    ev = evaluate_resource(res({**FINE, **tags}), compiled or aliased())
    (v,) = ev.violations
    assert v.rule_id == "missing_required_tag:Environment" and v.violation_type is ViolationType.MISSING_REQUIRED_TAG
    return v.message, v.suggestion


@pytest.mark.parametrize(("tags", "suggestion"), [
    ({"env": "prod"}, "rename tag 'env' (value 'prod') to 'Environment' and change its value to 'production'"),
    ({"env": "production"}, "rename tag 'env' (value 'production') to 'Environment'"),
    ({"ENV": "Staging"}, "rename tag 'ENV' (value 'Staging') to 'Environment' and change its value to 'staging'"),
    ({"env": "  "}, "rename tag 'env' to 'Environment' and set a value; allowed: production, staging, development"),
    ({"env": "zzz"}, "rename tag 'env' (value 'zzz') to 'Environment' and change its value to one of: production, "
                     "staging, development"),
    # The alias whose value the rule accepts is the one to rename, else the first in sorted order.
    ({"env": "prod", "stage": "staging"}, "rename tag 'stage' (value 'staging') to 'Environment'"),
    ({"stage": "qa", "env": "x"}, "rename tag 'env' (value 'x') to 'Environment' and change its value to one of: "
                                  "production, staging, development"),
])
def test_missing_tag_suggestion_names_the_alias_to_rename(tags: dict[str, str], suggestion: str) -> None:
    message, got = missing_environment(tags)
    assert message == "Required tag 'Environment' is missing; allowed: production, staging, development"
    assert got == suggestion


def test_alias_suggestion_for_a_format_rule() -> None:
    compiled = compile_policy(load_policy({"required_tags": [{"name": "Application",
                                                              "validation_regex": "[a-z][a-z0-9-]+"}],
                                           "tag_aliases": {"Application": ["app"]}}))

    def suggestion(value: str) -> str | None:
        (v,) = evaluate_resource(res({"app": value}), compiled).violations
        return v.suggestion

    assert suggestion("My App") == "rename tag 'app' (value 'My App') to 'Application' and change its value to 'my-app'"
    assert suggestion("web") == "rename tag 'app' (value 'web') to 'Application'"
    assert suggestion("1#") == "rename tag 'app' (value '1#') to 'Application' and change its value to match " \
                               "[a-z][a-z0-9-]+"


def test_without_the_alias_the_old_suggestion_stays() -> None:
    plain = compile_policy(load_policy(BASE))
    _, suggestion = missing_environment({"env": "prod"}, plain)
    assert suggestion == "rename key 'env' to 'Environment'"


def test_aliases_never_satisfy_the_rule() -> None:
    compiled = aliased()
    for tags in ({"env": "production"}, {"Env": "staging"}, {"stage": "development"}):
        ev = evaluate_resource(res({**FINE, **tags}), compiled)
        assert not ev.compliant
        assert [v.rule_id for v in ev.violations] == ["missing_required_tag:Environment"]
    # Nor with case_sensitivity false, where case variants of the name itself do satisfy it.
    loose = aliased(tag_naming_rules={"case_sensitivity": False})
    assert not evaluate_resource(res({**FINE, "env": "production"}), loose).compliant
    assert evaluate_resource(res({**FINE, "ENVIRONMENT": "production"}), loose).compliant


def test_alias_suggestions_follow_each_resources_value() -> None:
    compiled = aliased()
    first = missing_environment({"env": "prod"}, compiled)[1]
    second = missing_environment({"env": "dev"}, compiled)[1]
    again = missing_environment({"env": "prod"}, compiled)[1]
    assert first == again == "rename tag 'env' (value 'prod') to 'Environment' and change its value to 'production'"
    assert second == "rename tag 'env' (value 'dev') to 'Environment' and change its value to 'development'"


def test_aliases_shape_only_the_missing_tag_suggestion() -> None:
    # An optional tag's alias changes nothing: an absent optional tag is fine.
    compiled = compile_policy(load_policy({**BASE, "tag_aliases": {"Project": ["proj"]}}))
    ev = evaluate_resource(res({**FINE, "Environment": "staging", "proj": "nonsense"}), compiled)
    assert ev.compliant


# --- a policy without the extensions dumps and hashes as before -------------------------------------------

# Computed with the code before exemptions, tag_aliases and overrides existed (the parent commit of
# their introduction); the content hash is a policy's version id in the policy store.
PRE_EXTENSION: dict[str, Any] = {
    "version": "2.1", "description": "probe",
    "required_tags": [{"name": "CostCenter", "allowed_values": ["Engineering", "Sales"]},
                      {"name": "Environment", "allowed_values": ["production", "staging"],
                       "applies_to": ["ec2:instance"], "required_for": ["ec2:instance"], "source": "aws:p-1"}],
    "optional_tags": [{"name": "Project", "validation_regex": "PRJ-[0-9]{4}"}],
    "prohibited_tags": ["temp*"], "max_tags": 40,
    "tag_naming_rules": {"case_sensitivity": False},
}
PRE_EXTENSION_HASH = "1c4bc17fce9d7e219c7c013ec8d34f303a5c7a43d2be9fb8dbabb783cd19bc7f"
DEFAULT_EXAMPLE_HASH = "70ea3ef76d6416211ef869809018c439db4cf00e51dd5d77c1cbd3002f324f34"
PRE_EXTENSION_KEYS = ["description", "max_tags", "optional_tags", "prohibited_tags", "required_tags",
                      "tag_naming_rules", "version"]


def test_plain_policy_hashes_as_before_the_extensions() -> None:
    policy = load_policy(PRE_EXTENSION)
    assert policy.content_hash() == PRE_EXTENSION_HASH
    assert sorted(policy.model_dump()) == PRE_EXTENSION_KEYS
    assert sorted(policy.model_dump(mode="json")) == PRE_EXTENSION_KEYS
    assert load_policy_file(EXAMPLES / "default.json").content_hash() == DEFAULT_EXAMPLE_HASH


@pytest.mark.parametrize("empty", [
    {"exemptions": None, "tag_aliases": None, "overrides": None},
    {"exemptions": [], "tag_aliases": {}, "overrides": []},
    {"tag_aliases": {"CostCenter": None, "Project": []}},  # entries without aliases mean nothing
])
def test_empty_extensions_dump_and_hash_as_absent(empty: dict[str, Any]) -> None:
    policy = load_policy({**PRE_EXTENSION, **empty})
    assert sorted(policy.model_dump(mode="json")) == PRE_EXTENSION_KEYS
    assert policy.content_hash() == PRE_EXTENSION_HASH


@pytest.mark.parametrize(("extension", "key"), [
    ({"exemptions": [{"id": "E", "reason": "r", "expires": "2030-01-01", "accounts": [ACCOUNT]}]}, "exemptions"),
    ({"tag_aliases": {"Project": "proj"}}, "tag_aliases"),
    ({"overrides": [{"id": "o", "accounts": [ACCOUNT], "remove_tags": ["Project"]}]}, "overrides"),
])
def test_each_extension_is_dumped_and_changes_the_hash(extension: dict[str, Any], key: str) -> None:
    policy = load_policy({**PRE_EXTENSION, **extension})
    assert sorted(policy.model_dump(mode="json")) == sorted([*PRE_EXTENSION_KEYS, key])
    assert policy.content_hash() != PRE_EXTENSION_HASH
    again = load_policy(policy.model_dump(mode="json"))
    assert again == policy and again.content_hash() == policy.content_hash()


def test_full_policy_round_trips_through_its_json_dump() -> None:
    policy = with_overrides({"id": "o", "organizational_units": [MID], "required_tags": [{"name": "Team"}],
                             "remove_tags": ["Owner"]},
                            tag_aliases={"Environment": "env", "Team": ["squad"]},
                            exemptions=[{"id": "E", "reason": "r", "expires": "2030-01-01",
                                         "tag_conditions": {"legacy": "*"}, "approved_by": "CTO"}])
    dumped = policy.model_dump(mode="json")
    assert dumped["exemptions"][0]["expires"] == "2030-01-01"
    assert dumped["tag_aliases"] == {"Environment": ["env"], "Team": ["squad"]}
    again = load_policy(dumped)
    assert again == policy and again.content_hash() == policy.content_hash()


# --- lint: aliases and overrides ---------------------------------------------------------------------------


def _documented_codes() -> dict[str, Severity]:
    rows = re.findall(r"^([a-z][a-z0-9-]+)\s+(error|warning)\s", lint_module.__doc__ or "", flags=re.MULTILINE)
    return {code: Severity(sev) for code, sev in rows}


DOCUMENTED = _documented_codes()


def lint(policy: Policy, **kwargs: Any) -> list[LintFinding]:
    findings = lint_policy(policy, **kwargs)
    for f in findings:
        assert DOCUMENTED.get(f.code) == f.severity, f"{f.code} is undocumented or has the wrong severity"
        assert f.message and f.location
    return findings


def pairs(findings: list[LintFinding]) -> list[tuple[str, str]]:
    return [(f.location, f.code) for f in findings]


def constructed(**fields: Any) -> Policy:
    """A Policy that skips every validation (as code building policies directly might)."""
    base: dict[str, Any] = {"version": "1.0", "description": "", "required_tags": [], "optional_tags": [],
                            "prohibited_tags": [], "max_tags": 50, "tag_naming_rules": NamingRules(),
                            "exemptions": [], "tag_aliases": {}, "overrides": []}
    return Policy.model_construct(**{**base, **fields})


def test_new_alias_and_override_codes_are_documented_as_errors() -> None:
    for code in ("alias-unknown-tag", "alias-conflict", "override-removes-own-rule"):
        assert DOCUMENTED[code] is Severity.ERROR


def test_lint_reports_alias_problems_of_a_policy_built_in_code() -> None:
    policy = constructed(
        required_tags=[TagRule(name="Environment"), TagRule(name="Owner")],
        tag_aliases={"Environment": ["env", "owner", "ENVIRONMENT"], "Owner": ["Env"], "Enviroment": ["e"]},
    )
    found = lint(policy)
    assert pairs(found) == [
        ("tag_aliases.Environment[1]", "alias-conflict"),
        ("tag_aliases.Environment[2]", "alias-conflict"),
        ("tag_aliases.Owner[0]", "alias-conflict"),
        ("tag_aliases.Enviroment", "alias-unknown-tag"),
    ]
    assert "did you mean 'Environment'?" in found[3].message
    assert "also listed under 'Environment'" in found[2].message


def test_lint_accepts_aliases_of_override_tags() -> None:
    policy = with_overrides({"id": "d", "accounts": [ACCOUNT], "required_tags": [{"name": "Team"}]},
                            tag_aliases={"Team": ["squad"], "Environment": "env"})
    assert lint(policy) == []


def test_override_removing_its_own_rule_is_reported_at_the_rule() -> None:
    policy = with_overrides({"id": "o", "accounts": [ACCOUNT], "remove_tags": ["Project", "Owner"],
                             "required_tags": [{"name": "Owner"}], "optional_tags": [{"name": "Project"}]})
    found = lint(policy)
    assert pairs(found) == [("overrides[0].required_tags[0].name", "override-removes-own-rule"),
                            ("overrides[0].optional_tags[0].name", "override-removes-own-rule")]
    assert found[0].message.startswith("override 'o' requires 'Owner' and also removes it (remove_tags[1])")
    assert found[1].message.startswith("override 'o' defines 'Project' and also removes it (remove_tags[0])")
    # Removing one tag and bringing another is fine.
    assert lint(with_overrides({"id": "o", "accounts": [ACCOUNT], "remove_tags": ["Owner"],
                                "required_tags": [{"name": "Project"}]})) == []


def test_override_rules_are_linted_like_top_level_rules() -> None:
    policy = with_overrides({"id": "o", "accounts": [ACCOUNT], "required_tags": [
        {"name": "Team", "allowed_values": ["data", "data"], "applies_to": ["ec2:instanse"]},
        {"name": "Tier", "validation_regex": "[a-z]+", "allowed_values": ["Gold", "silver"]},
    ], "optional_tags": [{"name": "Note#", "allowed_values": ["x"]}]},
        tag_naming_rules={"allow_special_characters": False})
    found = lint(policy, known_resource_types=all_types())
    assert pairs(found) == [
        ("overrides[0].required_tags[0].allowed_values[1]", "duplicate-allowed-value"),
        ("overrides[0].required_tags[0].applies_to[0]", "unknown-resource-type"),
        ("overrides[0].required_tags[1].allowed_values[0]", "allowed-value-fails-regex"),
        ("overrides[0].optional_tags[0].name", "disallowed-characters"),
    ]


def test_override_rules_get_the_target_checks() -> None:
    policy = with_overrides({"id": "o", "accounts": [ACCOUNT],
                             "required_tags": [{"name": "TeamName", "allowed_values": ["Data Team"]}]})
    found = [(loc, code) for loc, code in pairs(lint(policy, target="gcp")) if loc.startswith("overrides")]
    assert found == [("overrides[0].required_tags[0].name", "gcp-key-format"),
                     ("overrides[0].required_tags[0].allowed_values[0]", "gcp-value-format"),
                     # Its only value cannot be stored on GCP, so the rule cannot be met there.
                     ("overrides[0].required_tags[0].allowed_values", "rule-unsatisfiable")]
