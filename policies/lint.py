"""Lint a loaded tagging policy: rules that load fine but cannot work as their author meant.

:func:`load_policy` rejects what is malformed; this module finds what is well-formed yet wrong or
impossible: an allowed value its own regex refuses, a required key no resource can ever carry, a
resource type the scanner does not know, names a target cloud cannot store. Every finding carries
a JSON path (``required_tags[1].allowed_values[2]``), a severity, a stable code and a message that
names the fix. ``error`` means the rule can never be satisfied, or silently checks nothing, or the
target cloud cannot hold it; ``warning`` means the policy works but contains something pointless or
doubtful.

Wildcard allowed values (``prod*``, ``*@example.com``) are checked on their fixed parts (length,
characters, GCP format); against a ``validation_regex`` they are probed with sample fillers, so a
mismatch there is only a warning.

Several checks repeat cross checks the loader already makes (duplicate names, prohibited tag names,
``aws:``): a :class:`Policy` built with ``model_construct`` or by code that skips the loader still
gets them reported.

Codes and their severity (stable: callers and tests match on them):

=============================  ========  ==========================================================
code                           severity  meaning
=============================  ========  ==========================================================
duplicate-tag                  error     the same tag name is defined twice
key-case-collision             error     two tag names differ only by case (the engine would
                                         report each as a miscased copy of the other; Azure
                                         tag names are case-insensitive; GCP keys are lowercase)
prohibited-defined-tag         error     a prohibited pattern matches a defined tag name
duplicate-prohibited-pattern   warning   two prohibited patterns equal ignoring case
key-too-long                   error     tag name longer than ``max_key_length``
disallowed-characters          error     name or allowed value uses characters that
                                         ``allow_special_characters: false`` rejects
invalid-regex                  error     ``validation_regex`` does not compile
regex-unsatisfiable            error     the regex matches no value of a usable length (only the
                                         empty value, or longer than the value length limit)
empty-allowed-values           error     ``allowed_values`` is an empty list (nothing allowed)
blank-allowed-value            warning   an allowed value is empty or blank (reads as missing)
duplicate-allowed-value        warning   the same allowed value is listed twice
redundant-allowed-value        warning   a value already covered by a wildcard in the same list
allowed-value-too-long         error     allowed value longer than ``max_value_length``
allowed-value-fails-regex      error     a literal allowed value fails the tag's own regex
wildcard-value-fails-regex     warning   no sample value of a wildcard pattern passes the regex
                                         (a heuristic: wildcard patterns are probed, not proved)
rule-unsatisfiable             error     no allowed value can ever pass the rule's own checks
too-many-required-tags         error     more required tags apply to one type than ``max_tags``
                                         (counted per type as the engine does: ``required_for``
                                         narrows where a key is required)
unknown-resource-type          error     ``applies_to``, ``required_for`` or ``error_for`` names a
                                         type the scanner does not know
aws-key-too-long               error     target aws: key over 128 characters
aws-reserved-prefix            error     target aws: key starts with ``aws:``
aws-value-too-long             error     target aws: allowed value over 256 characters
aws-too-many-tags              error     target aws: more than 50 required tags on one type
azure-key-too-long             error     target azure: tag name over 512 characters
azure-key-characters           error     target azure: tag name holds ``< > % & \\ ? /``
azure-value-too-long           error     target azure: allowed value over 256 characters
azure-too-many-tags            error     target azure: more than 50 required tags on one type
gcp-key-length                 error     target gcp: label key not 1-63 characters
gcp-key-format                 error     target gcp: key not lowercase letters, digits, ``_``,
                                         ``-`` starting with a letter
gcp-value-length               error     target gcp: allowed value over 63 characters
gcp-value-format               error     target gcp: value not lowercase letters, digits, ``_``,
                                         ``-``
gcp-too-many-labels            error     target gcp: more than 64 required labels on one type
exemption-expired              warning   ``as_of`` is after the exemption's ``expires``: it waives
                                         nothing any more (renew or remove it)
exemption-expiring             warning   the exemption ends within 14 days of ``as_of``
exemption-unknown-tag          error     ``tags`` names a tag no rule defines (top level or
                                         override), so that waiver does nothing
alias-unknown-tag              error     a ``tag_aliases`` canonical is not a tag the policy defines
alias-conflict                 error     an alias is itself a policy tag name (in any case) or is
                                         listed under two canonical tags
override-removes-own-rule      error     an override's rule names a tag its own ``remove_tags``
                                         drops (the rule replaces the tag anyway: one is a mistake)
=============================  ========  ==========================================================

The two expiry checks need ``as_of`` (the linter has no clock: callers pass today); without it they
are skipped. Rules inside ``overrides`` get the same per-rule checks as top-level rules, and
``resource_types`` of exemptions the same registry check as ``applies_to``.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from policies.matching import WILDCARD, WildcardPattern, closest_key, count_wildcards
from policies.models import Severity
from policies.policy import (
    AWS_MAX_KEY_LENGTH,
    AWS_MAX_TAGS,
    AWS_MAX_VALUE_LENGTH,
    RESERVED_PREFIX,
    SERVICE_WILDCARDS,
    Policy,
    TagRule,
    alias_problems,
    applies_to_type,
    listed_type,
)

with warnings.catch_warnings():
    # sre_parse is the only standard way to ask a pattern for its width; it warns on import since
    # Python 3.11 but stays available (and typed) while re keeps using it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_parse

__all__ = ["LintFinding", "Target", "lint_policy"]

Target = Literal["aws", "azure", "gcp"]

# Azure Resource Manager limits: tag names up to 512 characters, values up to 256, 50 tags per
# resource, and these characters are not accepted in tag names.
AZURE_MAX_KEY_LENGTH = 512
AZURE_MAX_VALUE_LENGTH = 256
AZURE_MAX_TAGS = 50
AZURE_FORBIDDEN_KEY_CHARS = frozenset("<>%&\\?/")

# GCP labels (REFERENCE "Azure and GCP facts").
GCP_MAX_KEY_LENGTH = 63
GCP_MAX_VALUE_LENGTH = 63
GCP_MAX_LABELS = 64

# Mirrors policies.engine._BAD_CHARS (the characters allow_special_characters=false rejects); a unit
# test keeps the two identical so lint and engine never disagree.
_BAD_CHARS = re.compile(r"[^\w .:/=+\-@\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_ALLOWED_CHARS_TEXT = "letters, digits, spaces and _ . : / = + - @"

# Middles tried for a wildcard value against a regex: a regex cannot be intersected with a
# wildcard pattern cheaply, but real formats accept at least one of these ordinary fillers.
_PROBE_FILLERS = ("a", "A", "0", "x", "-", "_", ".", " ", "a1", "abc", "example", "test", "prod")
_PROBE_REPEAT_LIMIT = 64

# An exemption this close to its end date is worth a reminder: two weeks leaves time to renew it
# (with a new approval) or to fix the resources before they start failing scans.
EXPIRY_WARNING_DAYS = 14


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One lint result: where (JSON path), how bad, a stable ``code`` and a message naming the fix."""

    location: str
    severity: Severity
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.location}: {self.message} [{self.code}]"


