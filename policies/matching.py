"""Value matching as AWS tag policies define it, plus "did you mean" helpers.

Wildcards follow AWS Organizations tag policies: an allowed value may hold ONE ``*`` anywhere
(``prod*``, ``*@example.com``, ``300*``, ``a*z``) and ``*`` alone accepts any value, the empty one
included. There is no escape for a literal ``*``. Regular expressions always have to match the
whole value (``fullmatch``), so ``[a-z]+`` and ``^[a-z]+$`` mean the same thing.

Suggestions are heuristics meant for people and assistants: they never invent a value that is not in
the allowed list, never offer a wildcard as if it were a literal, and return ``None`` rather than a
far-fetched guess.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

WILDCARD = "*"


def count_wildcards(pattern: str) -> int:
    """Number of ``*`` in ``pattern``; AWS accepts at most one."""
    return pattern.count(WILDCARD)


class WildcardPattern:
    """One allowed value or key pattern with at most one ``*``, split for fast prefix/suffix tests.

    Matching never uses a regular expression: ``prefix*suffix`` is a length check plus
    ``startswith``/``endswith``, which is several times faster and cannot backtrack.
    """

    __slots__ = ("case_sensitive", "is_wildcard", "matches_anything", "pattern", "prefix", "suffix")

    def __init__(self, pattern: str, *, case_sensitive: bool = True) -> None:
        stars = count_wildcards(pattern)
        if stars > 1:
            raise ValueError(f"pattern {pattern!r} holds {stars} '*' wildcards; at most one is allowed")
        self.pattern = pattern
        self.case_sensitive = case_sensitive
        folded = pattern if case_sensitive else pattern.casefold()
        self.is_wildcard = stars == 1
        self.matches_anything = pattern == WILDCARD
        if self.is_wildcard:
            self.prefix, _, self.suffix = folded.partition(WILDCARD)
        else:
            self.prefix, self.suffix = folded, ""

    def matches(self, value: str) -> bool:
        """Whether ``value`` matches the whole pattern."""
        if not self.case_sensitive:
            value = value.casefold()
        if not self.is_wildcard:
            return value == self.prefix
        prefix, suffix = self.prefix, self.suffix
        # The length test stops "ab*ba" from matching "aba", where prefix and suffix would overlap.
        return len(value) >= len(prefix) + len(suffix) and value.startswith(prefix) and value.endswith(suffix)

    def __repr__(self) -> str:
        return f"WildcardPattern({self.pattern!r}, case_sensitive={self.case_sensitive})"


def wildcard_match(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """Whether ``value`` matches ``pattern`` (one optional ``*`` wildcard, whole value)."""
    return WildcardPattern(pattern, case_sensitive=case_sensitive).matches(value)


class ValueMatcher:
    """An allowed-values list compiled once: literals in a frozenset, wildcards as prefix/suffix pairs."""

    __slots__ = ("any_value", "case_sensitive", "exact", "patterns")

    def __init__(self, allowed: Iterable[str], *, case_sensitive: bool = True) -> None:
        self.case_sensitive = case_sensitive
        exact: set[str] = set()
        patterns: list[WildcardPattern] = []
        any_value = False
        for value in allowed:
            if value == WILDCARD:
                any_value = True
            elif WILDCARD in value:
                patterns.append(WildcardPattern(value, case_sensitive=case_sensitive))
            else:
                exact.add(value if case_sensitive else value.casefold())
        self.any_value = any_value
        self.exact = frozenset(exact)
        self.patterns = tuple(patterns)

    def matches(self, value: str) -> bool:
        """Whether ``value`` is one of the allowed values (wildcards honoured)."""
        if self.any_value:
            return True
        probe = value if self.case_sensitive else value.casefold()
        if probe in self.exact:
            return True
        for p in self.patterns:
            prefix, suffix = p.prefix, p.suffix
            if (len(probe) >= len(prefix) + len(suffix) and probe.startswith(prefix)
                    and probe.endswith(suffix)):
                return True
        return False


class GlobPattern:
    """A whole-text pattern where each ``*`` matches any run of characters (none included).

    Used for exemption ARN patterns (``arn:aws:ec2:*:123456789012:instance/*``), where several
    wildcards are natural; unlike :func:`fnmatch.fnmatch` only ``*`` is special (``?`` and ``[`` are
    literal, as they can occur in resource IDs) and matching is case-sensitive, as ARNs are.
    Matching is a prefix/suffix test plus an in-order search of the pieces between wildcards: no
    regular expression, no backtracking.
    """

    __slots__ = ("middle", "min_length", "pattern", "prefix", "suffix", "wildcards")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        pieces = pattern.split(WILDCARD)
        self.wildcards = len(pieces) - 1
        self.prefix = pieces[0]
        self.suffix = pieces[-1] if self.wildcards else ""
        self.middle = tuple(p for p in pieces[1:-1] if p)
        self.min_length = len(pattern) - self.wildcards

    def matches(self, text: str) -> bool:
        """Whether ``text`` as a whole matches the pattern."""
        if not self.wildcards:
            return text == self.prefix
        if len(text) < self.min_length or not text.startswith(self.prefix) or not text.endswith(self.suffix):
            return False
        # Taking each middle piece at its first occurrence leaves the most room for the rest, so a
        # greedy left-to-right scan is exact for '*'-only patterns.
        at, end = len(self.prefix), len(text) - len(self.suffix)
        for piece in self.middle:
            found = text.find(piece, at, end)
            if found < 0:
                return False
            at = found + len(piece)
        return True

    def __repr__(self) -> str:
        return f"GlobPattern({self.pattern!r})"


def compile_format(pattern: str) -> re.Pattern[str]:
    """Compile a ``validation_regex``; use ``.fullmatch`` on the result (raises ``re.error``)."""
    return re.compile(pattern)


def format_matches(regex: re.Pattern[str], value: str) -> bool:
    """Whether ``value`` as a whole matches ``regex`` (a user-written ``^...$`` changes nothing)."""
    return regex.fullmatch(value) is not None


# --- "did you mean" -------------------------------------------------------------------------------

# Below this similarity ratio two spellings are treated as unrelated. 0.8 admits one or two typos in
# a word of ordinary length ("Enginering", "Finanse") but not different words ("Sales"/"Data").
_TYPO_RATIO = 0.8
# Candidates that only share a loose resemblance are still offered when nothing better exists.
_WEAK_RATIO = 0.7


def _is_abbreviation(short: str, long: str) -> bool:
    """``short`` reads as an abbreviation of ``long``: same first letter, letters in order ("prd")."""
    if len(short) < 3 or len(short) >= len(long) or short[0] != long[0]:
        return False
    it = iter(long)
    return all(ch in it for ch in short)


def _rank(probe: str, candidate: str) -> tuple[int, float] | None:
    """How close two already-normalised spellings are: (tier, ratio), lower tier is better."""
    ratio = difflib.SequenceMatcher(None, probe, candidate).ratio()
    if probe == candidate:
        return (0, 1.0)
    if ((len(probe) >= 2 and candidate.startswith(probe))
            or (len(candidate) >= 3 and probe.startswith(candidate))):
        return (1, ratio)
    if ratio >= _TYPO_RATIO:
        return (2, ratio)
    if _is_abbreviation(probe, candidate) or _is_abbreviation(candidate, probe):
        return (3, ratio)
    if ratio >= _WEAK_RATIO:
        return (4, ratio)
    return None


def _closest(probe: str, candidates: Sequence[str], normalise: dict[str, str]) -> str | None:
    best: str | None = None
    best_key: tuple[int, float] | None = None
    for cand in candidates:
        rank = _rank(probe, normalise[cand])
        if rank is None:
            continue
        # Lower tier wins, then a higher ratio; on a full tie the first listed candidate stays.
        key = (rank[0], -rank[1])
        if best_key is None or key < best_key:
            best, best_key = cand, key
    return best


def closest_value(value: str, allowed: Iterable[str]) -> str | None:
    """The allowed literal a person most likely meant by ``value``, or ``None``.

    Finds case differences (``Production`` -> ``production``), prefixes (``prod`` -> ``production``),
    typos (``Enginering`` -> ``Engineering``) and abbreviations (``stg`` -> ``staging``). Wildcard
    values are skipped: they are patterns, not values one could set.
    """
    literals = [a for a in allowed if WILDCARD not in a and a != value]
    probe = value.strip().casefold()
    if not probe or not literals:
        return None
    return _closest(probe, literals, {a: a.casefold() for a in literals})


_KEY_SEPARATORS = re.compile(r"[\s_\-.:/]+")


def _normalise_key(key: str) -> str:
    return _KEY_SEPARATORS.sub("", key).casefold()


def closest_key(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate key most likely meant by ``key`` (or vice versa), or ``None``.

    Separators and case are ignored first, so ``cost_center``, ``Cost-Center`` and ``COSTCENTER`` all
    find ``CostCenter``; then prefixes (``Env`` -> ``Environment``), typos and abbreviations count.
    """
    cands = [c for c in candidates if c != key]
    probe = _normalise_key(key)
    if not probe or not cands:
        return None
    normalised = {c: _normalise_key(c) for c in cands}
    usable = [c for c in cands if normalised[c]]
    return _closest(probe, usable, normalised)


def suggest_format_fix(value: str, regex: re.Pattern[str]) -> str | None:
    """A mechanical rewrite of ``value`` that satisfies ``regex`` (trimmed, re-cased, dashed), or ``None``.

    Only obvious fixes are tried, so the suggestion keeps the person's meaning: ``My App`` becomes
    ``my-app`` for ``[a-z][a-z0-9-]+``, ``prj-0042`` becomes ``PRJ-0042`` for ``PRJ-[0-9]{4}``.
    """
    stripped = value.strip()
    dashed = re.sub(r"[\s_]+", "-", stripped)
    underscored = re.sub(r"[\s-]+", "_", stripped)
    seen: set[str] = {value}
    for cand in (stripped, stripped.lower(), stripped.upper(), dashed.lower(), dashed, dashed.upper(),
                 underscored.lower(), underscored.upper()):
        if cand in seen:
            continue
        seen.add(cand)
        if regex.fullmatch(cand) is not None:
            return cand
    return None
