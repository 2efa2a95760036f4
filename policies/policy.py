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
``None``, a missing ``severity`` becomes ``error`` for required tags and ``warning`` for
optional ones, and a ``tag_aliases`` entry without aliases (``null`` or ``[]``) is dropped.

Beyond the peer format, a rule may carry ``required_for``, ``error_for`` and ``source`` (see
:class:`TagRule`; AWS Organizations tag policies convert to them). They are optional, and left out of
dumps while unset, so a policy that does not use them dumps and hashes exactly as before.

Three optional top-level keys follow the same rule (left out of dumps while empty):

* ``exemptions`` (:class:`Exemption`): time-boxed waivers for matched resources; the engine applies
  the ones not expired on the date its caller passes (see ``policies.engine.compile_policy``).
* ``tag_aliases``: canonical tag name -> other keys people use for it (``{"Environment": ["env"]}``).
  Aliases never satisfy a rule (AWS compares exact keys); they make the "missing tag" suggestion say
  which key to rename. See :meth:`Policy.alias_map`.
* ``overrides`` (:class:`Override`): per-account / per-OU rule changes, resolved by
  :meth:`Policy.for_account` into the policy that governs one account.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
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


# AWS ids: a 12-digit account, an OU (``ou-<root>-<suffix>``) or the organization root (``r-...``).
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_OU_ID = re.compile(r"ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NO_EXPIRY = ('every exemption needs an end date: add "expires": "YYYY-MM-DD" (the last day it applies); '
              "an exemption without one would waive the rule forever")


def _check_account_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"account id {value} must be a string (\"{value:012d}\"), so leading zeros are kept")
    if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value) is None:
        digits = re.sub(r"[^0-9]", "", value)
        hint = f"; did you mean '{digits}'?" if len(digits) == 12 else ""
        raise ValueError(f"account id {value!r} must be the 12 digits of an AWS account, e.g. '123456789012'{hint}")
    return value


def _check_ou_id(value: str) -> str:
    if _OU_ID.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not an organizational unit id; use the id, not the name: 'ou-ab12-cd34ef56' "
                         "for an OU or 'r-ab12' for the root (aws organizations list-organizational-units-for-parent)")
    return value


def _check_identifier(value: str) -> str:
    if not value.strip():
        raise ValueError("id must not be empty; give a short stable name such as 'EXC-2024-017'")
    if value != value.strip():
        raise ValueError(f"id {value!r} has leading or trailing spaces; remove them")
    return value


def _parse_expiry(value: Any) -> Any:
    """``expires``: an ISO date ``YYYY-MM-DD`` (or a ``date``); anything else says how to write it."""
    if value is None:
        raise ValueError(_NO_EXPIRY)
    if isinstance(value, datetime):
        raise ValueError(f"expires must be a date without a time, e.g. '{value.date().isoformat()}'")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.fullmatch(text) is None:
            raise ValueError(f"expires must be an ISO date 'YYYY-MM-DD' such as '2025-12-31', got {value!r}")
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a day of the calendar; fix the month or the day") from None
    raise ValueError(f"expires must be an ISO date string 'YYYY-MM-DD' such as '2025-12-31', got {_describe(value)}")


def _check_arn_pattern(pattern: str) -> str:
    if not pattern.strip():
        raise ValueError("ARN pattern must not be empty")
    if pattern != pattern.strip():
        raise ValueError(f"ARN pattern {pattern!r} has leading or trailing spaces; remove them")
    if not pattern.replace(WILDCARD, ""):
        raise ValueError(f"ARN pattern {pattern!r} matches every resource; name the resources it is for, e.g. "
                         "'arn:aws:s3:::legacy-*' or 'arn:aws:ec2:*:123456789012:instance/*'")
    return pattern


def _required_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty; say why the resources are exempt (ticket, risk acceptance)")
    return value


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_empty_text(value: Any) -> Any:
    return "" if value is None else value


TagName = Annotated[str, AfterValidator(_check_tag_name)]
AllowedValue = Annotated[str, AfterValidator(_check_allowed_value)]
ResourceType = Annotated[str, AfterValidator(_check_resource_type)]
ProhibitedPattern = Annotated[str, AfterValidator(_check_prohibited)]
AccountId = Annotated[str, BeforeValidator(_check_account_id)]
OrganizationalUnitId = Annotated[str, AfterValidator(_check_ou_id)]
Identifier = Annotated[str, AfterValidator(_check_identifier)]
ExpiryDate = Annotated[date, BeforeValidator(_parse_expiry)]
ArnPattern = Annotated[str, AfterValidator(_check_arn_pattern)]


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


