"""The tagging policy as data: pydantic models, loading, and validation that points at what to fix.

The JSON format is the one used by the existing tag-compliance MCP servers (``required_tags``,
``optional_tags``, ``tag_naming_rules``), extended with ``severity`` and ``prohibited_tags`` /
``max_tags``. Policies written for those servers load unchanged; the top-level keys they carry that
this engine has no use for (``last_updated``, ``supported_resource_types``) are accepted and
dropped.

Loading collects every problem before raising one :class:`PolicyError`, so a person fixes a file in
one pass. Each problem names a JSON path (``required_tags[1].allowed_values[0]``) and, when the
policy came as text, the line it is on. Unknown keys are problems rather than silently ignored,
because a misspelt ``allowed_value`` would otherwise switch a check off without anyone noticing.

Normalisation (so equal meaning gives an equal :meth:`Policy.content_hash`): ``null`` lists become
empty lists, ``"allowed_values": []`` and ``"validation_regex": ""`` mean "no constraint" and become
``None``, and a missing ``severity`` becomes ``error`` for required tags and ``warning`` for
optional ones.

Beyond the peer format, a rule may carry ``required_for``, ``error_for`` and ``source`` (see
:class:`TagRule`; AWS Organizations tag policies convert to them). They are optional, and left out of
dumps while unset, so a policy that does not use them dumps and hashes exactly as before.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails

from policies.matching import WILDCARD, closest_key, count_wildcards, wildcard_match
from policies.models import Severity

# AWS limits (REFERENCE "AWS tagging facts"): 50 user tags, keys <= 128 chars, values <= 256 chars.
AWS_MAX_TAGS = 50
AWS_MAX_KEY_LENGTH = 128
AWS_MAX_VALUE_LENGTH = 256
RESERVED_PREFIX = "aws:"

# Top-level keys that policies written for the peer MCP server carry and this engine ignores.
IGNORED_TOP_LEVEL_KEYS = frozenset({"last_updated", "supported_resource_types"})

# `service:resource`, lowercase service (AWS service prefixes are lowercase), resource non-empty.
# `service:*` and `service:ALL_SUPPORTED` (AWS tag policy spelling) cover every type of a service.
_RESOURCE_TYPE = re.compile(r"[a-z][a-z0-9-]*:[^\s:]+")
SERVICE_WILDCARDS = frozenset({"*", "ALL_SUPPORTED"})

# Bypasses the model-level cross checks when load_policy runs its own, location-precise ones.
_LOADER_CONTEXT = {"policies.loader": True}


# --- field validators (each raises ValueError with a message that says how to fix it) -------------


def _check_tag_name(name: str) -> str:
    if not name.strip():
        raise ValueError("tag name must not be empty")
    if name != name.strip():
        raise ValueError(f"tag name {name!r} has leading or trailing spaces; remove them")
    if name.casefold().startswith(RESERVED_PREFIX):
        raise ValueError(f"tag name {name!r} uses the prefix 'aws:', which AWS reserves for its own tags")
    if WILDCARD in name:
        raise ValueError(f"tag name {name!r} contains '*'; tag names are literal keys, not patterns")
    if len(name) > AWS_MAX_KEY_LENGTH:
        raise ValueError(f"tag name is {len(name)} characters long; AWS allows at most {AWS_MAX_KEY_LENGTH}")
    return name


def _check_allowed_value(value: str) -> str:
    stars = count_wildcards(value)
    if stars > 1:
        raise ValueError(
            f"allowed value {value!r} holds {stars} '*' wildcards; AWS allows one '*' per value "
            "(e.g. 'prod*' or '*@example.com'), and '*' alone allows any value"
        )
    return value


def _check_resource_type(value: str) -> str:
    if _RESOURCE_TYPE.fullmatch(value) is None:
        hint = ""
        service, sep, resource = value.partition(":")
        if sep and resource and _RESOURCE_TYPE.fullmatch(f"{service.lower()}:{resource}"):
            hint = f"; did you mean '{service.lower()}:{resource}'?"
        raise ValueError(
            f"resource type {value!r} must look like 'service:resource' with a lowercase service, "
            f"e.g. 'ec2:instance' or 's3:bucket'{hint}"
        )
    return value


def _check_prohibited(pattern: str) -> str:
    if not pattern.strip():
        raise ValueError("prohibited tag pattern must not be empty")
    stars = count_wildcards(pattern)
    if stars > 1:
        raise ValueError(f"pattern {pattern!r} holds {stars} '*' wildcards; at most one is allowed")
    return pattern


def _check_regex(pattern: str | None) -> str | None:
    if pattern is None or pattern == "":
        # An empty pattern would accept only the empty value; it can only mean "no format rule".
        return None
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc} — fix the pattern") from None
    return pattern


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_empty_text(value: Any) -> Any:
    return "" if value is None else value


TagName = Annotated[str, AfterValidator(_check_tag_name)]
AllowedValue = Annotated[str, AfterValidator(_check_allowed_value)]
ResourceType = Annotated[str, AfterValidator(_check_resource_type)]
ProhibitedPattern = Annotated[str, AfterValidator(_check_prohibited)]


# TagRule fields added after the peer format; left out of dumps while unset, so existing policies keep
# their JSON and their content hash (their version id in the policy store).
_EXTENSION_FIELDS = ("required_for", "error_for", "source")


def _covered_by(applies_to: Sequence[str], entry: str) -> bool:
    """Whether every resource type ``entry`` names is covered by ``applies_to`` (empty covers all)."""
    if not applies_to:
        return True
    service, _, resource = entry.partition(":")
    if resource in SERVICE_WILDCARDS:
        # A whole service is covered only by a whole-service entry for that service.
        return any(a.partition(":")[2] in SERVICE_WILDCARDS and a.partition(":")[0] == service.casefold()
                   for a in applies_to)
    return applies_to_type(applies_to, entry)


class TagRule(BaseModel):
    """One tag the policy knows: its name, what values it accepts, and where it applies.

    ``allowed_values`` may use one ``*`` per value (AWS tag policy wildcards); ``validation_regex``
    must match the whole value. Both ``None`` means any value is accepted once the tag is present.
    ``applies_to`` lists ``service:resource`` types; empty means every type.

    Extensions (all optional; a policy without them behaves exactly as before):

    * ``required_for`` (required tags only): the key is required only on these types. On the other
      ``applies_to`` types the rule still applies (those resources stay in scope) but works like an
      optional tag: checked when present, fine when absent. ``[]`` means "required on no type,
      checked wherever present", which is how AWS tag policies treat a key without
      ``report_required_tag_for``. Every entry must be covered by ``applies_to``.
    * ``error_for``: on these types violations of this rule are errors whatever ``severity`` says
      (AWS ``enforced_for``: types where AWS itself blocks a non-compliant value). Every entry must
      be covered by ``applies_to``; ``[]`` means no override.
    * ``source``: where the rule came from (``aws:p-abc123 (OU Production)``); copied onto every
      violation of this rule so a report can name the policy and level.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TagName
    description: str = ""
    allowed_values: list[AllowedValue] | None = None
    validation_regex: str | None = None
    applies_to: list[ResourceType] = Field(default_factory=list)
    severity: Severity = Severity.ERROR
    required_for: list[ResourceType] | None = None
    error_for: list[ResourceType] | None = None
    source: str | None = None

    _none_lists = field_validator("applies_to", mode="before")(_none_to_empty_list)
    _none_text = field_validator("description", mode="before")(_none_to_empty_text)
    _regex = field_validator("validation_regex")(_check_regex)

    @field_validator("required_for", "error_for")
    @classmethod
    def _within_applies_to(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        applies_to = info.data.get("applies_to")
        if isinstance(applies_to, list):
            outside = [entry for entry in value if not _covered_by(applies_to, entry)]
            if outside:
                raise ValueError(f"{', '.join(map(repr, outside))} not covered by applies_to; a rule can "
                                 f"only be required or escalated where it applies — add "
                                 f"{'them' if len(outside) > 1 else 'it'} to applies_to")
        if info.field_name == "error_for" and not value:
            # No type escalated is the same as no override; one spelling keeps hashes equal.
            return None
        return value

    @field_validator("source")
    @classmethod
    def _blank_source_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @model_serializer(mode="wrap")
    def _omit_unset_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key in _EXTENSION_FIELDS:
                if data.get(key) is None:
                    data.pop(key, None)
        return data

    @field_validator("allowed_values")
    @classmethod
    def _empty_allowed_means_any(cls, value: list[str] | None) -> list[str] | None:
        # An empty list cannot sensibly mean "nothing is allowed" (every resource would fail), so
        # it is read like null: no constraint.
        return value or None

    def applies_to_type(self, resource_type: str) -> bool:
        """Whether this rule covers ``resource_type`` (case-insensitive; ``service:*`` covers a service)."""
        return applies_to_type(self.applies_to, resource_type)


def listed_type(types: Sequence[str] | None, resource_type: str) -> bool:
    """Whether ``types`` names ``resource_type``; unlike ``applies_to``, ``None`` and ``[]`` name nothing."""
    return bool(types) and applies_to_type(types or (), resource_type)


def applies_to_type(applies_to: Sequence[str], resource_type: str) -> bool:
    """Whether an ``applies_to`` list covers ``resource_type``; an empty list covers every type."""
    if not applies_to:
        return True
    rtype = resource_type.casefold()
    service = rtype.partition(":")[0]
    for entry in applies_to:
        entry_service, _, entry_resource = entry.partition(":")
        if entry_resource in SERVICE_WILDCARDS:
            if entry_service == service:
                return True
        elif entry.casefold() == rtype:
            return True
    return False


class NamingRules(BaseModel):
    """Key and value naming rules (``tag_naming_rules``); the defaults are the AWS limits.

    ``case_sensitivity`` true means a key must be spelled exactly as the policy names it (AWS keys are
    case-sensitive); false accepts any capitalisation and compares allowed values ignoring case.
    ``allow_special_characters`` false limits keys and values to letters, digits, spaces and
    ``_ . : / = + - @`` (the characters AWS accepts across all services).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_sensitivity: StrictBool = True
    allow_special_characters: StrictBool = True
    max_key_length: StrictInt = AWS_MAX_KEY_LENGTH
    max_value_length: StrictInt = AWS_MAX_VALUE_LENGTH

    @field_validator("max_key_length", "max_value_length")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value


def _with_default_severity(items: Any, default: Severity) -> Any:
    """Give rules without a ``severity`` the default of their list (required: error, optional: warning)."""
    if not isinstance(items, list):
        return items
    out: list[Any] = []
    for item in items:
        if isinstance(item, Mapping) and item.get("severity") is None:
            item = {**item, "severity": default.value}
        elif isinstance(item, TagRule) and "severity" not in item.model_fields_set:
            item = item.model_copy(update={"severity": default})
        out.append(item)
    return out


class Policy(BaseModel):
    """A validated tagging policy. Build it with :func:`load_policy` or :func:`load_policy_file`.

    ``prohibited_tags`` are key patterns (one ``*`` allowed, matched ignoring case). ``max_tags``
    caps user tags per resource (1..50, the AWS limit; ``None`` turns the check off).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "1.0"
    description: str = ""
    required_tags: list[TagRule] = Field(default_factory=list)
    optional_tags: list[TagRule] = Field(default_factory=list)
    prohibited_tags: list[ProhibitedPattern] = Field(default_factory=list)
    max_tags: StrictInt | None = AWS_MAX_TAGS
    tag_naming_rules: NamingRules = Field(default_factory=NamingRules)

    @model_validator(mode="before")
    @classmethod
    def _drop_peer_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and any(k in IGNORED_TOP_LEVEL_KEYS for k in data):
            return {k: v for k, v in data.items() if k not in IGNORED_TOP_LEVEL_KEYS}
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # `"version": 1.0` is a common slip; the number's text is what the author meant.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return "1.0" if value is None else value

    @field_validator("required_tags", mode="before")
    @classmethod
    def _required_defaults(cls, value: Any) -> Any:
        return _with_default_severity(_none_to_empty_list(value), Severity.ERROR)

    @field_validator("optional_tags", mode="before")
    @classmethod
    def _optional_defaults(cls, value: Any) -> Any:
        return _with_default_severity(_none_to_empty_list(value), Severity.WARNING)

    _none_lists = field_validator("prohibited_tags", mode="before")(_none_to_empty_list)
    _none_text = field_validator("description", mode="before")(_none_to_empty_text)

    @field_validator("tag_naming_rules", mode="before")
    @classmethod
    def _naming_defaults(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("max_tags")
    @classmethod
    def _max_tags_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= AWS_MAX_TAGS:
            raise ValueError(f"must be between 1 and {AWS_MAX_TAGS} (the AWS limit per resource), "
                             f"got {value}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Policy:
        if info.context and info.context.get("policies.loader"):
            return self
        found = _cross_problems(
            [(("required_tags", i, "name"), r.name) for i, r in enumerate(self.required_tags)]
            + [(("optional_tags", i, "name"), r.name) for i, r in enumerate(self.optional_tags)],
            [(("prohibited_tags", i), p) for i, p in enumerate(self.prohibited_tags)],
        ) + [(("optional_tags", i, "required_for"), _OPTIONAL_REQUIRED_FOR)
             for i, r in enumerate(self.optional_tags) if r.required_for is not None]
        if found:
            raise ValueError("; ".join(f"{_format_path(path)}: {msg}" for path, msg in found))
        return self

    def content_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of this policy: the policy's version id."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def rules(self) -> Iterator[tuple[TagRule, bool]]:
        """Every tag rule with whether it is required, required ones first, in policy order."""
        for rule in self.required_tags:
            yield rule, True
        for rule in self.optional_tags:
            yield rule, False


# --- problems and errors -----------------------------------------------------------------------

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy: where (JSON path such as ``required_tags[1].name``) and what.

    ``line``/``column`` (1-based) are set when the policy was loaded from text.
    """

    location: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line}, column {self.column})" if self.line is not None else ""
        return f"{self.location}: {self.message}{where}"


class PolicyError(Exception):
    """A policy failed to load; ``problems`` lists every problem found, ``source`` names the file."""

    def __init__(self, problems: Sequence[PolicyProblem], source: str | None = None) -> None:
        self.problems: list[PolicyProblem] = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        origin = f" {self.source}" if self.source else ""
        count = len(self.problems)
        header = f"invalid tagging policy{origin} ({count} problem{'s' if count != 1 else ''})"
        return header + "".join(f"\n- {p}" for p in self.problems)


def _format_path(path: Path) -> str:
    """JSON path text: ``required_tags[1].allowed_values[0]``; the document itself is ``$``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "$"


def _cross_problems(names: Sequence[tuple[Path, str]],
                    prohibited: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Problems that involve several rules: duplicate names, prohibited patterns hitting tag names."""
    problems: list[tuple[Path, str]] = []
    first_seen: dict[str, tuple[Path, str]] = {}
    for path, name in names:
        folded = name.casefold()
        if folded in first_seen:
            other_path, other = first_seen[folded]
            how = "duplicate tag name" if other == name else "tag name differs only in case from"
            problems.append((path, f"{how} {other!r} at {_format_path(other_path)}; each tag may be "
                                   "defined once (names are compared ignoring case)"))
        else:
            first_seen[folded] = (path, name)
    for path, pattern in prohibited:
        if count_wildcards(pattern) > 1 or not pattern.strip():
            continue
        for name_path, name in names:
            if wildcard_match(pattern, name, case_sensitive=False):
                problems.append((path, f"pattern {pattern!r} prohibits tag {name!r} defined at "
                                       f"{_format_path(name_path)}; a tag cannot be both defined and "
                                       "prohibited"))
                break
    return problems


_OPTIONAL_REQUIRED_FOR = ("required_for narrows where a required tag is required; an optional tag is never "
                          "required — move the rule to required_tags or remove required_for")


def _raw_cross_problems(data: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Cross checks on raw input, so they are reported even when other parts fail type validation."""
    placement: list[tuple[Path, str]] = []
    items = data.get("optional_tags")
    if isinstance(items, list):
        placement = [(("optional_tags", i, "required_for"), _OPTIONAL_REQUIRED_FOR) for i, item in enumerate(items)
                     if isinstance(item, Mapping) and item.get("required_for") is not None]
    return _name_cross_problems(data) + placement


def _name_cross_problems(data: Mapping[str, Any]) -> list[tuple[Path, str]]:
    names: list[tuple[Path, str]] = []
    for section in ("required_tags", "optional_tags"):
        items = data.get(section)
        if isinstance(items, list):
            for i, item in enumerate(items):
                name = item.get("name") if isinstance(item, Mapping) else None
                if isinstance(name, str) and name.strip():
                    names.append(((section, i, "name"), name))
    prohibited: list[tuple[Path, str]] = []
    items = data.get("prohibited_tags")
    if isinstance(items, list):
        prohibited = [(("prohibited_tags", i), p) for i, p in enumerate(items) if isinstance(p, str)]
    return _cross_problems(names, prohibited)


def _describe(value: Any) -> str:
    """A JSON-flavoured description of an offending input for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _known_keys(path: Path) -> list[str]:
    """The keys allowed in the object at ``path`` (for "unknown key, did you mean" messages)."""
    if not path:
        return [*Policy.model_fields, *sorted(IGNORED_TOP_LEVEL_KEYS)]
    if path[0] in ("required_tags", "optional_tags") and len(path) == 2:
        return list(TagRule.model_fields)
    if path[0] == "tag_naming_rules" and len(path) == 1:
        return list(NamingRules.model_fields)
    return []


def _error_message(err: ErrorDetails) -> str:
    kind, value = err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1]) if err["loc"] else ""
        known = _known_keys(tuple(err["loc"][:-1]))
        guess = closest_key(key, known)
        hint = f"did you mean '{guess}'?" if guess else "known keys: " + ", ".join(known)
        return f"unknown key; {hint}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_type":
        return f"must be a string, got {_describe(value)}"
    if kind == "bool_type":
        return f"must be true or false, got {_describe(value)}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"must be a whole number, got {_describe(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {_describe(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be an object, got {_describe(value)}"
    if kind == "enum":
        return f"must be {ctx.get('expected', 'one of the listed values')}, got {_describe(value)}"
    return f"{err['msg']} (got {_describe(value)})"


# --- locating paths in the source text -------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|NaN|-?Infinity")


class _Locator:
    """Offsets of every JSON path in already-valid JSON text, plus keys repeated inside one object.

    ``json`` keeps only the last of repeated keys without a word; reporting them catches a rule that
    was written twice and silently lost.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.offsets: dict[Path, int] = {}
        self.repeated: list[tuple[Path, int]] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        try:
            self._value(0, ())
        except (IndexError, ValueError, RecursionError):
            # Best effort: problems are still reported, only without line numbers.
            self.offsets.clear()

    def _skip(self, i: int) -> int:
        m = _WS.match(self.text, i)
        return m.end() if m else i

    def _value(self, i: int, path: Path) -> int:
        # Later occurrences overwrite earlier ones, as json.loads keeps the last of repeated keys.
        text = self.text
        i = self._skip(i)
        self.offsets[path] = i
        ch = text[i]
        if ch == "{":
            i = self._skip(i + 1)
            if text[i] == "}":
                return i + 1
            seen: set[str] = set()
            while True:
                i = self._skip(i)
                key_at = i
                key, i = self._string(i)
                member: Path = (*path, key)
                if key in seen:
                    self.repeated.append((member, key_at))
                seen.add(key)
                i = self._skip(i)
                if text[i] != ":":
                    raise ValueError("expected ':'")
                i = self._skip(self._value(i + 1, member))
                # A member's position is its key's: that is the line a person looks for.
                self.offsets[member] = key_at
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1
        if ch == "[":
            i = self._skip(i + 1)
            if text[i] == "]":
                return i + 1
            index = 0
            while True:
                i = self._skip(self._value(i, (*path, index)))
                index += 1
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1
        if ch == '"':
            return self._string(i)[1]
        m = _SCALAR.match(text, i)
        if m is None:
            raise ValueError("unexpected token")
        return m.end()

    def _string(self, i: int) -> tuple[str, int]:
        m = _STRING.match(self.text, i)
        if m is None:
            raise ValueError("expected a string")
        decoded: str = json.loads(m.group())
        return decoded, m.end()

    def line_column(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def position(self, path: Path) -> tuple[int, int] | None:
        """(line, column), 1-based, of ``path`` or of its closest ancestor present in the text."""
        while True:
            offset = self.offsets.get(path)
            if offset is not None:
                return self.line_column(offset)
            if not path:
                return None
            path = path[:-1]


# --- loading -------------------------------------------------------------------------------------


def parse_json_document(data: str | bytes | Mapping[str, Any],
                        source: str | None) -> tuple[Any, _Locator | None]:
    """Decode and parse a policy document; the locator (text input only) maps JSON paths to line and
    column and lists repeated keys. Undecodable or malformed text raises :class:`PolicyError`."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PolicyError([PolicyProblem("$", f"the policy is not UTF-8 text ({exc.reason} at byte "
                                                  f"{exc.start})")], source) from None
    if not isinstance(data, str):
        return data, None
    text = data.removeprefix("\ufeff")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "; the policy is empty" if not text.strip() else ""
        raise PolicyError([PolicyProblem("$", f"invalid JSON: {exc.msg}{hint}", exc.lineno, exc.colno)],
                          source) from None
    except RecursionError:
        raise PolicyError([PolicyProblem("$", "invalid JSON: nested too deeply")], source) from None
    return parsed, _Locator(text)


def repeated_key_problems(locator: _Locator | None) -> list[tuple[Path, str, int | None]]:
    """One problem per key that appears twice in one JSON object (JSON silently keeps the last)."""
    if locator is None:
        return []
    return [(path, f"key {str(path[-1])!r} appears more than once in this object; JSON keeps only the last "
                   "one, so merge or rename them", offset) for path, offset in locator.repeated]


def load_policy(data: str | bytes | Mapping[str, Any], *, source: str | None = None) -> Policy:
    """Parse and validate a policy from JSON text (``str``/``bytes``) or an already-parsed mapping.

    Raises :class:`PolicyError` listing every problem. ``source`` names the origin in the error text.
    """
    parsed, locator = parse_json_document(data, source)

    # (path, message, offset of the exact spot when the path alone would not find it)
    found = repeated_key_problems(locator)
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(parsed, context=_LOADER_CONTEXT)
    except ValidationError as exc:
        found.extend((tuple(err["loc"]), _error_message(err), None) for err in exc.errors())
    if isinstance(parsed, Mapping):
        found.extend((path, message, None) for path, message in _raw_cross_problems(parsed))

    if found:
        ranked: list[tuple[int, int, int, PolicyProblem]] = []
        for order, (path, message, offset) in enumerate(found):
            pos = None
            if locator is not None:
                pos = locator.position(path) if offset is None else locator.line_column(offset)
            line, column = pos if pos is not None else (None, None)
            problem = PolicyProblem(_format_path(path), message, line, column)
            ranked.append((line or 0, column or 0, order, problem))
        # Text order is the order a person fixes things in; without text, validation order stays.
        ranked.sort(key=lambda t: t[:3])
        raise PolicyError([t[3] for t in ranked], source)
    assert policy is not None
    return policy


def load_policy_file(path: str | os.PathLike[str]) -> Policy:
    """Read one policy JSON file and :func:`load_policy` it; unreadable files raise :class:`PolicyError`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise PolicyError([PolicyProblem("$", f"cannot read the policy file: {exc.strerror or exc}")],
                          name) from exc
    return load_policy(raw, source=name)
