"""AWS Organizations tag policies: parse and validate a document into typed, immutable objects.

The language (AWS docs "Tag policy syntax and examples" and "Policy syntax and inheritance for
management policy types"):

* ``tags`` maps a *policy key* to the rules for one tag key. Policy keys are case-insensitive (AWS's
  own examples write ``costcenter`` and ``CostCenter``), so two keys that differ only in case are one
  key written twice, which is reported.
* ``tag_key`` (single value, ``@@assign`` only) is the key with the capitalization resources must
  use; it must equal the policy key ignoring case. Without it the key's lowercase spelling applies.
* ``tag_value``, ``enforced_for`` and ``report_required_tag_for`` are lists set with ``@@assign``
  (replace what is inherited), ``@@append`` (add) and ``@@remove`` (take away). A tag value may hold
  one ``*`` anywhere (``300*``, ``*@example.com``); ``*`` alone allows any value. The two type lists
  hold ``service:resource``, ``service:ALL_SUPPORTED`` or ``service:*``; a wildcard can never name
  every service or one resource of every service.
* ``@@operators_allowed_for_child_policies`` (``["@@all"]``, ``["@@none"]`` or a list of value
  operators) may sit at the document, ``tags``, key and field levels; it limits what policies
  attached lower in the organization may do there and below (see :mod:`policies.aws.inheritance`).

:func:`parse_tag_policy` collects every problem before raising one
:class:`policies.policy.PolicyError`; each problem names the JSON path inside the document
(``tags.costcenter.tag_value.@@assign[2]``) and, for text, its line and column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from policies.matching import WILDCARD, closest_key, count_wildcards

# The JSON-path formatting and the text locator are policy.py's, shared so both policy formats report
# problems the same way (path, line, column).
from policies.policy import (
    AWS_MAX_KEY_LENGTH,
    AWS_MAX_VALUE_LENGTH,
    RESERVED_PREFIX,
    PolicyError,
    PolicyProblem,
    _format_path,
    parse_json_document,
    repeated_key_problems,
)

__all__ = [
    "ALL_OPERATORS",
    "APPEND",
    "ASSIGN",
    "CHILD_CONTROL",
    "LIST_FIELDS",
    "REMOVE",
    "ListSetting",
    "TagKeyPolicy",
    "TagKeySetting",
    "TagPolicyDoc",
    "parse_tag_policy",
]

ASSIGN = "@@assign"
APPEND = "@@append"
REMOVE = "@@remove"
VALUE_OPERATORS = (ASSIGN, APPEND, REMOVE)
ALL_OPERATORS: frozenset[str] = frozenset(VALUE_OPERATORS)
NO_OPERATORS: frozenset[str] = frozenset()
CHILD_CONTROL = "@@operators_allowed_for_child_policies"
_CHILD_ALL = "@@all"
_CHILD_NONE = "@@none"
LIST_FIELDS = ("tag_value", "enforced_for", "report_required_tag_for")
KEY_FIELDS = ("tag_key", *LIST_FIELDS)
_RESOURCE_FIELDS = ("enforced_for", "report_required_tag_for")

_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]*")
_RESOURCE = re.compile(r"[^\s:*]+")

Path = tuple[str | int, ...]


# --- the typed result -----------------------------------------------------------------------------


def _render_child_control(allowed: frozenset[str]) -> list[str]:
    if allowed == ALL_OPERATORS:
        return [_CHILD_ALL]
    if not allowed:
        return [_CHILD_NONE]
    return [op for op in VALUE_OPERATORS if op in allowed]


@dataclass(frozen=True, slots=True)
class TagKeySetting:
    """``tag_key``: the key with its required capitalization. Single-valued, so ``@@assign`` only.

    ``operators_allowed`` is this node's ``@@operators_allowed_for_child_policies`` as the set of
    value operators children may use (``None``: not stated here).
    """

    assign: str | None = None
    operators_allowed: frozenset[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """This setting in AWS syntax."""
        out: dict[str, Any] = {}
        if self.operators_allowed is not None:
            out[CHILD_CONTROL] = _render_child_control(self.operators_allowed)
        if self.assign is not None:
            out[ASSIGN] = self.assign
        return out


@dataclass(frozen=True, slots=True)
class ListSetting:
    """A list field (``tag_value``, ``enforced_for``, ``report_required_tag_for``) with its operators.

    ``assign`` is ``None`` when the policy does not use ``@@assign`` (an empty tuple assigns an
    empty list); ``append`` and ``remove`` are empty when unused.
    """

    assign: tuple[str, ...] | None = None
    append: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    operators_allowed: frozenset[str] | None = None
    # Which value operators the document wrote, in AWS order (an empty @@append is still written).
    written: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """This setting in AWS syntax."""
        out: dict[str, Any] = {}
        if self.operators_allowed is not None:
            out[CHILD_CONTROL] = _render_child_control(self.operators_allowed)
        if self.assign is not None:
            out[ASSIGN] = list(self.assign)
        if self.append or APPEND in self.written:
            out[APPEND] = list(self.append)
        if self.remove or REMOVE in self.written:
            out[REMOVE] = list(self.remove)
        return out


@dataclass(frozen=True, slots=True)
class TagKeyPolicy:
    """The rules one policy states for one tag key (``tags.<policy key>``)."""

    policy_key: str
    tag_key: TagKeySetting | None = None
    tag_value: ListSetting | None = None
    enforced_for: ListSetting | None = None
    report_required_tag_for: ListSetting | None = None
    operators_allowed: frozenset[str] | None = None

    def setting(self, name: str) -> TagKeySetting | ListSetting | None:
        """The field called ``name`` (one of ``tag_key`` and :data:`LIST_FIELDS`)."""
        value: TagKeySetting | ListSetting | None = getattr(self, name)
        return value

    def list_setting(self, name: str) -> ListSetting | None:
        """The list field called ``name`` (one of :data:`LIST_FIELDS`)."""
        value: ListSetting | None = getattr(self, name)
        return value

    def to_json(self) -> dict[str, Any]:
        """This key's rules in AWS syntax."""
        out: dict[str, Any] = {}
        if self.operators_allowed is not None:
            out[CHILD_CONTROL] = _render_child_control(self.operators_allowed)
        for name in KEY_FIELDS:
            setting = self.setting(name)
            if setting is not None:
                out[name] = setting.to_json()
        return out


