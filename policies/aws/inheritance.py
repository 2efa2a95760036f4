"""An account's effective tag policy, computed from the policies on its path as AWS documents it.

Sources: AWS Organizations User Guide, "Policy syntax and inheritance for management policy types"
(inheritance operators, child control operators) and "Inheritance examples" (Examples 1-6), which
``tests/unit/test_aws_tag_policy_inheritance.py`` reproduces.

``levels`` run root -> OU(s) -> account; each level holds the policies attached there, in
attachment order. Rules, applied per key and per field:

* ``@@assign`` replaces the inherited value (a list, or the ``tag_key``); ``@@append`` adds values
  not yet present; ``@@remove`` removes values, if present. A key with no ``tag_key`` anywhere
  uses its policy key in lowercase (AWS: "lowercase is the default case treatment").
* Child control. ``@@operators_allowed_for_child_policies`` at the document, ``tags``, key or field
  level limits the value operators that policies at LOWER levels may use there and below. Limits
  accumulate down the tree (the allowed set is the intersection of every limit above), so a child
  can never widen what a parent forbade. An operator a limit forbids is ignored: the inherited value
  stays, and the ignored operation is listed in :attr:`EffectiveTagPolicy.ignored`. Limits never
  apply between policies attached at the same level: they are not each other's children.
* Several policies at one level (deterministic, attachment order):
  - the child-control limits they state are intersected (Example 5);
  - when two of them ``@@assign`` the same field, the first attached wins (Example 6 states this
    for ``tag_key``; the same rule is used for the lists) and the later assignment is listed as
    ignored;
  - their ``@@append`` values are added in attachment order, after the level's ``@@assign``, and
    their ``@@remove`` values are then removed. So within one level "assign, append, remove" is
    the order, whichever policy wrote which.
* Rendering (:meth:`EffectiveTagPolicy.to_aws_json`) is the shape AWS shows (DescribeEffectivePolicy
  and the documentation): per key ``tag_key`` and the lists ``tag_value``, ``enforced_for``,
  ``report_required_tag_for`` as plain values without operators. Empty lists are left out (AWS
  Example 3 drops an ``enforced_for`` whose values were all removed); a key appears once some
  operation on it took effect. The key is written as its first policy (root-most, first attached)
  spelled it.

Where the documentation is silent (two ``@@assign`` of a list at one level, ``@@append`` and
``@@remove`` of the same value at one level, a list emptied by ``@@remove``) the choices above are
ours; they are stated here so a difference from AWS can be found and fixed in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.aws.tag_policy import (
    ALL_OPERATORS,
    APPEND,
    ASSIGN,
    LIST_FIELDS,
    REMOVE,
    TagPolicyDoc,
)

__all__ = ["EffectiveTag", "EffectiveTagPolicy", "IgnoredOperation", "effective_policy"]


@dataclass(frozen=True, slots=True)
class IgnoredOperation:
    """A value operator that did not take effect, and why.

    ``policy`` is the label of the policy that wrote it (``aws:p-abc (OU Production)``),
    ``location`` its JSON path (``tags.project.tag_key.@@assign``).
    """

    policy: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.location} ignored: {self.reason}"


@dataclass(frozen=True, slots=True)
class EffectiveTag:
    """One key of an effective policy.

    ``tag_value`` is ``None`` when no value list applies (any value is compliant). ``sources`` are
    the labels of the policies whose operations shaped this key, root-most first.
    """

    policy_key: str
    tag_key: str
    tag_value: tuple[str, ...] | None = None
    enforced_for: tuple[str, ...] = ()
    report_required_tag_for: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def to_aws_json(self) -> dict[str, Any]:
        """This key as AWS displays it in an effective policy."""
        out: dict[str, Any] = {"tag_key": self.tag_key}
        if self.tag_value:
            out["tag_value"] = list(self.tag_value)
        if self.enforced_for:
            out["enforced_for"] = list(self.enforced_for)
        if self.report_required_tag_for:
            out["report_required_tag_for"] = list(self.report_required_tag_for)
        return out


@dataclass(frozen=True, slots=True)
class EffectiveTagPolicy:
    """The effective tag policy of one account (or OU): keys by lowercased policy key, in order."""

    tags: Mapping[str, EffectiveTag]
    ignored: tuple[IgnoredOperation, ...] = ()

    def to_aws_json(self) -> dict[str, Any]:
        """``{"tags": {...}}`` in the shape AWS shows an effective tag policy (no operators)."""
        return {"tags": {tag.policy_key: tag.to_aws_json() for tag in self.tags.values()}}

    def to_aws_text(self, indent: int = 4) -> str:
        """:meth:`to_aws_json` as JSON text."""
        return json.dumps(self.to_aws_json(), indent=indent, ensure_ascii=False)


# --- computation -------------------------------------------------------------------------------------

# Where a child-control limit sits: () for the whole document, (key,) or (key, field).
_Node = tuple[str, ...]


@dataclass(slots=True)
class _KeyState:
    policy_key: str
    tag_key: str | None = None
    lists: dict[str, list[str] | None] = field(default_factory=lambda: dict.fromkeys(LIST_FIELDS))
    # Per field ("tag_key" and the lists): (level, position, label) of the policies that shaped it.
    contributors: dict[str, set[tuple[int, int, str]]] = field(default_factory=dict)
    touched: bool = False

    def credit(self, name: str, who: tuple[int, int, str], *, replace: bool = False) -> None:
        if replace:
            self.contributors[name] = {who}
        else:
            self.contributors.setdefault(name, set()).add(who)
        self.touched = True


def _restrictions(doc: TagPolicyDoc) -> dict[_Node, frozenset[str]]:
    """The child-control limits one policy states, by node."""
    out: dict[_Node, frozenset[str]] = {}
    if doc.operators_allowed is not None:
        out[()] = doc.operators_allowed
    for folded, key in doc.tags.items():
        if key.operators_allowed is not None:
            out[(folded,)] = key.operators_allowed
        for name in ("tag_key", *LIST_FIELDS):
            setting = key.setting(name)
            if setting is not None and setting.operators_allowed is not None:
                out[(folded, name)] = setting.operators_allowed
    return out


def _allowed(limits: Mapping[_Node, frozenset[str]], folded: str, name: str) -> frozenset[str]:
    allowed = ALL_OPERATORS
    for node in ((), (folded,), (folded, name)):
        limit = limits.get(node)
        if limit is not None:
            allowed = allowed & limit
    return allowed


def _describe_allowed(allowed: frozenset[str]) -> str:
    return ", ".join(op for op in (ASSIGN, APPEND, REMOVE) if op in allowed)


def effective_policy(levels: Sequence[Sequence[TagPolicyDoc]]) -> EffectiveTagPolicy:
    """Merge the policies attached root -> OU(s) -> account into the account's effective policy.

    ``levels[0]`` is the root, the last level the account; each level lists the policies attached
    there in attachment order. See the module docstring for every rule.
    """
    state: dict[str, _KeyState] = {}
    limits: dict[_Node, frozenset[str]] = {}
    ignored: list[IgnoredOperation] = []

    def forbid(doc: TagPolicyDoc, path: str, op: str, allowed: frozenset[str]) -> None:
        what = f"only {_describe_allowed(allowed)}" if allowed else "no operator (@@none)"
        ignored.append(IgnoredOperation(doc.label, f"{path}.{op}",
                                        f"a parent policy allows {what} here "
                                        "(@@operators_allowed_for_child_policies)"))

    def conflict(doc: TagPolicyDoc, path: str, winner: TagPolicyDoc) -> None:
        ignored.append(IgnoredOperation(doc.label, f"{path}.{ASSIGN}",
                                        f"{winner.label} at the same level assigned it first "
                                        "(the first attached policy wins)"))

    for depth, level in enumerate(levels):
        keys: list[str] = []
        for doc in level:
            keys.extend(k for k in doc.tags if k not in keys)
        for folded in keys:
            entries = [(pos, doc, doc.tags[folded]) for pos, doc in enumerate(level) if folded in doc.tags]
            key = state.get(folded)
            if key is None:
                key = _KeyState(entries[0][2].policy_key)

            # tag_key: single-valued, so only @@assign; the first attached assignment wins.
            allowed = _allowed(limits, folded, "tag_key")
            winner: TagPolicyDoc | None = None
            for pos, doc, policy in entries:
                setting = policy.tag_key
                if setting is None or setting.assign is None:
                    continue
                path = f"tags.{policy.policy_key}.tag_key"
                if ASSIGN not in allowed:
                    forbid(doc, path, ASSIGN, allowed)
                elif winner is not None:
                    conflict(doc, path, winner)
                else:
                    winner = doc
                    key.tag_key = setting.assign
                    key.credit("tag_key", (depth, pos, doc.label), replace=True)

            for name in LIST_FIELDS:
                allowed = _allowed(limits, folded, name)
                current = key.lists[name]
                assigned_by: TagPolicyDoc | None = None
                appends: list[tuple[int, TagPolicyDoc, tuple[str, ...]]] = []
                removes: list[tuple[int, TagPolicyDoc, tuple[str, ...]]] = []
                for pos, doc, policy in entries:
                    listed = policy.list_setting(name)
                    if listed is None:
                        continue
                    path = f"tags.{policy.policy_key}.{name}"
                    if listed.assign is not None:
                        if ASSIGN not in allowed:
                            forbid(doc, path, ASSIGN, allowed)
                        elif assigned_by is not None:
                            conflict(doc, path, assigned_by)
                        else:
                            assigned_by = doc
                            current = list(listed.assign)
                            key.credit(name, (depth, pos, doc.label), replace=True)
                    for op, values, bucket in ((APPEND, listed.append, appends), (REMOVE, listed.remove, removes)):
                        if op not in listed.written:
                            continue
                        if op not in allowed:
                            forbid(doc, path, op, allowed)
                        else:
                            bucket.append((pos, doc, values))
                for pos, doc, values in appends:
                    current = list(current or [])
                    current.extend(v for v in values if v not in current)
                    key.credit(name, (depth, pos, doc.label))
                for pos, doc, values in removes:
                    # Removing from a list nobody set changes nothing and shapes nothing.
                    if current is not None:
                        current = [v for v in current if v not in values]
                        key.credit(name, (depth, pos, doc.label))
                key.lists[name] = current

            if key.touched:
                state[folded] = key

        # This level's limits bind the levels below it, never its own siblings (applied above).
        for doc in level:
            for node, limit in _restrictions(doc).items():
                limits[node] = limits[node] & limit if node in limits else limit

    tags: dict[str, EffectiveTag] = {}
    for folded, key in state.items():
        contributors = sorted(set().union(*key.contributors.values()))
        sources = tuple(dict.fromkeys(label for _, _, label in contributors))
        allowed_values = key.lists["tag_value"]
        tags[folded] = EffectiveTag(
            policy_key=key.policy_key,
            tag_key=key.tag_key if key.tag_key is not None else key.policy_key.lower(),
            tag_value=tuple(allowed_values) if allowed_values else None,
            enforced_for=tuple(key.lists["enforced_for"] or ()),
            report_required_tag_for=tuple(key.lists["report_required_tag_for"] or ()),
            sources=sources,
        )
    return EffectiveTagPolicy(tags, tuple(ignored))
