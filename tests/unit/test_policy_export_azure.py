"""Azure Policy export: rules valid against our schema, definition shape, initiative wiring, meaning."""

from __future__ import annotations

import copy
import fnmatch
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from policies.export import export_policy
from policies.export.azure import (
    DEFAULT_DEFINITION_SCOPE,
    REQUIRE_TAG_ON_RESOURCES,
    SET_DOCUMENT,
    export_azure,
    policy_rule_schema,
)
from policies.policy import Policy, load_policy, load_policy_file

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "policies" / "data" / "azure_policy_rule.schema.json"

ODD = load_policy({
    "required_tags": [
        {"name": "Owner", "allowed_values": ["*@example.com", "ops", "[platform]", "ops"]},
        {"name": "team's name", "allowed_values": ["a"]},
        {"name": "Env", "allowed_values": ["prod*"]},
        {"name": "Anything", "allowed_values": ["*"]},
        {"name": "Bare"},
    ],
    "optional_tags": [
        {"name": "Tier", "allowed_values": ["gold", "silver*"]},
        {"name": "Free"},
    ],
})


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = policy_rule_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def definitions(policy: Policy) -> dict[str, dict[str, Any]]:
    docs = export_azure(policy).documents
    return {k: v for k, v in docs.items() if k != SET_DOCUMENT}  # type: ignore[misc]


def initiative(policy: Policy, **kwargs: Any) -> dict[str, Any]:
    doc = export_azure(policy, **kwargs).documents[SET_DOCUMENT]
    assert isinstance(doc, dict)
    return doc


def rule_of(policy: Policy, tag: str) -> dict[str, Any]:
    for doc in definitions(policy).values():
        if f"tag '{tag}'" in doc["properties"]["displayName"]:
            rule: dict[str, Any] = doc["properties"]["policyRule"]
            return rule
    raise AssertionError(f"no definition for {tag}")


# --- a tiny evaluator of the emitted subset, with Azure's semantics --------------------------------


def azure_matches(condition: dict[str, Any], tags: dict[str, str]) -> bool:
    """Whether the ``if`` block is true for a resource: tag names and values compare ignoring case."""
    if "allOf" in condition:
        return all(azure_matches(c, tags) for c in condition["allOf"])
    if "anyOf" in condition:
        return any(azure_matches(c, tags) for c in condition["anyOf"])
    if "not" in condition:
        return not azure_matches(condition["not"], tags)
    field = condition["field"]
    assert field.startswith("tags['") and field.endswith("']")
    name = field[6:-2].replace("''", "'").casefold()
    value = next((v for k, v in tags.items() if k.casefold() == name), None)

    def unescape(text: str) -> str:
        return text[1:] if text.startswith("[[") else text

    if "exists" in condition:
        return (value is not None) == (condition["exists"] in (True, "true"))
    if value is None:
        value = ""
    if "notIn" in condition:
        return value.casefold() not in {unescape(v).casefold() for v in condition["notIn"]}
    if "notLike" in condition:
        return not fnmatch.fnmatchcase(value.casefold(), unescape(condition["notLike"]).casefold())
    raise AssertionError(f"operator not understood: {condition}")


# --- schema ---------------------------------------------------------------------------------------


def test_schema_file_is_the_one_the_package_loads() -> None:
    import json

    assert policy_rule_schema() == json.loads(SCHEMA_FILE.read_text("utf-8"))
    assert policy_rule_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("policy", [load_policy_file(EXAMPLES / "default.json"),
                                    load_policy_file(EXAMPLES / "minimal.json"), ODD],
                         ids=["default", "minimal", "odd"])