# Policy keys added after the peer format; left out of dumps while empty, so a policy without them keeps
# its JSON and its content hash.
_POLICY_EXTENSION_FIELDS = ("exemptions", "tag_aliases", "overrides")


class Exemption(BaseModel):
    """A time-boxed waiver: matched resources are not reported for the tags it names.

    A resource is matched when EVERY criterion given matches (they combine with AND); at least one of
    ``arn_patterns``, ``accounts``, ``resource_types`` and ``tag_conditions`` must be given:

    * ``arn_patterns``: the whole ARN matches one of them; ``*`` (any number of them) matches any run
      of characters, nothing else is special; case-sensitive.
    * ``accounts``: 12-digit account ids; the resource's account is one of them.
    * ``resource_types``: ``service:resource`` entries matched like ``applies_to`` (``ec2:*``).
    * ``tag_conditions``: ``{key: value}`` the resource must carry; a value may hold one ``*`` like
      an allowed value, ``"*"`` alone only asks for the key. Keys and values compare exactly unless
      the policy's ``case_sensitivity`` is false.

    ``tags`` names the policy tags whose violations are waived (exact names); empty waives every
    violation of the resource, naming rules and prohibited keys included. ``expires`` is the last
    day the exemption applies (inclusive). ``reason`` is required, ``approved_by`` is free text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    reason: Annotated[str, AfterValidator(_required_text)]
    expires: ExpiryDate
    arn_patterns: list[ArnPattern] = Field(default_factory=list)
    accounts: list[AccountId] = Field(default_factory=list)
    resource_types: list[ResourceType] = Field(default_factory=list)
    tag_conditions: dict[TagName, AllowedValue] = Field(default_factory=dict)
    tags: list[TagName] = Field(default_factory=list)
    approved_by: str | None = None

    _none_lists = field_validator("arn_patterns", "accounts", "resource_types", "tags",
                                  mode="before")(_none_to_empty_list)

    @field_validator("tag_conditions", mode="before")
    @classmethod
    def _none_conditions(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("approved_by")
    @classmethod
    def _blank_approver_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @model_validator(mode="after")
    def _targets_something(self) -> Exemption:
        if not (self.arn_patterns or self.accounts or self.resource_types or self.tag_conditions):
            raise ValueError("the exemption matches every resource; say which resources it covers with at least "
                             "one of arn_patterns, accounts, resource_types or tag_conditions")
        return self

    def active_on(self, day: date | None) -> bool:
        """Whether the exemption applies on ``day`` (``expires`` inclusive); ``None`` means always.

        A ``datetime`` counts by its day (it is a ``date`` subclass but does not compare with one).
        """
        if isinstance(day, datetime):
            day = day.date()
        return day is None or day <= self.expires

    def waives_tag(self, tag_name: str) -> bool:
        """Whether violations of policy tag ``tag_name`` are waived (always, when ``tags`` is empty)."""
        return not self.tags or tag_name in self.tags


class Override(BaseModel):
    """Rule changes for some accounts or organizational units (see :meth:`Policy.for_account`).

    ``required_tags`` / ``optional_tags`` hold rules in the top-level schema: a rule whose name a base
    rule has replaces that rule (moving it between required and optional if needed), a new name
    adds a rule. ``remove_tags`` drops rules by name. ``accounts`` (12-digit ids) and
    ``organizational_units`` (``ou-...`` or the root ``r-...``) say where it applies; one is needed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    description: str = ""
    accounts: list[AccountId] = Field(default_factory=list)
    organizational_units: list[OrganizationalUnitId] = Field(default_factory=list)
    required_tags: list[TagRule] = Field(default_factory=list)
    optional_tags: list[TagRule] = Field(default_factory=list)
    remove_tags: list[TagName] = Field(default_factory=list)

    _none_lists = field_validator("accounts", "organizational_units", "remove_tags",
                                  mode="before")(_none_to_empty_list)
    _none_text = field_validator("description", mode="before")(_none_to_empty_text)

    @field_validator("required_tags", mode="before")
    @classmethod
    def _required_defaults(cls, value: Any) -> Any:
        return _with_default_severity(_none_to_empty_list(value), Severity.ERROR)

    @field_validator("optional_tags", mode="before")
    @classmethod
    def _optional_defaults(cls, value: Any) -> Any:
        return _with_default_severity(_none_to_empty_list(value), Severity.WARNING)

    @model_validator(mode="after")
    def _targets_something(self) -> Override:
        if not self.accounts and not self.organizational_units:
            raise ValueError("the override targets nothing, so it never applies; list the accounts or "
                             "organizational_units it is for")
        return self

    def rank_for(self, account_id: str, ou_path: Sequence[str]) -> int | None:
        """How specific this override is for the account: ``len(ou_path)`` when it names the account,
        else the depth (0 = root) of the deepest OU of ``ou_path`` it names; ``None`` if it does not apply."""
        if account_id in self.accounts:
            return len(ou_path)
        depths = [depth for depth, ou in enumerate(ou_path) if ou in self.organizational_units]
        return max(depths) if depths else None


