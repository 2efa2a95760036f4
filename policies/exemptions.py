"""Exemptions at evaluation time: which active exemptions match a resource, and what they waive.

The engine only asks this module about resources that already have violations, so compliant
resources (most of an estate) never pay for exemptions. For those that do, the exemptions whose
``accounts`` and ``resource_types`` fit are looked up once per (account, type) and cached; only
those candidates test their ARN patterns and tag conditions on the resource.

What an exemption waives: with ``tags`` empty, every violation of a matched resource; with ``tags``
given, the violations of those policy tags (``missing_required_tag``, ``invalid_value``,
``invalid_format``, ``wrong_key_case`` whose ``tag_name`` is listed). Key-only findings
(``prohibited_tag``, ``naming_rule``) concern a key, not a policy tag, so only a whole-resource
exemption waives them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from policies.matching import GlobPattern, ValueMatcher
from policies.models import Resource, Violation, ViolationType
from policies.policy import Exemption, applies_to_type

__all__ = ["RULE_VIOLATION_TYPES", "CompiledExemption", "ExemptionIndex", "WaiverResult"]

# Violation types that belong to a policy tag (their tag_name is the rule's name).
RULE_VIOLATION_TYPES = frozenset({ViolationType.MISSING_REQUIRED_TAG, ViolationType.INVALID_VALUE,
                                  ViolationType.INVALID_FORMAT, ViolationType.WRONG_KEY_CASE})
# Same bound as the engine's caches: (account, type) pairs are few, but a scan never grows memory unbounded.
_CACHE_LIMIT = 65_536

# (violations kept, violations waived, ids of the exemptions that waived something)
WaiverResult = tuple[tuple[Violation, ...], tuple[Violation, ...], tuple[str, ...]]


class CompiledExemption:
    """One active exemption with its matchers built."""

    __slots__ = ("accounts", "arns", "case_sensitive", "conditions", "exemption", "id", "types", "waived_tags",
                 "waives_all")

    def __init__(self, exemption: Exemption, *, case_sensitive: bool) -> None:
        self.exemption = exemption
        self.id = exemption.id
        self.accounts = frozenset(exemption.accounts)
        self.types = tuple(exemption.resource_types)
        self.arns = tuple(GlobPattern(p) for p in exemption.arn_patterns)
        self.case_sensitive = case_sensitive
        # Keys are folded up front when the policy ignores case; values go through the same matcher
        # as allowed values, so "*" asks only for the key and one '*' works as in allowed_values.
        self.conditions = tuple((key if case_sensitive else key.casefold(),
                                 ValueMatcher((value,), case_sensitive=case_sensitive))
                                for key, value in exemption.tag_conditions.items())
        self.waived_tags = frozenset(exemption.tags)
        self.waives_all = not exemption.tags

    def fits(self, account_id: str, resource_type: str) -> bool:
        """Whether the account and type criteria (those given) accept a resource of this account and type."""
        return ((not self.accounts or account_id in self.accounts)
                and (not self.types or applies_to_type(self.types, resource_type)))

    def matches(self, resource: Resource) -> bool:
        """Whether ARN patterns and tag conditions (those given) accept ``resource``; see :meth:`fits`."""
        if self.arns and not any(p.matches(resource.arn) for p in self.arns):
            return False
        return not self.conditions or self._conditions_hold(resource.tags)

    def _conditions_hold(self, tags: Mapping[str, str]) -> bool:
        for key, matcher in self.conditions:
            if self.case_sensitive:
                value = tags.get(key)
                if value is None or not matcher.matches(value):
                    return False
            elif not any(k.casefold() == key and matcher.matches(v) for k, v in tags.items()):
                return False
        return True

    def waives(self, violation: Violation) -> bool:
        """Whether this exemption waives ``violation`` (on a resource it matches)."""
        return self.waives_all or (violation.violation_type in RULE_VIOLATION_TYPES
                                   and violation.tag_name in self.waived_tags)


class ExemptionIndex:
    """Active exemptions of one compiled policy, with candidates cached per (account, resource type)."""

    __slots__ = ("_candidates", "exemptions")

    def __init__(self, exemptions: Sequence[Exemption], *, case_sensitive: bool) -> None:
        self.exemptions = tuple(CompiledExemption(e, case_sensitive=case_sensitive) for e in exemptions)
        self._candidates: dict[tuple[str, str], tuple[CompiledExemption, ...]] = {}

    def candidates(self, account_id: str, resource_type: str) -> tuple[CompiledExemption, ...]:
        """Exemptions whose account and type criteria fit, in policy order (cached)."""
        key = (account_id, resource_type)
        found = self._candidates.get(key)
        if found is None:
            found = tuple(e for e in self.exemptions if e.fits(account_id, resource_type))
            if len(self._candidates) >= _CACHE_LIMIT:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def matching(self, resource: Resource) -> tuple[CompiledExemption, ...]:
        """Every active exemption that matches ``resource``, in policy order."""
        return tuple(e for e in self.candidates(resource.account_id, resource.resource_type) if e.matches(resource))

    def apply(self, resource: Resource, violations: Sequence[Violation]) -> WaiverResult | None:
        """Split ``violations`` into kept and waived; ``None`` when no exemption waives any of them.

        Every matching exemption that covers a waived violation is credited, in policy order.
        """
        candidates = self.candidates(resource.account_id, resource.resource_type)
        if not candidates:
            return None
        matched = [e for e in candidates if e.matches(resource)]
        if not matched:
            return None
        kept: list[Violation] = []
        waived: list[Violation] = []
        used: set[str] = set()
        for violation in violations:
            by = [e.id for e in matched if e.waives(violation)]
            if by:
                waived.append(violation)
                used.update(by)
            else:
                kept.append(violation)
        if not waived:
            return None
        return tuple(kept), tuple(waived), tuple(e.id for e in matched if e.id in used)