def test_every_generated_rule_validates(policy: Policy, validator: Draft202012Validator) -> None:
    docs = definitions(policy)
    assert docs
    for name, doc in docs.items():
        errors = [e.message for e in validator.iter_errors(doc["properties"]["policyRule"])]
        assert errors == [], name


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda r: r.pop("then"), "then is required"),
    (lambda r: r["then"].update(effect="Append"), "effect outside the emitted set"),
    (lambda r: r["if"]["anyOf"][0].update(notIn=["x"]), "two operators in one condition"),
    (lambda r: r["if"]["anyOf"][1].update(field="name"), "a field other than a tag"),
    (lambda r: r["if"]["anyOf"][1].pop("notIn") and r["if"]["anyOf"][1].update(match="##"), "operator not emitted"),
    (lambda r: r["if"]["anyOf"][1].update(notIn=["[expr]"]), "unescaped leading bracket"),
    (lambda r: r["if"]["anyOf"][1].update(notIn=[]), "empty list"),
    (lambda r: r["if"].update(anyOf=[]), "empty logical operator"),
    (lambda r: r["if"]["anyOf"][1].pop("notIn") and r["if"]["anyOf"][1].update(notLike="a*b*"), "two wildcards"),
])
def test_schema_rejects_what_the_exporter_must_never_emit(mutate: Any, why: str,
                                                          validator: Draft202012Validator) -> None:
    rule = copy.deepcopy(rule_of(load_policy_file(EXAMPLES / "default.json"), "CostCenter"))
    assert validator.is_valid(rule)
    mutate(rule)
    assert not validator.is_valid(rule), why


# --- definitions ------------------------------------------------------------------------------------


def test_custom_definitions_have_the_required_top_level_properties() -> None:
    docs = definitions(ODD)
    # Owner, team's name, Env (required, with values) and Tier (optional, with values).
    assert len(docs) == 4
    for path, doc in docs.items():
        assert path == f"azure/policyDefinitions/{doc['name']}.json"
        assert len(doc["name"]) <= 64 and all(c.isalnum() or c == "-" for c in doc["name"])
        props = doc["properties"]
        assert props["displayName"] and len(props["displayName"]) <= 128
        assert props["policyType"] == "Custom"
        assert props["mode"] == "Indexed"
        assert len(props["description"]) <= 512
        assert props["metadata"]["category"] == "Tags"
        effect = props["parameters"]["effect"]
        assert effect["type"] == "String"
        assert effect["allowedValues"] == ["Audit", "Deny", "Disabled"]
        assert effect["defaultValue"] == "Audit"
        assert props["policyRule"]["then"] == {"effect": "[parameters('effect')]"}


def test_required_tag_rule_shape() -> None:
    assert rule_of(load_policy_file(EXAMPLES / "default.json"), "Environment") == {
        "if": {"anyOf": [
            {"field": "tags['Environment']", "exists": False},
            {"field": "tags['Environment']", "notIn": ["production", "staging", "development", "test"]},
        ]},
        "then": {"effect": "[parameters('effect')]"},
    }


def test_literals_wildcards_quotes_and_brackets() -> None:
    assert rule_of(ODD, "Owner")["if"] == {"anyOf": [
        {"field": "tags['Owner']", "exists": False},
        {"allOf": [{"field": "tags['Owner']", "notIn": ["ops", "[[platform]"]},  # deduplicated, '[' escaped
                   {"field": "tags['Owner']", "notLike": "*@example.com"}]},
    ]}
    assert rule_of(ODD, "team's name")["if"]["anyOf"][0] == {"field": "tags['team''s name']", "exists": False}
    assert rule_of(ODD, "Tier")["if"] == {"allOf": [
        {"field": "tags['Tier']", "exists": True},
        {"field": "tags['Tier']", "notIn": ["gold"]},
        {"field": "tags['Tier']", "notLike": "silver*"},
    ]}


@pytest.mark.parametrize(("tag", "tags", "non_compliant"), [
    ("Owner", {}, True),
    ("Owner", {"Owner": "jane@example.com"}, False),
    ("Owner", {"owner": "JANE@EXAMPLE.COM"}, False),  # Azure: names and values ignore case
    ("Owner", {"Owner": "ops"}, False),
    ("Owner", {"Owner": "[platform]"}, False),
    ("Owner", {"Owner": "jane@example.org"}, True),
    ("Owner", {"Owner": ""}, True),
    ("Env", {"Env": "production"}, False),
    ("Env", {"Env": "staging"}, True),
    ("Tier", {}, False),  # optional: absent is fine
    ("Tier", {"Tier": "silver-plus"}, False),
    ("Tier", {"Tier": "bronze"}, True),
])
def test_rules_flag_exactly_the_non_compliant_resources(tag: str, tags: dict[str, str], non_compliant: bool) -> None:
    assert azure_matches(rule_of(ODD, tag)["if"], tags) is non_compliant


