"""Our policy -> Azure Policy: one initiative (policy set) with a definition per tag rule.

* A required tag without an allowed-values list becomes an assignment of the built-in "Require a
  tag on resources" (parameter ``tagName``). Its effect is fixed to Deny by Microsoft; assign the
  initiative with ``enforcementMode: DoNotEnforce`` to only report.
* A tag with allowed values becomes a custom definition (mode ``Indexed``, so only resource types
  that carry tags are evaluated): ``tags['Key']`` must exist (required tags) and be one of the
  literal values (``notIn``) or match one of the wildcard values (``notLike``; Azure's ``like`` takes
  one ``*`` anywhere, the same wildcard AWS tag policies use). The effect is a parameter, Audit, Deny
  or Disabled, passed down from the initiative. Azure has no built-in for allowed-value lists.

Azure differs from AWS in ways an export cannot paper over, and notes say so: tag names are
case-insensitive (``tags['CostCenter']`` also reads a ``costcenter`` tag, so a wrong-case key is no
violation there), and every condition but ``match`` compares strings ignoring case, so allowed
values are matched ignoring case too. ``validation_regex`` has no Azure equivalent (``match`` knows
only ``#``, ``?`` and ``.``), and ``applies_to`` / ``required_for`` name AWS types, which mean
nothing to Azure (a required tag with ``required_for: []`` is required nowhere, so it is exported
like an optional one).

Custom definitions must exist before the initiative references them; their ids are built from
``definition_scope`` (by default a management-group placeholder to fill in).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from typing import Any, Final, Literal

from policies.export.result import ExportResult, engine_only_notes
from policies.matching import WILDCARD
from policies.policy import Policy, TagRule

__all__ = [
    "DEFAULT_DEFINITION_SCOPE",
    "REQUIRE_TAG_ON_RESOURCES",
    "Effect",
    "export_azure",
    "policy_rule_schema",
]

Effect = Literal["Audit", "Deny", "Disabled"]
EFFECTS: Final[tuple[Effect, ...]] = ("Audit", "Deny", "Disabled")

# Built-in definition "Require a tag on resources" (category Tags, mode Indexed, effect Deny, one
# parameter tagName). The id is the same in every Azure tenant and cloud.
REQUIRE_TAG_ON_RESOURCES: Final = (
    "/providers/Microsoft.Authorization/policyDefinitions/871b6d14-10aa-478d-b590-94f262ecfa99"
)

# Where custom definitions are created; the placeholder is replaced by the caller or by the person
# deploying (definitions may live at a management group or a subscription).
DEFAULT_DEFINITION_SCOPE: Final = "/providers/Microsoft.Management/managementGroups/{managementGroupId}"

# Azure limits: definition names 64 characters, display names 128, descriptions 512.
_MAX_NAME = 64
_MAX_DISPLAY_NAME = 128
_MAX_DESCRIPTION = 512

SET_DOCUMENT = "azure/policySetDefinition.json"


def policy_rule_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the ``policyRule`` objects this module emits."""
    text = resources.files("policies").joinpath("data/azure_policy_rule.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def export_azure(
    policy: Policy,
    *,
    definition_scope: str = DEFAULT_DEFINITION_SCOPE,
    default_effect: Effect = "Audit",
    name_prefix: str = "finops-tags",
) -> ExportResult:
    """``policy`` as an Azure Policy initiative plus the custom definitions it references.

    Documents: ``azure/policySetDefinition.json`` and one ``azure/policyDefinitions/<name>.json`` per
    custom definition (each ``{"name": ..., "properties": {...}}``, the shape the Azure REST API and
    ``az policy definition create --rules/--params`` read). ``default_effect`` is the initiative's
    default for the custom definitions.
    """
    if default_effect not in EFFECTS:
        raise ValueError(f"default_effect must be one of {', '.join(EFFECTS)}, got {default_effect!r}")
    notes: list[str] = []
    documents: dict[str, object] = {}
    references: list[dict[str, object]] = []
    used_builtin = False
    content_hash = policy.content_hash()

    for rule, listed_required in policy.rules():
        # required_for: [] means "required on no type, checked where present": an optional tag here.
        required = listed_required and rule.required_for != []
        literals, patterns = _value_split(rule)
        if literals is None and patterns is None:
            if required:
                used_builtin = True
                references.append({
                    "policyDefinitionReferenceId": _reference_id("require", rule.name),
                    "policyDefinitionId": REQUIRE_TAG_ON_RESOURCES,
                    "parameters": {"tagName": {"value": _literal(rule.name)}},
                })
            # An optional tag that accepts any value constrains nothing Azure Policy could check.
            continue
        name = _definition_name(name_prefix, rule.name, required=required)
        documents[f"azure/policyDefinitions/{name}.json"] = _definition(
            name, rule, required, literals or [], patterns or [], default_effect, policy.version, content_hash)
        references.append({
            "policyDefinitionReferenceId": _reference_id("values", rule.name),
            "policyDefinitionId": f"{definition_scope.rstrip('/')}/providers/Microsoft.Authorization/"
                                  f"policyDefinitions/{name}",
            "parameters": {"effect": {"value": "[parameters('effect')]"}},
        })

    notes.extend(_notes(policy, used_builtin=used_builtin, custom=len(documents), scope=definition_scope))
    if not references:
        notes.append("the policy has no rule Azure Policy can check; the initiative references no definition")
    documents[SET_DOCUMENT] = {
        "name": f"{name_prefix}-tagging-{content_hash[:8]}"[:_MAX_NAME],
        "properties": {
            "displayName": f"Tagging policy {policy.version}"[:_MAX_DISPLAY_NAME],
            "policyType": "Custom",
            "description": _clip(
                (policy.description + " " if policy.description else "")
                + "Generated by finops-tag-compliance. Azure tag names are case-insensitive.", _MAX_DESCRIPTION),
            "metadata": {"category": "Tags", "version": "1.0.0", "policyVersion": policy.version,
                         "policyContentHash": content_hash, "notes": list(notes)},
            "parameters": {"effect": _effect_parameter(default_effect)},
            "policyDefinitions": references,
        },
    }
    # The initiative first, then the definitions in policy order, as they read in a listing.
    ordered = {SET_DOCUMENT: documents.pop(SET_DOCUMENT), **documents}
    return ExportResult(documents=ordered, notes=notes)