@dataclass(frozen=True, slots=True)
class TagPolicyDoc:
    """One parsed tag policy. Build it with :func:`parse_tag_policy`.

    ``tags`` is keyed by the lowercased policy key, in document order. ``operators_allowed`` is the
    document-wide child control (the document and ``tags`` levels combined: both cover every key).
    ``policy_id``/``name`` identify the policy and ``target`` where it is attached (``root``,
    ``OU Production``, ``account 111111111111``); they only label rules and messages.
    """

    tags: Mapping[str, TagKeyPolicy]
    operators_allowed: frozenset[str] | None = None
    policy_id: str | None = None
    name: str | None = None
    target: str | None = None

    @property
    def label(self) -> str:
        """``aws:p-abc123 (OU Production)``: the policy and where it is attached, for messages."""
        ident = self.policy_id or self.name or "policy"
        return f"aws:{ident}" + (f" ({self.target})" if self.target else "")

    def attached_to(self, target: str) -> TagPolicyDoc:
        """The same policy labelled as attached at ``target``."""
        return replace(self, target=target)

    def to_json(self) -> dict[str, Any]:
        """The document in AWS syntax (operators included), equal in meaning to what was parsed."""
        tags: dict[str, Any] = {}
        if self.operators_allowed is not None:
            tags[CHILD_CONTROL] = _render_child_control(self.operators_allowed)
        for key in self.tags.values():
            tags[key.policy_key] = key.to_json()
        return {"tags": tags}


# --- parsing ----------------------------------------------------------------------------------------


class _Problems:
    """Problems found while walking the document, each with its JSON path."""

    def __init__(self) -> None:
        self.items: list[tuple[Path, str]] = []

    def add(self, path: Path, message: str) -> None:
        self.items.append((path, message))

    def __bool__(self) -> bool:
        return bool(self.items)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _unknown(path: Path, key: str, known: Sequence[str], problems: _Problems, where: str) -> None:
    guess = closest_key(key, known)
    hint = f"did you mean '{guess}'?" if guess else "allowed: " + ", ".join(known)
    problems.add((*path, key), f"unknown key in {where}; {hint}")