def lint_policy(
    policy: Policy,
    *,
    known_resource_types: Collection[str] | None = None,
    target: Target | None = None,
    as_of: date | None = None,
) -> list[LintFinding]:
    """Every lint finding of ``policy``, in policy order (rules first, then cross-rule checks).

    ``known_resource_types`` (the scanner's registry types) turns on the ``applies_to`` existence
    check; ``target`` adds the limits of that cloud (``aws``, ``azure`` or ``gcp``); ``as_of`` (the
    caller's today) turns on the exemption expiry checks.
    """
    if isinstance(as_of, datetime):
        as_of = as_of.date()
    return list(_Linter(policy, known_resource_types, target, as_of).run())


# --- helpers -------------------------------------------------------------------------------------


def _regex_width(pattern: str) -> tuple[int, int] | None:
    """(shortest, longest) length a regex can match, or ``None`` when it cannot be analysed."""
    try:
        low, high = sre_parse.parse(pattern).getwidth()
    except (re.error, RecursionError, OverflowError, ValueError, TypeError):
        return None
    return int(low), int(high)


def _wildcard_parts(value: str) -> tuple[str, str] | None:
    """``(prefix, suffix)`` of a one-``*`` value, ``None`` for a literal."""
    if count_wildcards(value) != 1:
        return None
    prefix, _, suffix = value.partition(WILDCARD)
    return prefix, suffix