# --- building blocks -----------------------------------------------------------------------------


def _value_split(rule: TagRule) -> tuple[list[str] | None, list[str] | None]:
    """(literal values, wildcard values); both ``None`` when any value is allowed."""
    values = rule.allowed_values
    if not values or WILDCARD in values:
        return None, None
    unique = list(dict.fromkeys(values))  # a repeated value would only repeat a condition
    literals = [v for v in unique if WILDCARD not in v]
    patterns = [v for v in unique if WILDCARD in v]
    return literals, patterns


def _literal(text: str) -> str:
    # A string that starts with '[' is read as a template expression; '[[' escapes it.
    return "[" + text if text.startswith("[") else text


def _field(tag: str) -> str:
    # The bracket form accepts any tag name (dots, spaces, dashes); a quote inside is doubled.
    return "tags['" + tag.replace("'", "''") + "']"


def _effect_parameter(default: Effect) -> dict[str, object]:
    return {
        "type": "String",
        "metadata": {"displayName": "Effect",
                     "description": "Audit reports non-compliant resources, Deny blocks creating or updating "
                                    "them, Disabled turns the rule off."},
        "allowedValues": list(EFFECTS),
        "defaultValue": default,
    }


def _not_allowed(field: str, literals: list[str], patterns: list[str]) -> list[dict[str, object]]:
    """Conditions that are all true when the tag's value is none of the allowed values."""
    conditions: list[dict[str, object]] = []
    if literals:
        conditions.append({"field": field, "notIn": [_literal(v) for v in literals]})
    conditions.extend({"field": field, "notLike": _literal(p)} for p in patterns)
    return conditions