def _child_control(value: Any, path: Path, problems: _Problems) -> frozenset[str] | None:
    """``@@operators_allowed_for_child_policies`` as the set of value operators children may use."""
    if not isinstance(value, list) or not value:
        problems.add(path, f"must be a non-empty list such as [\"@@all\"], [\"@@none\"] or "
                           f"[\"@@append\"], got {_describe(value)}")
        return None
    allowed: set[str] = set()
    ok = True
    distinct = {item for item in value if isinstance(item, str)}
    for word in (_CHILD_ALL, _CHILD_NONE):
        if word in distinct and len(distinct) > 1:
            problems.add(path, f"{word} must stand alone; list either it or the operators children may use")
            ok = False
    for i, item in enumerate(value):
        if item in (_CHILD_ALL, _CHILD_NONE):
            allowed |= ALL_OPERATORS if item == _CHILD_ALL else NO_OPERATORS
        elif item in ALL_OPERATORS:
            allowed.add(item)
        else:
            problems.add((*path, i), f"unknown operator {_describe(item)}; use @@all, @@none, @@assign, "
                                     "@@append or @@remove")
            ok = False
    return frozenset(allowed) if ok else None


def _check_key_text(key: str, path: Path, problems: _Problems, what: str) -> None:
    if not key.strip():
        problems.add(path, f"{what} must not be empty")
    elif key != key.strip():
        problems.add(path, f"{what} {key!r} has leading or trailing spaces; remove them")
    elif len(key) > AWS_MAX_KEY_LENGTH:
        problems.add(path, f"{what} is {len(key)} characters long; AWS allows at most {AWS_MAX_KEY_LENGTH}")
    elif key.casefold().startswith(RESERVED_PREFIX):
        problems.add(path, f"{what} {key!r} uses the prefix 'aws:', which AWS reserves for its own tags")
    elif WILDCARD in key:
        problems.add(path, f"{what} {key!r} contains '*'; tag keys are literal, only values take a wildcard")


def _check_tag_value(value: str, path: Path, problems: _Problems) -> None:
    stars = count_wildcards(value)
    if stars > 1:
        problems.add(path, f"value {value!r} holds {stars} '*' wildcards; AWS allows one per value "
                           "(e.g. '300*' or '*@example.com'), and '*' alone allows any value")
    if len(value) > AWS_MAX_VALUE_LENGTH:
        problems.add(path, f"value is {len(value)} characters long; AWS allows at most {AWS_MAX_VALUE_LENGTH}")


def _check_resource_type(entry: str, path: Path, problems: _Problems) -> None:
    service, sep, resource = entry.partition(":")
    if not sep or not service or not resource:
        problems.add(path, f"{entry!r} must look like 'service:resource', 'service:ALL_SUPPORTED' or "
                           "'service:*' (e.g. 'ec2:instance', 's3:ALL_SUPPORTED')")
    elif WILDCARD in service:
        problems.add(path, f"{entry!r}: a wildcard cannot name every service; list each service as "
                           "'service:ALL_SUPPORTED'")
    elif _SERVICE.fullmatch(service) is None:
        hint = f"; did you mean '{service.lower()}:{resource}'?" if _SERVICE.fullmatch(service.lower()) else ""
        problems.add(path, f"{entry!r}: the service prefix must be lowercase letters, digits or '-'{hint}")
    elif resource in ("*", "ALL_SUPPORTED"):
        return
    elif resource.upper() == "ALL_SUPPORTED":
        problems.add(path, f"{entry!r}: write ALL_SUPPORTED in capitals ('{service}:ALL_SUPPORTED')")
    elif WILDCARD in resource:
        problems.add(path, f"{entry!r}: only 'service:*' may use a wildcard; partial patterns are not "
                           "supported")
    elif _RESOURCE.fullmatch(resource) is None:
        problems.add(path, f"{entry!r}: the resource type must not contain spaces or ':'")


def _string_list(value: Any, path: Path, field_name: str, problems: _Problems) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        hint = f"; write [{json.dumps(value)}]" if isinstance(value, str) else ""
        problems.add(path, f"must be a list, got {_describe(value)}{hint}")
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(value):
        item_path = (*path, i)
        if not isinstance(item, str):
            hint = f"; write \"{item}\"" if isinstance(item, int | float) and not isinstance(item, bool) else ""
            problems.add(item_path, f"must be a string, got {_describe(item)}{hint}")
            ok = False
            continue
        before = len(problems.items)
        if field_name == "tag_value":
            _check_tag_value(item, item_path, problems)
        else:
            _check_resource_type(item, item_path, problems)
        ok = ok and len(problems.items) == before
        if item not in out:
            out.append(item)
    return tuple(out) if ok else None