def _literal_text(value: str) -> str:
    """The characters a value pins down (a wildcard's prefix and suffix; a literal itself)."""
    return value.replace(WILDCARD, "")


def _wildcard_can_match(regex: re.Pattern[str], prefix: str, suffix: str, min_width: int) -> bool:
    """Heuristic: does some ``prefix + filler + suffix`` pass ``regex``? (probes, not a proof)

    Fillers are ordinary strings, runs of one character up to the regex's minimum length, and
    every piece of a sample string the regex itself accepts (so ``*-0042`` finds ``PRJ`` for
    ``PRJ-[0-9]{4}``).
    """
    need = max(0, min_width - len(prefix) - len(suffix))
    fillers: set[str] = {"", *_PROBE_FILLERS}
    for char in ("a", "A", "0", "x"):
        fillers.update(char * n for n in range(2, min(max(need, 4), _PROBE_REPEAT_LIMIT) + 1))
    sample = _sample(regex)
    if sample is not None:
        fillers.update(sample[i:j] for i in range(len(sample)) for j in range(i + 1, len(sample) + 1))
    return any(regex.fullmatch(prefix + mid + suffix) is not None for mid in fillers)


def _sample(regex: re.Pattern[str]) -> str | None:
    """One short string ``regex`` accepts, built from its parse tree, or ``None``."""
    try:
        tree = sre_parse.parse(regex.pattern, regex.flags)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError):
        return None
    out: list[str] = []

    def char_of(items: Any) -> str:
        for op, arg in items:
            kind = str(op)
            if kind == "LITERAL":
                return chr(arg)
            if kind == "RANGE":
                return chr(arg[0])
            if kind == "CATEGORY":
                name = str(arg)
                if "NOT" not in name and "DIGIT" in name:
                    return "0"
                if "NOT" not in name and "SPACE" in name:
                    return " "
                return "a"
        return "a"

    def walk(items: Any, depth: int) -> None:
        if depth > 50 or len(out) > _PROBE_REPEAT_LIMIT:
            return
        for op, arg in items:
            kind = str(op)
            if kind == "LITERAL":
                out.append(chr(arg))
            elif kind == "NOT_LITERAL":
                out.append("b" if chr(arg) == "a" else "a")
            elif kind == "ANY":
                out.append("a")
            elif kind == "IN":
                out.append(char_of(arg))
            elif kind in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, _, sub = arg
                for _ in range(min(int(low), _PROBE_REPEAT_LIMIT)):
                    walk(sub, depth + 1)
            elif kind in ("SUBPATTERN", "ATOMIC_GROUP"):
                walk(arg[-1], depth + 1)
            elif kind == "BRANCH":
                walk(arg[1][0], depth + 1)
            # Anchors, lookarounds and back references add no characters to a sample.

    walk(tree, 0)
    sample = "".join(out)
    return sample if regex.fullmatch(sample) is not None else None


def _gcp_char_ok(ch: str) -> bool:
    # GCP accepts international characters; what it refuses is upper case and punctuation.
    return ch in "_-" or (ch.isalnum() and not ch.isupper())


def _chars(chars: Iterable[str]) -> str:
    """Offending characters for a message: ``'C', 'D'``."""
    return ", ".join(repr(ch) for ch in chars)