class Policy(BaseModel):
    """A validated tagging policy. Build it with :func:`load_policy` or :func:`load_policy_file`.

    ``prohibited_tags`` are key patterns (one ``*`` allowed, matched ignoring case). ``max_tags``
    caps user tags per resource (1..50, the AWS limit; ``None`` turns the check off).

    ``exemptions``, ``tag_aliases`` and ``overrides`` are optional (see the module docstring); a
    policy without them dumps and hashes as before. The engine evaluates the top-level rules only:
    for an account governed by overrides, evaluate ``policy.for_account(account_id, ou_path)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "1.0"
    description: str = ""
    required_tags: list[TagRule] = Field(default_factory=list)
    optional_tags: list[TagRule] = Field(default_factory=list)
    prohibited_tags: list[ProhibitedPattern] = Field(default_factory=list)
    max_tags: StrictInt | None = AWS_MAX_TAGS
    tag_naming_rules: NamingRules = Field(default_factory=NamingRules)
    exemptions: list[Exemption] = Field(default_factory=list)
    tag_aliases: dict[TagName, list[TagName]] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)

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

    _none_lists = field_validator("prohibited_tags", "exemptions", "overrides", mode="before")(_none_to_empty_list)
    _none_text = field_validator("description", mode="before")(_none_to_empty_text)

    @field_validator("tag_aliases", mode="before")
    @classmethod
    def _alias_defaults(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            # "env" alone is a common shorthand for ["env"]; null means no alias.
            return {k: [v] if isinstance(v, str) else _none_to_empty_list(v) for k, v in value.items()}
        return value

    @field_validator("tag_aliases")
    @classmethod
    def _drop_aliasless_entries(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # A canonical with no alias (null or []) means nothing; dropping it keeps equal meaning at an equal
        # content hash (a policy whose entries are all empty dumps as one without tag_aliases).
        return {canonical: aliases for canonical, aliases in value.items() if aliases}

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
        if self.exemptions or self.tag_aliases or self.overrides:
            found += _extension_cross_problems(self.model_dump())
        if found:
            raise ValueError("; ".join(f"{_format_path(path)}: {msg}" for path, msg in found))
        return self

    @model_serializer(mode="wrap")
    def _omit_empty_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key in _POLICY_EXTENSION_FIELDS:
                if not data.get(key):
                    data.pop(key, None)
        return data

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

    def tag_names(self) -> list[str]:
        """Names of the top-level rules, required first, in policy order."""
        return [rule.name for rule, _ in self.rules()]

    def alias_map(self) -> dict[str, str]:
        """Alias key casefolded -> canonical policy tag name, from ``tag_aliases``.

        Keys compare ignoring case here because aliases describe what people type (``env``, ``Env``,
        ``ENV``); the canonical is spelled as the policy defines it.
        """
        return {alias.casefold(): canonical for canonical, aliases in self.tag_aliases.items() for alias in aliases}

    def canonical_tag_name(self, key: str) -> str | None:
        """The policy tag a resource key stands for: the rule it names (in any case) or, for an
        alias, its canonical; ``None`` when the key means nothing to the policy."""
        folded = key.casefold()
        for name in self.tag_names():
            if name.casefold() == folded:
                return name
        return self.alias_map().get(folded)

    def for_account(self, account_id: str, ou_path: Sequence[str] = ()) -> Policy:
        """The policy governing one account: the top-level rules with the matching overrides applied.

        ``ou_path`` lists the account's organizational units from the root down (``r-...`` first,
        the account's own OU last). Overrides apply one after the other, least specific first, so
        the most specific one wins where two change the same tag: those matched through an OU in
        ``ou_path`` order (root -> leaf; an override naming several OUs of the path counts at the
        deepest), then those naming the account itself; ties keep the order of ``overrides``.
        Each override first drops its ``remove_tags``, then replaces or adds its rules; a rule it
        brings without a ``source`` gets ``override:<id>``.

        The result has no ``overrides`` (so its :meth:`content_hash` identifies exactly the rules
        applied), keeps ``exemptions``, and keeps the ``tag_aliases`` whose tag it still defines.
        """
        applicable = sorted((rank, index, o) for index, o in enumerate(self.overrides)
                            if (rank := o.rank_for(account_id, ou_path)) is not None)
        required = list(self.required_tags)
        optional = list(self.optional_tags)
        for _, _, override in applicable:
            required, optional = _apply_override(required, optional, override)
        names = {rule.name for rule in (*required, *optional)}
        aliases = {canonical: list(keys) for canonical, keys in self.tag_aliases.items() if canonical in names}
        return self.model_copy(update={"required_tags": required, "optional_tags": optional, "overrides": [],
                                       "tag_aliases": aliases})


def _apply_override(required: list[TagRule], optional: list[TagRule],
                     override: Override) -> tuple[list[TagRule], list[TagRule]]:
    """``required`` and ``optional`` after one override (see :meth:`Policy.for_account`)."""
    removed = set(override.remove_tags)
    required = [r for r in required if r.name not in removed]
    optional = [r for r in optional if r.name not in removed]
    source = f"override:{override.id}"
    for rules, into, other in ((override.required_tags, required, optional),
                               (override.optional_tags, optional, required)):
        for rule in rules:
            if rule.source is None:
                rule = rule.model_copy(update={"source": source})
            at = next((i for i, r in enumerate(into) if r.name == rule.name), None)
            if at is not None:
                # A replaced rule keeps its place, so violations keep their order in reports.
                into[at] = rule
                continue
            other[:] = [r for r in other if r.name != rule.name]
            into.append(rule)
    return required, optional


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
    return _name_cross_problems(data) + placement + _extension_cross_problems(data)


def _named_rules(items: Any, path: Path) -> list[tuple[Path, str]]:
    """(path of the name, name) of every rule object in a raw rule list."""
    out: list[tuple[Path, str]] = []
    if isinstance(items, list):
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, Mapping) else None
            if isinstance(name, str) and name.strip():
                out.append(((*path, i, "name"), name))
    return out


def _unique_ids(items: Any, section: str, what: str) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    seen: dict[str, int] = {}
    if isinstance(items, list):
        for i, item in enumerate(items):
            ident = item.get("id") if isinstance(item, Mapping) else None
            if not isinstance(ident, str) or not ident.strip():
                continue
            if ident in seen:
                problems.append(((section, i, "id"), f"{what} id {ident!r} is already used by "
                                                     f"{section}[{seen[ident]}]; ids must be unique so reports can "
                                                     "tell them apart"))
            else:
                seen[ident] = i
    return problems


def alias_problems(tag_names: Iterable[str],
                   aliases: Mapping[str, Sequence[str]]) -> list[tuple[Path, str, str]]:
    """(path, lint code, message) for every unusable ``tag_aliases`` entry.

    A canonical must be a tag the policy defines (``tag_names``: top level and overrides); an alias
    must not be a policy tag name in any case (that key has its own rule) and may stand for one tag
    only. Used by the loader and, for policies built in code, by the linter.
    """
    names = list(tag_names)
    folded_names: dict[str, str] = {}
    for name in names:
        # The first spelling is the policy's (top level before overrides).
        folded_names.setdefault(name.casefold(), name)
    problems: list[tuple[Path, str, str]] = []
    owner: dict[str, tuple[str, int]] = {}
    for canonical, keys in aliases.items():
        if not isinstance(canonical, str):
            continue
        if canonical not in names:
            guess = folded_names.get(canonical.casefold()) or closest_key(canonical, names)
            hint = (f"did you mean {guess!r}?" if guess
                    else "add the tag to required_tags or optional_tags, or remove the entry")
            problems.append((("tag_aliases", canonical), "alias-unknown-tag",
                             f"{canonical!r} is not a tag the policy defines, and aliases point at a policy tag; "
                             f"{hint}"))
        if not isinstance(keys, list):
            continue
        for j, alias in enumerate(keys):
            if not isinstance(alias, str) or not alias.strip():
                continue
            folded = alias.casefold()
            path: Path = ("tag_aliases", canonical, j)
            named = folded_names.get(folded)
            if named is not None and alias == canonical:
                problems.append((path, "alias-conflict",
                                 f"alias {alias!r} is the tag {canonical!r} itself, which its rule already covers; "
                                 "remove it"))
            elif named is not None and named.casefold() == canonical.casefold():
                problems.append((path, "alias-conflict",
                                 f"alias {alias!r} is {canonical!r} in another case, which the engine already reports "
                                 "as a miscased key (wrong_key_case); remove it"))
            elif named is not None:
                problems.append((path, "alias-conflict",
                                 f"alias {alias!r} is the policy tag {named!r} (ignoring case), which has its own "
                                 "rule; a key cannot also stand for another tag: remove it"))
            elif folded in owner and owner[folded][0] != canonical:
                other, k = owner[folded]
                problems.append((path, "alias-conflict",
                                 f"alias {alias!r} is also listed under {other!r} (tag_aliases.{other}[{k}], compared "
                                 "ignoring case); an alias can stand for one tag only: keep it under one"))
            else:
                owner.setdefault(folded, (canonical, j))
    return problems


def _extension_cross_problems(data: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Cross checks of ``exemptions``, ``tag_aliases`` and ``overrides`` on raw (or dumped) input."""
    problems = _unique_ids(data.get("exemptions"), "exemptions", "exemption")
    overrides = data.get("overrides")
    problems += _unique_ids(overrides, "overrides", "override")
    base = _named_rules(data.get("required_tags"), ("required_tags",)) + _named_rules(
        data.get("optional_tags"), ("optional_tags",))
    # The first spelling of each name (top level first): every later use must spell it the same,
    # or an override meant to replace a rule would add a near-duplicate instead.
    first: dict[str, tuple[Path, str]] = {}
    for path, name in base:
        first.setdefault(name.casefold(), (path, name))
    prohibited = data.get("prohibited_tags")
    patterns = ([(("prohibited_tags", i), p) for i, p in enumerate(prohibited) if isinstance(p, str)]
                if isinstance(prohibited, list) else [])
    all_names = [name for _, name in base]
    if isinstance(overrides, list):
        for i, item in enumerate(overrides):
            if not isinstance(item, Mapping):
                continue
            own = (_named_rules(item.get("required_tags"), ("overrides", i, "required_tags"))
                   + _named_rules(item.get("optional_tags"), ("overrides", i, "optional_tags")))
            problems += _cross_problems(own, patterns)
            for path, name in own:
                seen = first.setdefault(name.casefold(), (path, name))
                if seen[1] != name:
                    problems.append((path, f"tag name {name!r} differs only in case from {seen[1]!r} at "
                                           f"{_format_path(seen[0])}; spell it {seen[1]!r} to replace that rule "
                                           "(tag keys are case-sensitive)"))
                all_names.append(name)
            optional = item.get("optional_tags")
            if isinstance(optional, list):
                problems += [(("overrides", i, "optional_tags", j, "required_for"), _OPTIONAL_REQUIRED_FOR)
                             for j, rule in enumerate(optional)
                             if isinstance(rule, Mapping) and rule.get("required_for") is not None]
    if isinstance(overrides, list):
        for i, item in enumerate(overrides):
            removes = item.get("remove_tags") if isinstance(item, Mapping) else None
            if not isinstance(removes, list):
                continue
            for k, name in enumerate(removes):
                if isinstance(name, str) and name.strip() and name not in all_names:
                    guess = closest_key(name, all_names)
                    hint = f"did you mean {guess!r}?" if guess else "remove it from remove_tags"
                    problems.append((("overrides", i, "remove_tags", k),
                                     f"{name!r} is not a tag the policy defines, so there is nothing to remove; "
                                     f"{hint}"))
    aliases = data.get("tag_aliases")
    if isinstance(aliases, Mapping):
        problems += [(path, message) for path, _, message in alias_problems(all_names, aliases)]
    return problems


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
    if path[0] == "exemptions" and len(path) == 2:
        return list(Exemption.model_fields)
    if path[0] == "overrides" and len(path) == 2:
        return list(Override.model_fields)
    if path[0] == "overrides" and len(path) == 4 and path[2] in ("required_tags", "optional_tags"):
        return list(TagRule.model_fields)
    return []


# Messages for required keys of the extension objects, by (section, key): what the key is for.
_MISSING_HINTS = {
    ("exemptions", "expires"): _NO_EXPIRY,
    ("exemptions", "id"): 'add "id": a short stable name reports use to refer to the exemption',
    ("exemptions", "reason"): 'add "reason": why these resources are exempt (ticket, risk acceptance)',
    ("overrides", "id"): 'add "id": a short stable name, recorded as the source of the rules it brings',
}


def _error_message(err: ErrorDetails) -> str:
    kind, value = err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        loc = err["loc"]
        hint = _MISSING_HINTS.get((str(loc[0]), str(loc[-1]))) if len(loc) == 3 else None
        return f"required key is missing; {hint}" if hint else "required key is missing"
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
        # A bad mapping key is reported at the key itself (pydantic adds a "[key]" step to its path).
        found.extend((tuple(err["loc"][:-1] if err["loc"][-1:] == ("[key]",) else err["loc"]), _error_message(err),
                      None) for err in exc.errors())
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