def _parse_tag_key(value: Any, path: Path, policy_key: str, problems: _Problems) -> TagKeySetting | None:
    if isinstance(value, str):
        problems.add(path, f"must be an object with an operator, e.g. {{\"@@assign\": {json.dumps(value)}}}; "
                           "a plain value is how AWS displays an effective policy, not how a policy is written")
        return None
    if not isinstance(value, Mapping):
        problems.add(path, f"must be an object such as {{\"@@assign\": \"CostCenter\"}}, got {_describe(value)}")
        return None
    assign: str | None = None
    allowed: frozenset[str] | None = None
    ok = True
    for member, item in value.items():
        member_path = (*path, member)
        if member == ASSIGN:
            if not isinstance(item, str):
                problems.add(member_path, f"must be a string (the key with its capitalization), got {_describe(item)}")
                ok = False
                continue
            before = len(problems.items)
            _check_key_text(item, member_path, problems, "tag key")
            if len(problems.items) == before and item.casefold() != policy_key.casefold():
                problems.add(member_path, f"tag key {item!r} must match its policy key {policy_key!r} "
                                          "except for capitalization")
            ok = ok and len(problems.items) == before
            assign = item
        elif member in (APPEND, REMOVE):
            problems.add(member_path, f"tag_key holds one value, so only @@assign applies; use "
                                      f"{{\"@@assign\": \"{policy_key}\"}}")
            ok = False
        elif member == CHILD_CONTROL:
            allowed = _child_control(item, member_path, problems)
            ok = ok and allowed is not None
        else:
            _unknown(path, str(member), [ASSIGN, CHILD_CONTROL], problems, "tag_key")
            ok = False
    return TagKeySetting(assign, allowed) if ok else None


def _parse_list_setting(value: Any, path: Path, field_name: str, problems: _Problems) -> ListSetting | None:
    if isinstance(value, list):
        problems.add(path, f"must be an object with operators, e.g. {{\"@@assign\": {json.dumps(value)}}}; a "
                           "plain list is how AWS displays an effective policy, not how a policy is written")
        return None
    if not isinstance(value, Mapping):
        problems.add(path, f"must be an object such as {{\"@@assign\": [...]}}, got {_describe(value)}")
        return None
    lists: dict[str, tuple[str, ...]] = {}
    allowed: frozenset[str] | None = None
    ok = True
    for member, item in value.items():
        member_path = (*path, member)
        if member in ALL_OPERATORS:
            parsed = _string_list(item, member_path, field_name, problems)
            if parsed is None:
                ok = False
            else:
                lists[member] = parsed
        elif member == CHILD_CONTROL:
            allowed = _child_control(item, member_path, problems)
            ok = ok and allowed is not None
        elif member in KEY_FIELDS:
            # AWS's own Example 3 nests enforced_for inside tag_value; say where it belongs.
            problems.add(member_path, f"{member} belongs next to {field_name} (directly under the policy key), "
                                      f"not inside it")
            ok = False
        else:
            _unknown(path, str(member), [*VALUE_OPERATORS, CHILD_CONTROL], problems, field_name)
            ok = False
    if not ok:
        return None
    return ListSetting(assign=lists.get(ASSIGN), append=lists.get(APPEND, ()), remove=lists.get(REMOVE, ()),
                       operators_allowed=allowed, written=tuple(op for op in VALUE_OPERATORS if op in lists))