def _bad_gcp_chars(text: str) -> list[str]:
    return sorted({ch for ch in text if not _gcp_char_ok(ch)})


# --- the linter ----------------------------------------------------------------------------------


class _Linter:
    def __init__(self, policy: Policy, known: Collection[str] | None, target: Target | None,
                 as_of: date | None = None) -> None:
        self.policy = policy
        self.as_of = as_of
        self.naming = policy.tag_naming_rules
        self.target = target
        self.known: dict[str, str] | None = None
        if known is not None:
            self.known = {t.casefold(): t for t in known}
        # The value length a value may really have: the policy's own limit or the cloud's, if lower.
        limit = self.naming.max_value_length
        if target == "aws":
            limit = min(limit, AWS_MAX_VALUE_LENGTH)
        elif target == "azure":
            limit = min(limit, AZURE_MAX_VALUE_LENGTH)
        elif target == "gcp":
            limit = min(limit, GCP_MAX_VALUE_LENGTH)
        self.value_limit = limit

    def run(self) -> Iterator[LintFinding]:
        for section, rules in (("required_tags", self.policy.required_tags),
                               ("optional_tags", self.policy.optional_tags)):
            for index, rule in enumerate(rules):
                yield from self._rule(f"{section}[{index}]", rule, required=section == "required_tags")
        yield from self._names()
        yield from self._prohibited()
        yield from self._tag_counts()
        yield from self._exemptions()
        yield from self._aliases()
        yield from self._overrides()

    # -- per rule ----------------------------------------------------------------------------------

    def _rule(self, path: str, rule: TagRule, *, required: bool) -> Iterator[LintFinding]:
        yield from self._name(f"{path}.name", rule.name)
        regex: re.Pattern[str] | None = None
        width: tuple[int, int] | None = None
        if rule.validation_regex is not None:
            regex, width, found = self._regex(f"{path}.validation_regex", rule.validation_regex)
            yield from found
        if rule.allowed_values is not None:
            yield from self._allowed(f"{path}.allowed_values", rule, regex, width)
        if self.known is not None:
            for field in ("applies_to", "required_for", "error_for"):
                for j, rtype in enumerate(getattr(rule, field, None) or ()):
                    yield from self._resource_type(f"{path}.{field}[{j}]", rtype)

    def _name(self, path: str, name: str) -> Iterator[LintFinding]:
        max_key = self.naming.max_key_length
        if len(name) > max_key:
            yield _error(path, "key-too-long",
                         f"tag name {name!r} is {len(name)} characters long but tag_naming_rules.max_key_length "
                         f"is {max_key}, so every resource carrying it breaks a naming rule; shorten the name "
                         "or raise max_key_length")
        if not self.naming.allow_special_characters and _BAD_CHARS.search(name):
            bad = sorted(set(_BAD_CHARS.findall(name)))
            yield _error(path, "disallowed-characters",
                         f"tag name {name!r} contains {_chars(bad)}, which allow_special_characters: false rejects; "
                         f"use only {_ALLOWED_CHARS_TEXT}, or allow special characters")
        if self.target == "aws":
            if len(name) > AWS_MAX_KEY_LENGTH:
                yield _error(path, "aws-key-too-long",
                             f"AWS tag keys are at most {AWS_MAX_KEY_LENGTH} characters; {name!r} has "
                             f"{len(name)}: shorten it")
            if name.casefold().startswith(RESERVED_PREFIX):
                yield _error(path, "aws-reserved-prefix",
                             f"AWS reserves keys starting with 'aws:' for its own tags; rename {name!r}")
        elif self.target == "azure":
            if len(name) > AZURE_MAX_KEY_LENGTH:
                yield _error(path, "azure-key-too-long",
                             f"Azure tag names are at most {AZURE_MAX_KEY_LENGTH} characters; {name!r} has "
                             f"{len(name)}: shorten it")
            bad_azure = sorted(AZURE_FORBIDDEN_KEY_CHARS.intersection(name))
            if bad_azure:
                yield _error(path, "azure-key-characters",
                             f"Azure tag names cannot contain {' '.join(bad_azure)}; rename {name!r} without them")
        elif self.target == "gcp":
            if not 1 <= len(name) <= GCP_MAX_KEY_LENGTH:
                yield _error(path, "gcp-key-length",
                             f"GCP label keys are 1-{GCP_MAX_KEY_LENGTH} characters; {name!r} has {len(name)}: "
                             "shorten it")
            bad_gcp = _bad_gcp_chars(name)
            starts_ok = bool(name) and name[0].isalpha() and not name[0].isupper()
            if bad_gcp or not starts_ok:
                why = f"contains {_chars(bad_gcp)}" if bad_gcp else "does not start with a lowercase letter"
                suggestion = re.sub(r"[^a-z0-9_-]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower())
                if not suggestion[:1].isalpha():
                    suggestion = "k" + suggestion
                yield _error(path, "gcp-key-format",
                             f"GCP label key {name!r} {why}; keys hold lowercase letters, digits, '_' and '-' and "
                             f"start with a letter: rename it, e.g. to {suggestion[:GCP_MAX_KEY_LENGTH]!r}")

    def _regex(self, path: str, pattern: str
               ) -> tuple[re.Pattern[str] | None, tuple[int, int] | None, list[LintFinding]]:
        found: list[LintFinding] = []
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            found.append(_error(path, "invalid-regex", f"the regular expression does not compile ({exc}); fix it"))
            return None, None, found
        width = _regex_width(pattern)
        if width is not None:
            low, high = width
            if high == 0:
                found.append(_error(path, "regex-unsatisfiable",
                                    f"{pattern!r} matches only the empty value, which counts as a missing tag; "
                                    "fix the pattern (it must match the whole value)"))
            elif low > self.value_limit:
                found.append(_error(path, "regex-unsatisfiable",
                                    f"{pattern!r} needs at least {low} characters but values may have at most "
                                    f"{self.value_limit}{self._limit_origin()}; shorten what the pattern requires"))
        return regex, width, found

    def _limit_origin(self) -> str:
        if self.value_limit < self.naming.max_value_length:
            return f" on {self.target}"
        return " (tag_naming_rules.max_value_length)"

    def _allowed(self, path: str, rule: TagRule, regex: re.Pattern[str] | None,
                 width: tuple[int, int] | None) -> Iterator[LintFinding]:
        values = rule.allowed_values or []
        if not values:
            yield _error(path, "empty-allowed-values",
                         "an empty allowed_values list allows nothing; list the allowed values, or remove the key "
                         "(or use null) to allow any value")
            return
        case_sensitive = self.naming.case_sensitivity
        seen: dict[str, int] = {}
        wildcards = [(j, WildcardPattern(v, case_sensitive=case_sensitive)) for j, v in enumerate(values)
                     if count_wildcards(v) == 1]
        usable = 0
        for j, value in enumerate(values):
            vpath = f"{path}[{j}]"
            ok = True
            folded = value if case_sensitive else value.casefold()
            if folded in seen:
                how = "" if value == values[seen[folded]] else " (ignoring case, as case_sensitivity is false)"
                yield _warning(vpath, "duplicate-allowed-value",
                               f"{value!r} repeats {path}[{seen[folded]}]{how}; remove the duplicate")
            else:
                seen[folded] = j
                covering = next((values[k] for k, p in wildcards if k != j and p.matches(value)), None)
                if covering is not None:
                    yield _warning(vpath, "redundant-allowed-value",
                                   f"{value!r} is already allowed by the wildcard {covering!r}; remove it or narrow "
                                   "the wildcard")
            if not value.strip():
                ok = False
                yield _warning(vpath, "blank-allowed-value",
                               "an empty or blank value counts as a missing tag, so allowing it changes nothing; "
                               "remove it")
            literal = _literal_text(value)
            if len(literal) > self.naming.max_value_length:
                ok = False
                yield _error(vpath, "allowed-value-too-long",
                             f"{value!r} has {len(literal)} fixed characters but tag_naming_rules.max_value_length is "
                             f"{self.naming.max_value_length}, so it can never be set; shorten the value or raise "
                             "the limit")
            if not self.naming.allow_special_characters and _BAD_CHARS.search(literal):
                ok = False
                bad = sorted(set(_BAD_CHARS.findall(literal)))
                yield _error(vpath, "disallowed-characters",
                             f"{value!r} contains {_chars(bad)}, which allow_special_characters: false "
                             f"rejects; use only {_ALLOWED_CHARS_TEXT}, or allow special characters")
            for finding in self._target_value(vpath, value, literal):
                ok = False
                yield finding
            if regex is not None and value != WILDCARD and value.strip():
                parts = _wildcard_parts(value)
                if parts is None:
                    if regex.fullmatch(value) is None:
                        ok = False
                        yield _error(vpath, "allowed-value-fails-regex",
                                     f"{value!r} does not match the tag's own validation_regex "
                                     f"{rule.validation_regex!r}, so a resource using it is always reported; fix "
                                     "the value or the pattern")
                elif not _wildcard_can_match(regex, *parts, width[0] if width else 0):
                    yield _warning(vpath, "wildcard-value-fails-regex",
                                   f"no sample value of the form {value!r} matches validation_regex "
                                   f"{rule.validation_regex!r} (wildcards are probed, not proved); check that the "
                                   "pattern and the wildcard agree")
            if ok:
                usable += 1
        if usable == 0:
            yield _error(path, "rule-unsatisfiable",
                         f"no allowed value of {rule.name!r} passes the checks reported above, so the rule can never "
                         "be satisfied; fix those values")

    def _target_value(self, path: str, value: str, literal: str) -> Iterator[LintFinding]:
        if self.target == "aws" and len(literal) > AWS_MAX_VALUE_LENGTH:
            yield _error(path, "aws-value-too-long",
                         f"AWS tag values are at most {AWS_MAX_VALUE_LENGTH} characters; {value!r} needs "
                         f"{len(literal)}: shorten it")
        elif self.target == "azure" and len(literal) > AZURE_MAX_VALUE_LENGTH:
            yield _error(path, "azure-value-too-long",
                         f"Azure tag values are at most {AZURE_MAX_VALUE_LENGTH} characters; {value!r} needs "
                         f"{len(literal)}: shorten it")
        elif self.target == "gcp":
            if len(literal) > GCP_MAX_VALUE_LENGTH:
                yield _error(path, "gcp-value-length",
                             f"GCP label values are at most {GCP_MAX_VALUE_LENGTH} characters; {value!r} needs "
                             f"{len(literal)}: shorten it")
            bad = _bad_gcp_chars(literal)
            if bad:
                yield _error(path, "gcp-value-format",
                             f"GCP label values hold only lowercase letters, digits, '_' and '-'; {value!r} "
                             f"contains {_chars(bad)}: use e.g. {re.sub(r'[^a-z0-9_*-]+', '-', value.lower())!r}")

    def _resource_type(self, path: str, rtype: str) -> Iterator[LintFinding]:
        assert self.known is not None
        service, _, resource = rtype.partition(":")
        if resource in SERVICE_WILDCARDS:
            services = {t.partition(":")[0] for t in self.known}
            if service.casefold() in services:
                return
            # Service prefixes are short, where closest_key's typo ratio is too strict.
            close = difflib.get_close_matches(service.casefold(), sorted(services), n=1, cutoff=0.6)
            guess = close[0] if close else None
            hint = f"did you mean '{guess}:{resource}'?" if guess else "remove it"
            yield _error(path, "unknown-resource-type",
                         f"no known resource type belongs to service {service!r}, so this entry covers nothing; "
                         f"{hint}")
            return
        if rtype.casefold() in self.known:
            return
        guess = closest_key(rtype, sorted(self.known.values()))
        hint = f"did you mean {guess!r}?" if guess else "remove it or use a type the scanner collects"
        yield _error(path, "unknown-resource-type",
                     f"resource type {rtype!r} is not one the scanner knows, so this entry never applies; {hint}")

    # -- across rules ------------------------------------------------------------------------------

    def _all_names(self) -> list[tuple[str, str]]:
        return ([(f"required_tags[{i}].name", r.name) for i, r in enumerate(self.policy.required_tags)]
                + [(f"optional_tags[{i}].name", r.name) for i, r in enumerate(self.policy.optional_tags)])

    def _names(self) -> Iterator[LintFinding]:
        first: dict[str, tuple[str, str]] = {}
        for path, name in self._all_names():
            folded = name.casefold()
            if folded not in first:
                first[folded] = (path, name)
                continue
            other_path, other = first[folded]
            if other == name:
                yield _error(path, "duplicate-tag",
                             f"tag {name!r} is already defined at {other_path}; merge the two rules")
                continue
            why = {
                "azure": "Azure tag names are case-insensitive, so both rules name the same tag",
                "gcp": "GCP label keys are lowercase, so both rules would name the same label",
            }.get(self.target or "", "the engine reports each spelling as a miscased copy of the other, so no "
                                     "resource can satisfy both")
            yield _error(path, "key-case-collision",
                         f"{name!r} differs only by case from {other!r} at {other_path}; {why}: keep one spelling")

    def _prohibited(self) -> Iterator[LintFinding]:
        names = self._all_names()
        first: dict[str, int] = {}
        for i, pattern in enumerate(self.policy.prohibited_tags):
            path = f"prohibited_tags[{i}]"
            folded = pattern.casefold()
            if folded in first:
                yield _warning(path, "duplicate-prohibited-pattern",
                               f"{pattern!r} repeats prohibited_tags[{first[folded]}] (patterns match ignoring "
                               "case); remove it")
                continue
            first[folded] = i
            if count_wildcards(pattern) > 1:
                continue
            matcher = WildcardPattern(pattern, case_sensitive=False)
            for name_path, name in names:
                if matcher.matches(name):
                    kind = "required" if name_path.startswith("required") else "defined"
                    yield _error(path, "prohibited-defined-tag",
                                 f"{pattern!r} prohibits the {kind} tag {name!r} ({name_path}), so the rule can never "
                                 "be satisfied; narrow the pattern or drop the tag")

    def _tag_counts(self) -> Iterator[LintFinding]:
        count, example = self._max_required_per_type(self.policy.required_tags)
        where = f" on {example}" if example else ""
        max_tags = self.policy.max_tags
        if max_tags is not None and count > max_tags:
            yield _error("required_tags", "too-many-required-tags",
                         f"{count} required tags apply{where} but max_tags is {max_tags}; raise max_tags or "
                         "require fewer tags")
            return
        limits: dict[str, tuple[int, str, str]] = {
            "aws": (AWS_MAX_TAGS, "aws-too-many-tags", "AWS allows {n} user tags per resource"),
            "azure": (AZURE_MAX_TAGS, "azure-too-many-tags", "Azure allows {n} tags per resource"),
            "gcp": (GCP_MAX_LABELS, "gcp-too-many-labels", "GCP allows {n} labels per resource"),
        }
        if self.target is not None and self.target in limits:
            limit, code, text = limits[self.target]
            if count > limit:
                yield _error("required_tags", code,
                             f"{count} required tags apply{where} but {text.format(n=limit)}; require fewer tags")

    @staticmethod
    def _max_required_per_type(rules: Sequence[TagRule]) -> tuple[int, str | None]:
        """The most required tags one resource type must carry, and a type where that happens."""

        def required_on(rule: TagRule, rtype: str) -> bool:
            # As the engine decides: applies there and, with required_for, listed in it.
            return applies_to_type(rule.applies_to, rtype) and (
                rule.required_for is None or listed_type(rule.required_for, rtype))

        listed = {t for r in rules for t in (*r.applies_to, *(r.required_for or ()))}
        # A type no rule names stands for every unlisted type; "service:\0" for the rest of a service.
        probes: list[tuple[str, str | None]] = [("\0any:\0any", None)]
        probes += [(t, t) for t in sorted(listed) if t.partition(":")[2] not in SERVICE_WILDCARDS]
        probes += [(f"{s}:\0any", f"{s}:*") for s in sorted({t.partition(":")[0] for t in listed})]
        best, best_type = 0, None
        for probe, shown in probes:
            n = sum(1 for r in rules if required_on(r, probe))
            if n > best:
                best, best_type = n, shown
        return best, best_type


    # -- exemptions, aliases, overrides ------------------------------------------------------------

    def _defined_names(self) -> list[str]:
        """Every tag name a rule defines, top level first, then each override's rules."""
        names = [name for _, name in self._all_names()]
        for override in self.policy.overrides:
            names += [r.name for r in (*override.required_tags, *override.optional_tags)]
        return names

    def _exemptions(self) -> Iterator[LintFinding]:
        names = self._defined_names()
        for i, exemption in enumerate(self.policy.exemptions):
            path = f"exemptions[{i}]"
            if self.as_of is not None:
                left = (exemption.expires - self.as_of).days
                if left < 0:
                    yield _warning(f"{path}.expires", "exemption-expired",
                                   f"exemption {exemption.id!r} expired on {exemption.expires.isoformat()} and waives "
                                   "nothing any more; renew it with a later expires date (and a fresh approval) "
                                   "or remove it")
                elif left <= EXPIRY_WARNING_DAYS:
                    when = "today" if left == 0 else f"in {left} day{'s' if left != 1 else ''}"
                    yield _warning(f"{path}.expires", "exemption-expiring",
                                   f"exemption {exemption.id!r} ends {when} ({exemption.expires.isoformat()}); "
                                   "renew it or fix the resources it covers before they start failing scans")
            for j, tag in enumerate(exemption.tags):
                if tag in names:
                    continue
                guess = closest_key(tag, names)
                hint = f"did you mean {guess!r}?" if guess else "name a tag from required_tags or optional_tags"
                yield _error(f"{path}.tags[{j}]", "exemption-unknown-tag",
                             f"{tag!r} is not a tag the policy defines, so this waiver does nothing (names are exact); "
                             f"{hint}")
            if self.known is not None:
                for j, rtype in enumerate(exemption.resource_types):
                    yield from self._resource_type(f"{path}.resource_types[{j}]", rtype)

    def _aliases(self) -> Iterator[LintFinding]:
        for path, code, message in alias_problems(self._defined_names(), self.policy.tag_aliases):
            canonical = str(path[1])
            location = f"tag_aliases.{canonical}" + (f"[{path[2]}]" if len(path) > 2 else "")
            yield _error(location, code, message)

    def _overrides(self) -> Iterator[LintFinding]:
        for i, override in enumerate(self.policy.overrides):
            removed = {name: k for k, name in enumerate(override.remove_tags)}
            for section in ("required_tags", "optional_tags"):
                for j, rule in enumerate(getattr(override, section)):
                    path = f"overrides[{i}].{section}[{j}]"
                    yield from self._rule(path, rule, required=section == "required_tags")
                    if rule.name in removed:
                        kind = "requires" if section == "required_tags" else "defines"
                        yield _error(f"{path}.name", "override-removes-own-rule",
                                     f"override {override.id!r} {kind} {rule.name!r} and also removes it "
                                     f"(remove_tags[{removed[rule.name]}]); a rule with the same name already "
                                     "replaces the base rule, so drop it from remove_tags, or drop this rule if the "
                                     "tag should go")


def _error(location: str, code: str, message: str) -> LintFinding:
    return LintFinding(location, Severity.ERROR, code, message)


def _warning(location: str, code: str, message: str) -> LintFinding:
    return LintFinding(location, Severity.WARNING, code, message)