# --- the initiative ---------------------------------------------------------------------------------


def test_initiative_references_builtins_and_custom_definitions() -> None:
    doc = initiative(ODD)
    props = doc["properties"]
    assert props["policyType"] == "Custom" and props["displayName"]
    assert props["parameters"]["effect"]["defaultValue"] == "Audit"
    refs = props["policyDefinitions"]
    builtin = [r for r in refs if r["policyDefinitionId"] == REQUIRE_TAG_ON_RESOURCES]
    # Required tags without a value list (Bare, and Anything whose "*" allows any value) use the built-in.
    assert [r["parameters"] for r in builtin] == [{"tagName": {"value": "Anything"}},
                                                   {"tagName": {"value": "Bare"}}]
    custom = [r for r in refs if r not in builtin]
    names = {d["name"] for d in definitions(ODD).values()}
    assert {r["policyDefinitionId"].rsplit("/", 1)[1] for r in custom} == names
    for r in custom:
        assert r["policyDefinitionId"].startswith(DEFAULT_DEFINITION_SCOPE + "/providers/Microsoft.Authorization/")
        assert r["parameters"] == {"effect": {"value": "[parameters('effect')]"}}
    ids = [r["policyDefinitionReferenceId"] for r in refs]
    assert len(set(ids)) == len(ids) == 6  # Free (optional, any value) has nothing to check
    assert REQUIRE_TAG_ON_RESOURCES.endswith("871b6d14-10aa-478d-b590-94f262ecfa99")


def test_definition_scope_and_default_effect_are_honoured() -> None:
    scope = "/subscriptions/00000000-0000-0000-0000-000000000000"
    doc = initiative(ODD, definition_scope=scope + "/", default_effect="Deny")
    custom = [r for r in doc["properties"]["policyDefinitions"] if r["policyDefinitionId"] != REQUIRE_TAG_ON_RESOURCES]
    assert all(r["policyDefinitionId"].startswith(scope + "/providers/Microsoft.Authorization/policyDefinitions/")
               for r in custom)
    assert doc["properties"]["parameters"]["effect"]["defaultValue"] == "Deny"
    assert not any("placeholder" in n for n in export_azure(ODD, definition_scope=scope).notes)
    with pytest.raises(ValueError, match="default_effect"):
        export_azure(ODD, default_effect="Append")  # type: ignore[arg-type]


def test_notes_say_what_azure_cannot_express() -> None:
    result = export_policy(load_policy_file(EXAMPLES / "default.json"), "azure")
    notes = "\n".join(result.notes)
    assert "case-insensitive" in notes
    assert "compares values ignoring case" in notes
    assert "always denies" in notes  # Application uses the built-in
    assert "placeholder" in notes
    assert "validation_regex" in notes and "Application, Project" in notes
    assert "applies_to" in notes and "prohibited_tags" in notes
    first = next(iter(result.documents))
    assert first == SET_DOCUMENT
    assert result.documents[SET_DOCUMENT]["properties"]["metadata"]["notes"] == result.notes  # type: ignore[index]


def test_names_stay_unique_when_slugs_collide() -> None:
    policy = load_policy({"required_tags": [{"name": "Cost Center", "allowed_values": ["a"]},
                                            {"name": "Cost-Center", "allowed_values": ["b"]}]})
    names = [d["name"] for d in definitions(policy).values()]
    assert len(names) == len(set(names)) == 2


def test_required_for_nothing_exports_like_an_optional_tag() -> None:
    policy = load_policy({"required_tags": [
        {"name": "Env", "applies_to": ["ec2:instance"], "required_for": [], "allowed_values": ["prod"]},
        {"name": "Team", "applies_to": ["ec2:*"], "required_for": ["ec2:instance"]},
    ]})
    assert rule_of(policy, "Env")["if"] == {"allOf": [{"field": "tags['Env']", "exists": True},
                                                      {"field": "tags['Env']", "notIn": ["prod"]}]}
    refs = initiative(policy)["properties"]["policyDefinitions"]
    assert [r["parameters"] for r in refs if r["policyDefinitionId"] == REQUIRE_TAG_ON_RESOURCES] == [
        {"tagName": {"value": "Team"}}]
    assert any("required_for" in n and "Env, Team" in n for n in export_azure(policy).notes)
