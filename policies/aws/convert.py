"""Between AWS effective tag policies and our :class:`policies.policy.Policy`, meaning kept.

AWS -> ours (:func:`to_policy`), one required-tags rule per AWS key:

* ``name`` is the ``tag_key`` (its required capitalization); ``case_sensitivity`` is on, so a key
  spelled in another case is a ``wrong_key_case`` violation, as AWS reports it non-compliant.
* ``allowed_values`` is ``tag_value`` as written: the engine matches one ``*`` anywhere the way AWS
  does, ``*`` alone accepts anything, no list means any value.
* Where it applies: AWS checks a key's case and value on every resource type tag policies support
  (``policies/data/aws_tag_policy_resource_types.json``), so ``applies_to`` is all those types plus
  any type the key names in ``report_required_tag_for`` or ``enforced_for``.
* ``required_for`` is ``report_required_tag_for`` expanded (``service:ALL_SUPPORTED`` and
  ``service:*`` become the service's supported types): the key must be present on those types and
  is checked when present everywhere else. A key without it gets ``required_for: []``.
* Severity is ``warning``; ``error_for`` is ``enforced_for`` expanded, so violations on types where
  AWS blocks non-compliant values are ``error``.
* ``source`` is the labels of the policies that shaped the key (``aws:p-abc (root), aws:p-def
  (OU Production)``), or ``source_label`` when they carry none; every violation repeats it.

Known difference: AWS's required-key report only asks for the key, while the engine also treats a
blank value of a required tag as missing.

Ours -> AWS (:func:`from_policy`): an ``@@assign`` policy. ``required_for`` (or, without it, the
rule's ``applies_to`` for required tags) becomes ``report_required_tag_for``, ``error_for`` becomes
``enforced_for``; a list covering a service's every supported type is written
``service:ALL_SUPPORTED``. What AWS cannot express is dropped: ``validation_regex``, prohibited
tags, naming rules, case-insensitive keys, and ``applies_to`` narrower than "every supported type"
for value checks.
"""

from __future__ import annotations

from typing import Any

from policies.aws.inheritance import EffectiveTagPolicy
from policies.aws.resource_types import (
    all_supported_types,
    compress_resource_types,
    expand_resource_types,
    supported_resource_types,
)
from policies.aws.tag_policy import ASSIGN
from policies.policy import Policy, load_policy

__all__ = ["from_policy", "to_policy"]


def to_policy(effective: EffectiveTagPolicy, *, source_label: str) -> Policy:
    """Our policy with the rules ``effective`` makes AWS apply (see the module docstring).

    ``source_label`` names the effective policy (``account 111111111111``); it is used in the
    description and as the rules' source when the AWS policies carry no labels.
    """
    supported = all_supported_types()
    rules: list[dict[str, Any]] = []
    for tag in effective.tags.values():
        report = expand_resource_types(tag.report_required_tag_for)
        enforced = expand_resource_types(tag.enforced_for)
        what = "required for the listed types" if report else "checked wherever present"
        rules.append({
            "name": tag.tag_key,
            "description": f"AWS tag policy key {tag.policy_key!r} ({what})",
            "allowed_values": list(tag.tag_value) if tag.tag_value else None,
            "applies_to": expand_resource_types([*supported, *report, *enforced]),
            "severity": "warning",
            "required_for": report,
            "error_for": enforced or None,
            "source": ", ".join(tag.sources) or source_label,
        })
    # load_policy validates like any other policy and names the rule if something does not fit.
    return load_policy({
        "version": "aws-effective",
        "description": f"AWS Organizations effective tag policy for {source_label}",
        "required_tags": rules,
        "max_tags": None,
        "tag_naming_rules": {"case_sensitivity": True},
    }, source=source_label)


def from_policy(policy: Policy) -> dict[str, Any]:
    """An AWS tag policy document (``@@assign`` only) with our policy's tag rules (see module docstring)."""
    every_service = [f"{service}:ALL_SUPPORTED" for service in supported_resource_types()]
    tags: dict[str, Any] = {}
    for rule, listed_required in policy.rules():
        entry: dict[str, Any] = {"tag_key": {ASSIGN: rule.name}}
        if rule.allowed_values:
            entry["tag_value"] = {ASSIGN: list(rule.allowed_values)}
        if rule.required_for is not None:
            report = list(rule.required_for)
        elif listed_required:
            # An empty applies_to means every type; AWS needs them named, service by service.
            report = list(rule.applies_to) or every_service
        else:
            report = []
        if report:
            entry["report_required_tag_for"] = {ASSIGN: compress_resource_types(report)}
        if rule.error_for:
            entry["enforced_for"] = {ASSIGN: compress_resource_types(rule.error_for)}
        tags[rule.name.lower()] = entry
    return {"tags": tags}
