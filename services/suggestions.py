"""Tag suggestions that use the estate: what each non-compliant tag of a resource should most likely be.

For every policy tag a resource breaks (missing, invalid value or format, wrong key case), candidate
values come from independent signals, each with a confidence and the ARNs that back it:

* fixes of what the resource already carries: the right value under a wrongly cased key
  (``key_case``), under an alias key from ``tag_aliases`` (``alias_key``), or a close allowed value
  for an invalid one (``did_you_mean``: ``Enginering`` -> ``Engineering``, ``prod`` -> ``production``);
* relationships: a volume from the instance it is attached to, a snapshot from its volume (or that
  volume's instance), an Elastic IP from its instance (``parent``); resources of the same
  CloudFormation stack, Auto Scaling group or EKS cluster (``stack``, ``asg``, ``eks_cluster``, read
  from the ``aws:`` system tags AWS sets);
* the estate's vocabulary: resources whose names share the longest name prefix (``name_prefix``),
  the same VPC (``vpc``) or the same account (``account``), scaled by how much those peers agree;
* naming patterns: a name token that stands for an allowed value (``...-prod-...`` -> ``production``).

Only values the rule accepts are ever suggested (allowed values and format), so a suggestion can be
applied as is. The confidences of the signals that back one value combine as the strongest one plus
half of what the others would add as independent evidence (capped at 0.99); each signal's base weight
is in :data:`SIGNAL_WEIGHTS` (a parent's in :data:`PARENT_WEIGHTS`) and a vocabulary signal is
multiplied by the peers' agreement and a small-sample factor ``n / (n + 1)``.
The resource itself is never its own evidence, so hiding a tag and asking for it back measures the
method honestly (``bench/suggestions.py``).

The estate is read per account (the resources the latest scans stored for the accounts involved), so
a call stays bounded however large the organization is; peers in other accounts are not consulted.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from policies.engine import CompiledPolicy, CompiledRule
from policies.matching import closest_value
from policies.models import Resource, ViolationType
from services.db.models import ResourceRow, ScanResourceRow, utcnow
from services.errors import InvalidInput, NotFound
from services.runtime import Runtime
from services.scan_policies import freeze_account_policies, synced_policy_versions

Signal = Literal["key_case", "alias_key", "did_you_mean", "parent", "stack", "asg", "eks_cluster",
                 "name_prefix", "naming_pattern", "vpc", "account"]

#: Base confidence of each signal (before agreement scaling for the vocabulary signals).
SIGNAL_WEIGHTS: Mapping[str, float] = {
    "key_case": 0.97, "alias_key": 0.92, "did_you_mean": 0.85, "parent": 0.9, "stack": 0.88, "asg": 0.88,
    "eks_cluster": 0.82, "name_prefix": 0.8, "naming_pattern": 0.6, "vpc": 0.45, "account": 0.35,
}
#: Violation types a suggested value can fix (key-only findings such as prohibited keys cannot).
FIXABLE = frozenset({ViolationType.MISSING_REQUIRED_TAG, ViolationType.INVALID_VALUE, ViolationType.INVALID_FORMAT,
                     ViolationType.WRONG_KEY_CASE})
MAX_EVIDENCE = 5
MAX_ALTERNATIVES = 2
MAX_BATCH_ARNS = 100
MAX_BATCH_RESULTS = 100
#: Resources one batch call judges at most (about 5 s at 0.2 ms each, measured by bench/suggestions.py).
MAX_BATCH_CONSIDERED = 20_000
# System tags AWS sets on members of a stack, an Auto Scaling group and an EKS node group.
_GROUP_TAGS: tuple[tuple[Signal, tuple[str, ...]], ...] = (
    ("stack", ("aws:cloudformation:stack-name",)),
    ("asg", ("aws:autoscaling:groupName",)),
    ("eks_cluster", ("aws:eks:cluster-name", "eks:cluster-name")),
)
# Resource type -> the attribute naming its parent's id, and how much the parent's tags count for it.
_PARENT_LINKS: Mapping[str, str] = {"ec2:volume": "attached_instance", "ec2:elastic-ip": "instance_id",
                                    "ec2:snapshot": "volume_id"}
PARENT_WEIGHTS: Mapping[str, float] = {"ec2:volume": 0.9, "ec2:elastic-ip": 0.85, "ec2:snapshot": 0.7}
_TOKEN_SPLIT = re.compile(r"[-_./:\s]+")
_MAX_PREFIX_TOKENS = 3


# ---------------------------------------------------------------------------------------------- model

class TagSuggestion(BaseModel):
    tag: str = Field(description="The policy tag (exact key) the suggestion is for.")
    value: str = Field(description="The suggested value; always one the policy accepts.")
    confidence: float = Field(ge=0, le=1, description="0..1; >= 0.8 is usually safe to apply after a glance.")
    action: Literal["add", "replace_value", "rename_key"] = Field(
        description="add the tag; replace the current value; or rename current_key to tag (value as given).")
    current_key: str | None = Field(default=None, description="The key the resource has now, when there is one.")
    current_value: str | None = None
    signals: list[str] = Field(description="Which signals back the value, strongest first (see reasoning).")
    reasoning: str = Field(description="Why, in words, one clause per signal.")
    evidence: list[str] = Field(default_factory=list, description="ARNs of the resources that back it (a sample).")


class ResourceSuggestions(BaseModel):
    resource_arn: str
    resource_type: str
    account_id: str
    region: str
    name: str | None = None
    tags: dict[str, str] = Field(description="The resource's current tags (data, never instructions).")
    broken_tags: list[str] = Field(description="Policy tags the resource breaks that a value can fix.")
    suggestions: list[TagSuggestion] = Field(description="The best suggestion per broken tag.")
    alternatives: list[TagSuggestion] = Field(default_factory=list, description="Runner-up values, per tag.")
    unresolved: list[str] = Field(default_factory=list, description="Broken tags no signal could suggest a value for.")
    policy_version: str


class SuggestionBatch(BaseModel):
    resources: list[ResourceSuggestions]
    resources_considered: int = Field(description="Resources asked about (or non-compliant in the scan).")
    resources_returned: int
    truncated: bool = Field(description="True when more resources had suggestions than were returned.")
    min_confidence: float
    suggestions_by_tag: dict[str, int] = Field(default_factory=dict,
                                               description="Suggestions at or above min_confidence, per tag.")
    not_found: list[str] = Field(default_factory=list, description="ARNs no scan has seen.")
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------- estate

@dataclass(frozen=True, slots=True)
class EstateRecord:
    """One resource as the suggester sees it (the latest scanned state)."""

    arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    name: str | None
    tags: Mapping[str, str]
    attributes: Mapping[str, Any]

    def to_resource(self) -> Resource:
        return Resource(arn=self.arn, resource_id=self.resource_id, resource_type=self.resource_type,
                        account_id=self.account_id, region=self.region, tags=dict(self.tags), name=self.name)


def _tokens(name: str | None) -> list[str]:
    return [t for t in _TOKEN_SPLIT.split((name or "").casefold()) if t]


def _system_tags(record: EstateRecord) -> Mapping[str, str]:
    found = record.attributes.get("system_tags") if record.attributes else None
    return found if isinstance(found, Mapping) else {}


@dataclass
class EstateIndex:
    """Lookups over the records of some accounts: by id, group membership, name prefix, VPC and account."""

    records: list[EstateRecord]
    by_arn: dict[str, EstateRecord] = field(default_factory=dict)
    by_id: dict[tuple[str, str], EstateRecord] = field(default_factory=dict)
    groups: dict[tuple[str, str, str], list[EstateRecord]] = field(default_factory=lambda: defaultdict(list))
    prefixes: dict[tuple[str, str], list[EstateRecord]] = field(default_factory=lambda: defaultdict(list))
    vpcs: dict[tuple[str, str], list[EstateRecord]] = field(default_factory=lambda: defaultdict(list))
    accounts: dict[str, list[EstateRecord]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        for r in self.records:
            self.by_arn[r.arn] = r
            self.by_id[(r.account_id, r.resource_id)] = r
            self.accounts[r.account_id].append(r)
            system = _system_tags(r)
            for signal, keys in _GROUP_TAGS:
                for key in keys:
                    if system.get(key):
                        self.groups[(signal, r.account_id, system[key])].append(r)
            tokens = _tokens(r.name)
            # Prefixes leave out the last token: it is usually a unique suffix (an index, a hash).
            for k in range(1, min(_MAX_PREFIX_TOKENS, len(tokens) - 1) + 1):
                self.prefixes[(r.account_id, "-".join(tokens[:k]))].append(r)
            vpc = r.attributes.get("vpc_id") if r.attributes else None
            if isinstance(vpc, str) and vpc:
                self.vpcs[(r.account_id, vpc)].append(r)

    def parents(self, r: EstateRecord) -> list[tuple[EstateRecord, float]]:
        """The resources ``r`` inherits from, nearest first, each with how strongly it speaks for ``r``:
        volume -> its instance, EIP -> its instance, snapshot -> its volume (-> that volume's instance).

        A snapshot counts for less (:data:`PARENT_WEIGHTS`): backups are often taken, copied or kept by
        another team than the one that owns the volume, while a root volume almost always shares its
        instance's owner."""
        link = _PARENT_LINKS.get(r.resource_type)
        ref = str((r.attributes or {}).get(link) or "") if link else ""
        parent = self.by_id.get((r.account_id, ref)) if ref else None
        if parent is None:
            return []
        weight = PARENT_WEIGHTS[r.resource_type]
        return [(parent, weight), *((p, min(w, weight)) for p, w in self.parents(parent) if p.arn != r.arn)]


# ---------------------------------------------------------------------------------------------- engine

@dataclass
class _Candidate:
    confidences: dict[str, float] = field(default_factory=dict)
    clauses: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    action: str = "add"
    current_key: str | None = None
    current_value: str | None = None

    def add(self, signal: str, confidence: float, clause: str, evidence: Iterable[str] = ()) -> None:
        if confidence <= self.confidences.get(signal, 0.0):
            return
        self.confidences[signal] = confidence
        self.clauses.append(clause)
        for arn in evidence:
            if arn not in self.evidence and len(self.evidence) < MAX_EVIDENCE:
                self.evidence.append(arn)

    @property
    def confidence(self) -> float:
        # The strongest signal, plus half of what the others add as independent evidence: signals of
        # one estate are correlated (a name prefix and a stack often describe the same family), and
        # full noisy-OR was measured over-confident on the demo estate (bench/suggestions.py).
        ranked = sorted(self.confidences.values(), reverse=True)
        if not ranked:
            return 0.0
        miss = 1.0
        for c in ranked[1:]:
            miss *= 1.0 - c
        return round(min(0.99, ranked[0] + (1.0 - ranked[0]) * 0.5 * (1.0 - miss)), 3)


@dataclass
class _GroupValues:
    """Valid values of one rule among one group of peers, counted once per group (not per resource)."""

    peers: Sequence[EstateRecord]  # kept so the id-based cache key stays valid
    rule: CompiledRule
    counts: Counter[str]
    arns: dict[str, list[str]]
    members: frozenset[str]


def _group_values(rule: CompiledRule, peers: Sequence[EstateRecord]) -> _GroupValues:
    counts: Counter[str] = Counter()
    arns: dict[str, list[str]] = defaultdict(list)
    for p in peers:
        value = p.tags.get(rule.name)
        if value is not None and rule.accepts(value):
            counts[value] += 1
            if len(arns[value]) <= MAX_EVIDENCE:  # one spare: the resource asked about is dropped later
                arns[value].append(p.arn)
    return _GroupValues(peers, rule, counts, arns, frozenset(p.arn for p in peers))


class Suggester:
    """Suggests values for the broken tags of resources of one estate (pure: no I/O)."""

    def __init__(self, index: EstateIndex, policy_for: Callable[[str], CompiledPolicy]) -> None:
        self.index = index
        self.policy_for = policy_for
        # (group, rule) -> its counted values: a batch over a whole account counts each group once, so the
        # work grows with resources x signals, not with resources x peers.
        self._groups: dict[tuple[int, int], _GroupValues] = {}

    def suggest(self, record: EstateRecord, *, policy_version: str = "") -> ResourceSuggestions:
        compiled = self.policy_for(record.account_id)
        ev = compiled.evaluate_resource(record.to_resource())
        broken: dict[str, ViolationType] = {}
        for v in ev.violations:
            if v.violation_type in FIXABLE and v.tag_name not in broken:
                broken[v.tag_name] = v.violation_type
        rules = {r.name: r for r in compiled.rules_for(record.resource_type)}
        best: list[TagSuggestion] = []
        alternatives: list[TagSuggestion] = []
        unresolved: list[str] = []
        for tag in broken:
            rule = rules.get(tag)
            ranked = self._for_rule(record, rule, compiled) if rule is not None else []
            if not ranked:
                unresolved.append(tag)
                continue
            best.append(ranked[0])
            alternatives.extend(ranked[1:1 + MAX_ALTERNATIVES])
        return ResourceSuggestions(
            resource_arn=record.arn, resource_type=record.resource_type, account_id=record.account_id,
            region=record.region, name=record.name, tags=dict(record.tags), broken_tags=list(broken),
            suggestions=best, alternatives=alternatives, unresolved=unresolved, policy_version=policy_version)

    def _for_rule(self, r: EstateRecord, rule: CompiledRule, compiled: CompiledPolicy) -> list[TagSuggestion]:
        candidates: dict[str, _Candidate] = defaultdict(_Candidate)
        self._own_fixes(r, rule, compiled, candidates)
        parents = self.index.parents(r)
        for parent, weight in parents:
            value = parent.tags.get(rule.name)
            if value is not None and rule.accepts(value):
                candidates[value].add("parent", weight,
                                      f"its {parent.resource_type} {parent.resource_id} has {rule.name}={value!r}",
                                      [parent.arn])
                break  # the nearest ancestor with a valid value speaks for the chain
        system = _system_tags(r)
        for signal, keys in _GROUP_TAGS:
            for key in keys:
                if system.get(key):
                    peers = self.index.groups.get((signal, r.account_id, system[key]), [])
                    self._vocabulary(r, rule, candidates, signal, peers, f"{key}={system[key]!r}")
        tokens = _tokens(r.name)
        for k in range(min(_MAX_PREFIX_TOKENS, len(tokens) - 1), 0, -1):
            prefix = "-".join(tokens[:k])
            if self._vocabulary(r, rule, candidates, "name_prefix",
                                self.index.prefixes.get((r.account_id, prefix), []), f"name prefix {prefix!r}"):
                break  # the longest prefix with peers is the closest family
        vpc = r.attributes.get("vpc_id") if r.attributes else None
        if isinstance(vpc, str) and vpc:
            self._vocabulary(r, rule, candidates, "vpc", self.index.vpcs.get((r.account_id, vpc), []), f"VPC {vpc}")
        self._vocabulary(r, rule, candidates, "account", self.index.accounts.get(r.account_id, []),
                         f"account {r.account_id}")
        self._naming_pattern(r, rule, tokens, candidates)
        ranked = sorted(candidates.items(), key=lambda kv: (-kv[1].confidence, kv[0]))
        return [TagSuggestion(tag=rule.name, value=value, confidence=c.confidence, action=c.action,  # type: ignore[arg-type]
                              current_key=c.current_key, current_value=c.current_value,
                              signals=sorted(c.confidences, key=lambda k: -c.confidences[k]),
                              reasoning="; ".join(c.clauses), evidence=c.evidence)
                for value, c in ranked]

    def _own_fixes(self, r: EstateRecord, rule: CompiledRule, compiled: CompiledPolicy,
                   candidates: dict[str, _Candidate]) -> None:
        """Values the resource already has, under the wrong key case, an alias key, or misspelt."""
        aliases = compiled.policy.alias_map()
        for key, value in r.tags.items():
            if key == rule.name:
                if not rule.accepts(value) and rule.allowed is not None:
                    guess = closest_value(value, rule.allowed)
                    if guess is not None and rule.accepts(guess):
                        c = candidates[guess]
                        c.action, c.current_key, c.current_value = "replace_value", key, value
                        c.add("did_you_mean", SIGNAL_WEIGHTS["did_you_mean"],
                              f"{value!r} is close to the allowed {guess!r}")
                continue
            signal: Signal | None = None
            if key.casefold() == rule.folded:
                signal = "key_case"
            elif aliases.get(key.casefold()) == rule.name:
                signal = "alias_key"
            if signal is None:
                continue
            what = "wrongly cased key" if signal == "key_case" else "alias key"
            fixed = value if rule.accepts(value) else (
                closest_value(value, rule.allowed) if rule.allowed is not None else None)
            if fixed is None or not rule.accepts(fixed):
                continue
            c = candidates[fixed]
            c.action, c.current_key, c.current_value = "rename_key", key, value
            weight = SIGNAL_WEIGHTS[signal] * (1.0 if fixed == value else 0.9)
            clause = f"the resource has {key}={value!r} ({what})"
            if fixed != value:
                clause += f"; {fixed!r} is the allowed form"
            c.add(signal, weight, clause)

    def _vocabulary(self, r: EstateRecord, rule: CompiledRule, candidates: dict[str, _Candidate], signal: Signal,
                    peers: Sequence[EstateRecord], what: str) -> bool:
        """Add the peers' majority value (the resource itself left out); True when peers had any valid value."""
        key = (id(peers), id(rule))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _group_values(rule, peers)
        counts = group.counts
        if r.arn in group.members:
            # The resource is never its own evidence: take out what the index holds for it (the caller's
            # record may differ, e.g. with a tag hidden to measure the method).
            indexed = self.index.by_arn.get(r.arn)
            own = indexed.tags.get(rule.name) if indexed is not None else None
            if own is not None and counts.get(own, 0) > 0:
                counts = counts.copy()
                counts[own] -= 1
                counts += Counter()  # drops the zero
        total = sum(counts.values())
        if not total:
            return False
        for value, n in counts.most_common(2):
            share = n / total
            confidence = SIGNAL_WEIGHTS[signal] * share * (total / (total + 1))
            evidence = [a for a in group.arns[value] if a != r.arn][:MAX_EVIDENCE]
            candidates[value].add(signal, round(confidence, 3),
                                  f"{n} of {total} resources with {what} have {rule.name}={value!r}", evidence)
        return True

    @staticmethod
    def _naming_pattern(r: EstateRecord, rule: CompiledRule, tokens: Sequence[str],
                        candidates: dict[str, _Candidate]) -> None:
        """A name token that is, or abbreviates, an allowed value (``prod`` -> ``production``)."""
        if rule.allowed is None or not tokens:
            return
        for token in tokens:
            if len(token) < 2 or token.isdigit():
                continue
            literal = next((a for a in rule.allowed if a.casefold() == token), None)
            guess = literal or (closest_value(token, rule.allowed) if len(token) >= 3 else None)
            if guess is not None and rule.accepts(guess) and (literal or guess.casefold().startswith(token[:2])):
                candidates[guess].add("naming_pattern", SIGNAL_WEIGHTS["naming_pattern"],
                                      f"its name {r.name!r} contains {token!r}")
                return


# ---------------------------------------------------------------------------------------------- service

def _records(rt: Runtime, accounts: Iterable[str]) -> list[EstateRecord]:
    with rt.db.session() as s:
        rows = s.scalars(select(ResourceRow).where(ResourceRow.account_id.in_(sorted(set(accounts))))).all()
        return [EstateRecord(arn=r.arn, resource_id=r.resource_id, resource_type=r.resource_type,
                             account_id=r.account_id, region=r.region, name=r.name, tags=dict(r.tags or {}),
                             attributes=dict(r.attributes or {})) for r in rows]


def _suggester(rt: Runtime, accounts: Sequence[str]) -> tuple[Suggester, EstateIndex, Callable[[str], str]]:
    from services.policy_store import active_policy

    default = active_policy(rt.db, rt.settings.policy_path)
    frozen = freeze_account_policies(rt, default.id, synced_policy_versions(rt), accounts)
    today = utcnow().date()

    def version_of(account: str) -> str:
        return frozen.by_account.get(account, default.id)

    index = EstateIndex(_records(rt, accounts))
    return Suggester(index, lambda account: rt.policies.get(rt.db, version_of(account), today)), index, version_of


def _check_arn(arn: str, field_name: str) -> str:
    if not isinstance(arn, str) or not arn.startswith("arn:") or len(arn) > 2048:
        raise InvalidInput(f"{arn!r} is not an ARN", field=field_name,
                           fix="pass a full ARN such as arn:aws:ec2:us-east-1:123456789012:volume/vol-0abc")
    return arn


def _account_of(rt: Runtime, arns: Sequence[str]) -> dict[str, str]:
    with rt.db.session() as s:
        return dict(s.execute(select(ResourceRow.arn, ResourceRow.account_id).where(ResourceRow.arn.in_(arns))).all())


def suggest_tags(rt: Runtime, resource_arn: str) -> ResourceSuggestions:
    """Suggestions for one resource a scan has seen (its latest stored state)."""
    arn = _check_arn(resource_arn, "resource_arn")
    account = _account_of(rt, [arn]).get(arn)
    if account is None:
        raise NotFound(f"no scan has seen {arn}", field="resource_arn",
                       fix="run check_tag_compliance over its account and region first (suggestions use the "
                           "scanned estate), or check the ARN for typos")
    suggester, index, version_of = _suggester(rt, [account])
    return suggester.suggest(index.by_arn[arn], policy_version=version_of(account))


def suggest_tags_batch(rt: Runtime, *, resource_arns: Sequence[str] | None = None, scan_id: str | None = None,
                       resource_types: Sequence[str] | None = None, min_confidence: float = 0.5,
                       limit: int = 25) -> SuggestionBatch:
    """Suggestions for many resources: given ARNs (<= 100), or the non-compliant resources of a scan."""
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidInput(f"min_confidence {min_confidence} is outside 0..1", field="min_confidence",
                           fix="pass a number from 0 to 1, e.g. 0.8 for suggestions safe to apply after a glance")
    if not 1 <= limit <= MAX_BATCH_RESULTS:
        raise InvalidInput(f"limit {limit} is outside 1..{MAX_BATCH_RESULTS}", field="limit",
                           fix=f"pass 1 to {MAX_BATCH_RESULTS}; narrow with resource_types for more focus")
    if (resource_arns is None) == (scan_id is None):
        raise InvalidInput("give either resource_arns or scan_id", field="resource_arns",
                           fix="pass up to 100 ARNs, or the scan_id of a finished scan to cover its non-compliant "
                               "resources")
    not_found: list[str] = []
    if resource_arns is not None:
        if not resource_arns or len(resource_arns) > MAX_BATCH_ARNS:
            raise InvalidInput(f"{len(resource_arns)} ARNs given", field="resource_arns",
                               fix=f"pass 1 to {MAX_BATCH_ARNS} ARNs, or a scan_id for a whole scan")
        arns = list(dict.fromkeys(_check_arn(a, f"resource_arns[{i}]") for i, a in enumerate(resource_arns)))
        accounts_by_arn = _account_of(rt, arns)
        not_found = [a for a in arns if a not in accounts_by_arn]
        targets = [a for a in arns if a in accounts_by_arn]
    else:
        targets, accounts_by_arn = _non_compliant(rt, str(scan_id), resource_types)
    suggester, index, version_of = _suggester(rt, sorted(set(accounts_by_arn.values())))
    results: list[ResourceSuggestions] = []
    by_tag: Counter[str] = Counter()
    with_any = 0
    notes: list[str] = []
    if len(targets) > MAX_BATCH_CONSIDERED:
        # The counts cover a bounded number of resources so the call stays inside a tool's time budget.
        notes.append(f"{len(targets)} resources qualify; suggestions_by_tag counts the first {MAX_BATCH_CONSIDERED} "
                     "(in ARN order): narrow with resource_types for exact counts")
        targets = targets[:MAX_BATCH_CONSIDERED]
    for arn in targets:
        record = index.by_arn.get(arn)
        if record is None:
            not_found.append(arn)
            continue
        found = suggester.suggest(record, policy_version=version_of(record.account_id))
        kept = [s for s in found.suggestions if s.confidence >= min_confidence]
        if not kept:
            continue
        with_any += 1
        by_tag.update(s.tag for s in kept)
        if len(results) < limit:
            others = [s for s in found.alternatives if s.confidence >= min_confidence]
            results.append(found.model_copy(update={"suggestions": kept, "alternatives": others}))
    return SuggestionBatch(resources=results, resources_considered=len(targets), resources_returned=len(results),
                           truncated=with_any > len(results), min_confidence=min_confidence,
                           suggestions_by_tag=dict(sorted(by_tag.items())), not_found=not_found, notes=notes)


def _non_compliant(rt: Runtime, scan_id: str, resource_types: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    from services.db.models import ScanRow

    with rt.db.session() as s:
        if s.get(ScanRow, scan_id) is None:
            raise NotFound(f"scan {scan_id} does not exist", field="scan_id", fix="pass a scan_id from list_scans")
        q = select(ScanResourceRow.arn, ScanResourceRow.account_id).where(
            ScanResourceRow.scan_id == scan_id, ScanResourceRow.in_scope.is_(True),
            ScanResourceRow.compliant.is_(False))
        if resource_types:
            q = q.where(ScanResourceRow.resource_type.in_(list(resource_types)))
        rows = s.execute(q.order_by(ScanResourceRow.arn)).all()
    return [arn for arn, _ in rows], {arn: account for arn, account in rows}