def _policy_rule(rule: TagRule, required: bool, literals: list[str], patterns: list[str]) -> dict[str, object]:
    field = _field(rule.name)
    bad_value = _not_allowed(field, literals, patterns)
    condition: dict[str, object]
    if required:
        wrong: dict[str, object] = bad_value[0] if len(bad_value) == 1 else {"allOf": bad_value}
        condition = {"anyOf": [{"field": field, "exists": False}, wrong]}
    else:
        # Optional: only a present tag with a value outside the list is non-compliant.
        condition = {"allOf": [{"field": field, "exists": True}, *bad_value]}
    return {"if": condition, "then": {"effect": "[parameters('effect')]"}}


def _definition(name: str, rule: TagRule, required: bool, literals: list[str], patterns: list[str],
                default_effect: Effect, version: str, content_hash: str) -> dict[str, object]:
    shown = ", ".join([*literals, *patterns])
    kind = "Require" if required else "Restrict"
    description = (f"{'Requires' if required else 'When present, requires'} tag '{rule.name}' to hold one of: "
                   f"{shown}. Values compare ignoring case; '*' matches any run of characters.")
    if rule.description:
        description = f"{rule.description} {description}"
    return {
        "name": name,
        "properties": {
            "displayName": _clip(f"{kind} allowed values of tag '{rule.name}'", _MAX_DISPLAY_NAME),
            "policyType": "Custom",
            "mode": "Indexed",
            "description": _clip(description, _MAX_DESCRIPTION),
            "metadata": {"category": "Tags", "version": "1.0.0", "policyVersion": version,
                         "policyContentHash": content_hash},
            "parameters": {"effect": _effect_parameter(default_effect)},
            "policyRule": _policy_rule(rule, required, literals, patterns),
        },
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "tag"


def _definition_name(prefix: str, tag: str, *, required: bool) -> str:
    # Slugs of different tags can coincide ("Cost Center", "cost-center"); the digest keeps names unique.
    kind = "require" if required else "restrict"
    head = f"{prefix}-{kind}-"
    tail = f"-{_digest(tag)}"
    return head + _slug(tag)[: _MAX_NAME - len(head) - len(tail)].strip("-") + tail


def _reference_id(kind: str, tag: str) -> str:
    return f"{kind}-{_slug(tag)[:40]}-{_digest(tag)}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _notes(policy: Policy, *, used_builtin: bool, custom: int, scope: str) -> list[str]:
    notes = ["Azure tag names are case-insensitive: a wrong-case key satisfies the rule there, so wrong_key_case "
             "violations have no Azure equivalent"]
    if custom and policy.tag_naming_rules.case_sensitivity:
        notes.append("Azure Policy compares values ignoring case (notIn, notLike), so 'Production' passes where "
                     "'production' is the allowed value; the scanner still checks case")
    if used_builtin:
        notes.append("the built-in 'Require a tag on resources' always denies; assign the initiative with "
                     "enforcementMode DoNotEnforce to only report")
    if custom and "{" in scope:
        notes.append(f"create the {custom} custom definition(s) first, then replace the placeholder in {scope} "
                     "in the initiative's policyDefinitionId values (or pass definition_scope)")
    with_regex = [r.name for r, _ in policy.rules() if r.validation_regex]
    if with_regex:
        notes.append(f"validation_regex has no Azure Policy equivalent and is not exported ({', '.join(with_regex)})")
    scoped = [r.name for r, _ in policy.rules() if r.applies_to or r.required_for]
    if scoped:
        notes.append("applies_to and required_for list AWS resource types; in Azure these rules apply to every "
                     f"resource that supports tags ({', '.join(scoped)})")
    notes.extend(engine_only_notes(policy))
    return notes