def _parse_key(policy_key: str, value: Any, path: Path, problems: _Problems) -> TagKeyPolicy | None:
    if not isinstance(value, Mapping):
        problems.add(path, f"must be an object with tag_key, tag_value, enforced_for or "
                           f"report_required_tag_for, got {_describe(value)}")
        return None
    settings: dict[str, Any] = {}
    allowed: frozenset[str] | None = None
    ok = True
    for member, item in value.items():
        member_path = (*path, member)
        if member == "tag_key":
            settings[member] = _parse_tag_key(item, member_path, policy_key, problems)
            ok = ok and settings[member] is not None
        elif member in LIST_FIELDS:
            settings[member] = _parse_list_setting(item, member_path, member, problems)
            ok = ok and settings[member] is not None
        elif member == CHILD_CONTROL:
            allowed = _child_control(item, member_path, problems)
            ok = ok and allowed is not None
        elif member in ALL_OPERATORS:
            problems.add(member_path, f"{member} sets a field; put it inside tag_key, tag_value, enforced_for "
                                      "or report_required_tag_for")
            ok = False
        else:
            _unknown(path, str(member), [*KEY_FIELDS, CHILD_CONTROL], problems, f"policy key {policy_key!r}")
            ok = False
    if not ok:
        return None
    return TagKeyPolicy(policy_key, settings.get("tag_key"), settings.get("tag_value"),
                        settings.get("enforced_for"), settings.get("report_required_tag_for"), allowed)


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    return a if b is None else a & b


def _parse_document(doc: Any, problems: _Problems) -> tuple[dict[str, TagKeyPolicy], frozenset[str] | None]:
    tags_out: dict[str, TagKeyPolicy] = {}
    if not isinstance(doc, Mapping):
        problems.add((), f"a tag policy is a JSON object with a \"tags\" member, got {_describe(doc)}")
        return tags_out, None
    allowed: frozenset[str] | None = None
    for member, item in doc.items():
        if member == CHILD_CONTROL:
            allowed = _intersect(allowed, _child_control(item, (member,), problems))
        elif member != "tags":
            _unknown((), str(member), ["tags", CHILD_CONTROL], problems, "the document")
    if "tags" not in doc:
        problems.add((), "missing \"tags\"; a tag policy starts with {\"tags\": {\"<key>\": {...}}}")
        return tags_out, allowed
    tags = doc["tags"]
    if not isinstance(tags, Mapping):
        problems.add(("tags",), f"must be an object mapping policy keys to their rules, got {_describe(tags)}")
        return tags_out, allowed
    first_spelling: dict[str, str] = {}
    for policy_key, body in tags.items():
        path: Path = ("tags", policy_key)
        if policy_key == CHILD_CONTROL:
            allowed = _intersect(allowed, _child_control(body, path, problems))
            continue
        if policy_key.startswith("@@"):
            problems.add(path, f"{policy_key} is not valid directly under tags; only "
                               f"{CHILD_CONTROL} is, and value operators go inside a key's fields")
            continue
        before = len(problems.items)
        _check_key_text(policy_key, path, problems, "policy key")
        if len(problems.items) > before:
            continue
        folded = policy_key.lower()
        if folded in first_spelling:
            problems.add(path, f"policy key {policy_key!r} repeats {first_spelling[folded]!r}; policy keys "
                               "ignore case, so merge the two")
            continue
        first_spelling[folded] = policy_key
        parsed = _parse_key(policy_key, body, path, problems)
        if parsed is not None:
            tags_out[folded] = parsed
    return tags_out, allowed


def parse_tag_policy(data: str | bytes | Mapping[str, Any], *, policy_id: str | None = None,
                     name: str | None = None, target: str | None = None,
                     source: str | None = None) -> TagPolicyDoc:
    """Parse and validate an AWS Organizations tag policy (JSON text, bytes or a parsed mapping).

    ``policy_id``, ``name`` and ``target`` (where the policy is attached) label the result; ``source``
    names the origin in error messages (defaults to the policy id or name). Raises
    :class:`policies.policy.PolicyError` listing every problem, each at its JSON path.
    """
    origin = source or policy_id or name
    parsed, locator = parse_json_document(data, origin)

    problems = _Problems()
    tags, allowed = _parse_document(parsed, problems)
    found: list[tuple[Path, str, int | None]] = [(path, message, None) for path, message in problems.items]
    found.extend(repeated_key_problems(locator))
    if found:
        ranked: list[tuple[int, int, int, PolicyProblem]] = []
        for order, (path, message, offset) in enumerate(found):
            pos = None
            if locator is not None:
                pos = locator.position(path) if offset is None else locator.line_column(offset)
            line, column = pos if pos is not None else (None, None)
            ranked.append((line or 0, column or 0, order, PolicyProblem(_format_path(path), message, line, column)))
        # Text order is the order a person fixes things in; without text, walk order stays.
        ranked.sort(key=lambda t: t[:3])
        raise PolicyError([t[3] for t in ranked], origin)
    return TagPolicyDoc(tags, allowed, policy_id, name, target)
