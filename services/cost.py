"""Cost of non-compliance: how much spend the tagging policy cannot attribute, without double counting.

Semantics (each one is pinned by a test in tests/unit/test_cost_semantics.py):

* Metric. Figures are sums of one FOCUS cost column: ``EffectiveCost`` by default (commitments
  amortized), or ``BilledCost`` (also ``ListCost``, ``ContractedCost``). Sums are exact decimals;
  costs are net, so credits and corrections inside a group lower it.
* Untaggable. A row is untaggable when it has no ResourceId, or when its ChargeCategory is Tax,
  Credit or Adjustment (compared ignoring case): no tag on any resource can change who pays for it.
  Untaggable spend is reported apart (``untaggable_cost``, ``untaggable_by_reason``) and is never
  part of the gap. Every other row is taggable: ``taggable_cost + untaggable_cost == total_cost``.
* Attributable. A taggable row is attributable when its tags (FOCUS ``Tags``: the finalized tags of
  the row's resource) satisfy every REQUIRED tag of the policy that applies to the row's resource
  type. The policy engine decides, and only these findings on a required tag count: the key is
  missing or its value empty (``missing_required_tag``), the value is not allowed
  (``invalid_value``) or does not match the format (``invalid_format``), or the key is spelled
  with the wrong case and the exact key is absent (``wrong_key_case``; when the exact key is there
  too, its own value decides). Optional tags, prohibited keys and naming rules are hygiene: they
  do not make spend unattributable. Exemptions are not applied: an exemption waives a finding, it
  does not put the tag on the bill. A row whose type no required tag applies to has nothing to
  satisfy: it is attributable and its spend is also reported as ``out_of_scope_cost``.
* Gap. ``attribution_gap`` is the spend of the taggable rows that are not attributable, each row
  counted once however many keys it misses: ``attributable_cost + attribution_gap ==
  taggable_cost``. ``attribution_gap_percentage`` is the gap as a percentage of taggable spend.
* Per key. ``by_tag_key[K].attribution_gap`` is the spend of gap rows failing required key K. These
  overlap (a row missing two keys counts under both), so they do not add up to the gap; with
  non-negative costs each one is at most the gap, and the gap is at most their sum.
* Breakdowns by account (SubAccountId), region (RegionId), service (ServiceName) and resource type
  partition the rows: their figures add up to the totals.
* Method. Figures from FOCUS rows are ``measured``. A source that only knows service totals (a
  later Cost Explorer path) must set ``method="estimated"`` and describe how in
  ``method_description``; nothing estimated is ever presented as measured.

The policy is judged once per distinct (resource type, Tags) combination (per account too when the
policy has overrides), never per row, so a file of millions of rows costs a few thousand
evaluations. The resource type comes from the ResourceId (see :mod:`services.focus`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from policies.engine import CompiledPolicy, compile_policy
from policies.models import Resource, ViolationType
from policies.policy import Policy, applies_to_type
from services.errors import InvalidInput
from services.focus import COST_METRICS, FocusSource, FocusTable, RowFilter, StageSummary, as_decimal, open_focus

__all__ = [
    "ATTRIBUTION_VIOLATIONS",
    "DEFAULT_METRIC",
    "UNTAGGABLE_CATEGORIES",
    "CostAttribution",
    "CostBreakdown",
    "CostSlice",
    "RowCounts",
    "TagKeyGap",
    "TagVerdict",
    "attribution_from_focus",
    "judge_tags",
    "normalize_metric",
    "parse_tags",
]

DEFAULT_METRIC = "EffectiveCost"
#: ChargeCategory values whose rows no resource tag can attribute (FOCUS 1.x spelling).
UNTAGGABLE_CATEGORIES: tuple[str, ...] = ("Tax", "Credit", "Adjustment")
#: Findings on a required tag that make a row unattributable; everything else is hygiene.
ATTRIBUTION_VIOLATIONS: frozenset[ViolationType] = frozenset({
    ViolationType.MISSING_REQUIRED_TAG, ViolationType.INVALID_VALUE, ViolationType.INVALID_FORMAT,
    ViolationType.WRONG_KEY_CASE})

OVERLAP_NOTE = ("by_tag_key figures overlap: a row that fails several required keys counts under each of "
                "them but only once in attribution_gap, so they do not add up to the gap.")


# ------------------------------------------------------------------------------------------ models

class CostSlice(BaseModel):
    """Spend and row count of one group."""

    cost: float
    rows: int


class CostBreakdown(BaseModel):
    """The attribution figures of one account, region, service or resource type."""

    total_cost: float
    taggable_cost: float
    untaggable_cost: float
    attributable_cost: float
    attribution_gap: float
    attribution_gap_percentage: float | None = Field(
        description="attribution_gap / taggable_cost x 100; null when taggable spend is negative.")
    rows: int
    gap_rows: int


class TagKeyGap(BaseModel):
    """How much spend fails one required key. Figures of different keys overlap (see notes)."""

    attribution_gap: float = Field(description="Spend of gap rows that fail this key (missing, empty, invalid "
                                               "value or format, wrong key case). Overlaps other keys.")
    gap_rows: int
    applicable_cost: float = Field(description="Taggable spend on which this key is required.")
    applicable_rows: int
    gap_percentage_of_applicable: float | None = Field(
        description="attribution_gap / applicable_cost x 100; null when applicable spend is not positive.")
    by_problem: dict[str, float] = Field(
        description="Spend per finding (missing_required_tag, invalid_value, invalid_format, wrong_key_case); "
                    "a row with two findings on this key counts under both.")


class RowCounts(BaseModel):
    """Rows counted (after filters), and the special cases among them."""

    total: int
    taggable: int
    untaggable: int
    attributable: int
    gap: int
    out_of_scope: int = Field(description="Taggable rows no required tag applies to (counted as attributable).")
    unknown_resource_type: int = Field(description="Taggable rows whose ResourceId names no service:resource type.")
    unreadable_tags: int = Field(description="Taggable rows whose Tags are not a JSON object (read as untagged).")
    null_cost: int = Field(description="Rows without a value in the metric column (counted as 0).")


class CostAttribution(BaseModel):
    """The cost of non-compliance over one cost source. CLI JSON, REST and MCP share this model."""

    source: Literal["focus", "cost_explorer"] = "focus"
    source_name: str = Field(description="The FOCUS export's file or folder name (or s3:// URI), or the service.")
    method: Literal["measured", "estimated"] = "measured"
    method_description: str
    metric: str
    currency: str | None
    billing_period_start: datetime | None
    billing_period_end: datetime | None
    charge_period_start: datetime | None
    charge_period_end: datetime | None
    policy_version: str = Field(description="Content hash (first 12 hex digits) of the policy applied.")
    filters: dict[str, Any] = Field(default_factory=dict, description="The row filters applied, if any.")

    total_cost: float
    taggable_cost: float
    untaggable_cost: float
    attributable_cost: float
    attribution_gap: float
    attribution_gap_percentage: float | None = Field(
        description="attribution_gap / taggable_cost x 100 (0 when there is no taggable spend); null when "
                    "taggable spend is negative.")
    attribution_gap_upper_bound: float | None = Field(default=None, description=(
        "Estimated sources only: the most the gap can be (attribution_gap is then the least); null when measured."))
    out_of_scope_cost: float = Field(description="Part of attributable_cost no required tag applies to.")
    rows: RowCounts | None = Field(description="Row counts of a FOCUS export; null for Cost Explorer.")
    untaggable_by_reason: dict[str, CostSlice]
    by_tag_key: dict[str, TagKeyGap]
    by_service: dict[str, CostBreakdown]
    by_account: dict[str, CostBreakdown]
    by_region: dict[str, CostBreakdown]
    by_resource_type: dict[str, CostBreakdown]
    notes: list[str]


# ------------------------------------------------------------------------------------------ judging

@dataclass(frozen=True, slots=True)
class TagVerdict:
    """Whether one tag set satisfies the required tags that apply to one resource type."""

    attributable: bool
    #: Required keys the tags fail, sorted.
    failing: tuple[str, ...]
    #: (key, violation type) of every counted finding, sorted.
    problems: tuple[tuple[str, str], ...]
    #: Required keys that apply to the type, in policy order (empty: out of scope).
    applicable: tuple[str, ...]


def parse_tags(text: str | None) -> tuple[dict[str, str], bool]:
    """FOCUS ``Tags`` text as a tag mapping, and whether it was unreadable.

    A JSON object is expected. Keys are kept exactly (``" org"`` stays distinct from ``org``); a
    ``null`` value means the key has no value (left out, as FOCUS allows); other non-text values
    (``true`` for keys that take no value, numbers) become their JSON text. Anything else reads as
    no tags, flagged unreadable.
    """
    if not text:
        return {}, False
    try:
        data = json.loads(text)
    except ValueError:
        return {}, True
    if not isinstance(data, dict):
        return {}, True
    tags: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        tags[str(key)] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return tags, False


def judge_tags(compiled: CompiledPolicy, resource_type: str, tags: Mapping[str, str],
               account_id: str = "") -> TagVerdict:
    """Judge one tag set on one resource type by the engine, keeping only findings that make spend
    unattributable (see the module docstring)."""
    applicable = tuple(rule.name for rule in compiled.rules_for(resource_type) if rule.required)
    if not applicable:
        return TagVerdict(True, (), (), ())
    required = set(applicable)
    evaluation = compiled.evaluate_resource(Resource(
        arn=f"focus:{resource_type}", resource_id="", resource_type=resource_type, account_id=account_id,
        region="", tags=tags))
    failing: set[str] = set()
    problems: set[tuple[str, str]] = set()
    for v in evaluation.violations:
        if v.violation_type not in ATTRIBUTION_VIOLATIONS or v.tag_name not in required:
            continue
        if v.violation_type is ViolationType.WRONG_KEY_CASE and v.tag_name in tags:
            # The exact key is there too: its value alone decides (checked as its own finding).
            continue
        failing.add(v.tag_name)
        problems.add((v.tag_name, v.violation_type.value))
    return TagVerdict(not failing, tuple(sorted(failing)), tuple(sorted(problems)), applicable)


class _Judge:
    """Compiled policies (one per account when the policy has overrides) and verdicts by combination."""

    def __init__(self, policy: Policy) -> None:
        # Exemptions waive findings; they do not attribute spend (see the module docstring).
        self.base = policy.model_copy(update={"exemptions": []}) if policy.exemptions else policy
        self.per_account = bool(policy.overrides)
        self._compiled: dict[str | None, CompiledPolicy] = {}
        self._verdicts: dict[tuple[str, str, str | None], tuple[TagVerdict, bool]] = {}

    def relevant_keys(self) -> set[str]:
        """Lowercased and casefolded names of every required tag (overrides included): only keys equal
        to one of them ignoring case can change a verdict (other keys only feed naming findings)."""
        names = {r.name for r in self.base.required_tags}
        names.update(r.name for o in self.base.overrides for r in o.required_tags)
        return {n.lower() for n in names} | {n.casefold() for n in names}

    def compiled(self, account: str | None) -> CompiledPolicy:
        key = account if self.per_account else None
        found = self._compiled.get(key)
        if found is None:
            policy = self.base.for_account(key) if key else self.base
            found = self._compiled[key] = compile_policy(policy)
        return found

    def verdict(self, resource_type: str, tags_text: str, account: str | None) -> tuple[TagVerdict, bool]:
        key = (resource_type, tags_text, account if self.per_account else None)
        found = self._verdicts.get(key)
        if found is None:
            tags, unreadable = parse_tags(tags_text)
            found = (judge_tags(self.compiled(account), resource_type, tags, account or ""), unreadable)
            self._verdicts[key] = found
        return found


# ------------------------------------------------------------------------------------------ inputs

def normalize_metric(metric: str) -> str:
    """The FOCUS column name for ``metric`` (matched ignoring case), or InvalidInput naming the choices."""
    wanted = metric.strip().casefold()
    for name in COST_METRICS:
        if name.casefold() == wanted:
            return name
    raise InvalidInput(f"unknown cost metric '{metric}'", field="metric",
                       fix=f"use {DEFAULT_METRIC} (the default, commitments amortized) or BilledCost "
                           f"(also accepted: {', '.join(m for m in COST_METRICS[2:])})")


def _load_policy(policy: Policy | str | os.PathLike[str] | None) -> Policy:
    if isinstance(policy, Policy):
        return policy
    from services.config import DEFAULT_POLICY_PATH
    from services.policy_store import read_policy_file

    return read_policy_file(Path(policy) if policy is not None else DEFAULT_POLICY_PATH)


def _check_types(resource_types: Sequence[str] | None) -> tuple[str, ...] | None:
    if resource_types is None:
        return None
    types = tuple(t.strip() for t in resource_types if t.strip())
    bad = [t for t in types if t.count(":") != 1 or not all(t.split(":"))]
    if bad or not types:
        raise InvalidInput(f"resource types must be service:resource, got {', '.join(map(repr, bad)) or 'none'}",
                           field="resource_types", fix="use types such as ec2:instance, s3:bucket or ec2:*")
    return types


# ------------------------------------------------------------------------------------------ the figures

def _pct(part: Decimal, whole: Decimal) -> float | None:
    if whole == 0:
        return 0.0
    if whole < 0:
        return None
    return round(float(part / whole * 100), 4)


def _breakdown(row: Mapping[str, Any]) -> CostBreakdown:
    taggable, gap = as_decimal(row["taggable"]), as_decimal(row["gap"])
    return CostBreakdown(
        total_cost=float(as_decimal(row["total"])), taggable_cost=float(taggable),
        untaggable_cost=float(as_decimal(row["untaggable"])), attributable_cost=float(as_decimal(row["attributable"])),
        attribution_gap=float(gap), attribution_gap_percentage=_pct(gap, taggable), rows=int(row["rows"]),
        gap_rows=int(row["gap_rows"]))


def _money(value: Decimal, currency: str | None) -> str:
    return f"{value:,.2f} {currency or ''}".rstrip()


def attribution_from_focus(source: FocusSource | str | os.PathLike[str], policy: Policy | str | os.PathLike[str] |
                           None = None, *, metric: str = DEFAULT_METRIC, row_filter: RowFilter | None = None,
                           resource_types: Sequence[str] | None = None, s3_client: Any = None,
                           memory_limit: str | None = None, threads: int | None = None) -> CostAttribution:
    """The cost of non-compliance over a FOCUS export (a local file or folder, or an ``s3://`` URI).

    ``policy`` is a :class:`Policy`, a policy file, or ``None`` for the shipped default policy.
    ``row_filter`` limits the rows counted (accounts, regions, services, providers, charge period,
    currency); ``resource_types`` keeps only rows whose resource type matches (``ec2:*`` allowed;
    rows without a ResourceId then drop out). Raises InvalidInput (naming the field and the fix)
    for a missing or unreadable file, a file without the FOCUS columns, an unknown metric, costs
    that are not numbers, or several billing currencies without a currency filter.
    """
    metric_name = normalize_metric(metric)
    types = _check_types(resource_types)
    rules = _load_policy(policy)
    rf = row_filter or RowFilter()
    options: dict[str, Any] = {"s3_client": s3_client, "threads": threads}
    if memory_limit is not None:
        options["memory_limit"] = memory_limit
    with open_focus(source, **options) as table:
        summary = table.stage(metric_name, rf, UNTAGGABLE_CATEGORIES)
        _check_summary(table, summary, metric_name, rf)
        judge = _Judge(rules)
        table.reduce_tags(judge.relevant_keys())
        _classify(table, judge, types)
        return _result(table, summary, judge, rules, metric_name, rf, types)


def _check_summary(table: FocusTable, summary: StageSummary, metric: str, rf: RowFilter) -> None:
    if summary.bad_cost_rows:
        raise InvalidInput(
            f"{table.source.display_name}: {summary.bad_cost_rows} row(s) have a {metric} that is not a number "
            f"(for example {summary.bad_cost_example!r})", field="focus",
            fix=f"correct the export's {metric} column, or choose another cost column with --metric")
    if rf.currency and not summary.currencies:
        present = table.export_currencies()
        if rf.currency not in present:
            raise InvalidInput(f"no row of {table.source.display_name} is billed in '{rf.currency}'", field="currency",
                               fix=f"choose one of: {', '.join(present) or '(none)'}")
    if len(summary.currencies) > 1 and not rf.currency:
        raise InvalidInput(
            f"{table.source.display_name} bills in {len(summary.currencies)} currencies "
            f"({', '.join(summary.currencies)}); amounts in different currencies cannot be added",
            field="currency", fix=f"choose one currency (--currency {summary.currencies[0]})")


def _classify(table: FocusTable, judge: _Judge, types: tuple[str, ...] | None) -> None:
    combos = table.combinations(with_account=judge.per_account)
    probes: list[str] = []
    tags: list[str] = []
    accounts: list[str | None] = []
    rtypes: list[str] = []
    attributable: list[bool] = []
    failing: list[list[str]] = []
    problems: list[list[str]] = []
    applicable: list[list[str]] = []
    unreadable: list[bool] = []
    selected: list[bool] = []
    type_cache: dict[str, str] = {}
    for probe, tags_text, account in combos:
        rtype = type_cache.get(probe)
        if rtype is None:
            rtype = type_cache[probe] = FocusTable.type_of_probe(probe)
        verdict, bad = judge.verdict(rtype, tags_text, account)
        probes.append(probe)
        tags.append(tags_text)
        accounts.append(account)
        rtypes.append(rtype)
        attributable.append(verdict.attributable)
        failing.append(list(verdict.failing))
        problems.append([f"{k}\t{p}" for k, p in verdict.problems])
        applicable.append(list(verdict.applicable))
        unreadable.append(bad)
        selected.append(types is None or (bool(rtype) and applies_to_type(types, rtype)))
    table.load_verdicts(probes=probes, tags=tags, accounts=accounts, types=rtypes, attributable=attributable,
                        failing=failing, problems=problems, applicable=applicable, unreadable=unreadable,
                        selected=selected, with_account=judge.per_account, keep_without_resource=types is None)
    missed = table.unjudged_rows()
    if missed:
        # Every row with a ResourceId must have found its verdict; anything else is a bug, not data.
        raise RuntimeError(f"{missed} rows found no verdict")


def _result(table: FocusTable, summary: StageSummary, judge: _Judge, policy: Policy, metric: str,
            rf: RowFilter, types: tuple[str, ...] | None) -> CostAttribution:
    totals = table.totals()
    flagged = table.flagged()
    currency = rf.currency or (summary.currencies[0] if summary.currencies else None)
    taggable, gap = as_decimal(totals["taggable"]), as_decimal(totals["gap"])
    untaggable = as_decimal(totals["untaggable"])
    out_of_scope = as_decimal(totals["out_of_scope"])

    by_problem: dict[str, dict[str, float]] = {}
    for p in table.tag_key_problems():
        by_problem.setdefault(p["key"], {})[p["problem"]] = float(as_decimal(p["cost"]))
    by_tag_key = {
        k["key"]: TagKeyGap(
            attribution_gap=float(as_decimal(k["gap"])), gap_rows=int(k["gap_rows"]),
            applicable_cost=float(as_decimal(k["applicable"])), applicable_rows=int(k["applicable_rows"]),
            gap_percentage_of_applicable=(_pct(as_decimal(k["gap"]), as_decimal(k["applicable"]))
                                          if as_decimal(k["applicable"]) > 0 else None),
            by_problem=by_problem.get(k["key"], {}))
        for k in table.tag_keys()}
    untaggable_by_reason = {r["key"]: CostSlice(cost=float(as_decimal(r["cost"])), rows=int(r["rows"]))
                            for r in table.untaggable_reasons()}

    rows = RowCounts(total=int(totals["rows"]), taggable=int(totals["taggable_rows"]),
                     untaggable=int(totals["untaggable_rows"]), attributable=int(totals["attributable_rows"]),
                     gap=int(totals["gap_rows"]), out_of_scope=int(totals["out_of_scope_rows"]),
                     unknown_resource_type=int(flagged["untyped_rows"]),
                     unreadable_tags=int(flagged["unreadable_rows"]), null_cost=summary.null_cost_rows)
    notes = _notes(table, summary, policy, metric, currency, rows, totals, flagged, types)
    filters = _filters(rf, types)
    return CostAttribution(
        source_name=table.source.display_name,
        method_description=(f"measured: sums of the {metric} column over the export's rows, each row counted "
                            "once; nothing is estimated"),
        metric=metric, currency=currency,
        billing_period_start=summary.billing_period_start, billing_period_end=summary.billing_period_end,
        charge_period_start=summary.charge_period_start, charge_period_end=summary.charge_period_end,
        policy_version=policy.content_hash()[:12], filters=filters,
        total_cost=float(as_decimal(totals["total"])), taggable_cost=float(taggable),
        untaggable_cost=float(untaggable), attributable_cost=float(as_decimal(totals["attributable"])),
        attribution_gap=float(gap), attribution_gap_percentage=_pct(gap, taggable),
        out_of_scope_cost=float(out_of_scope), rows=rows, untaggable_by_reason=untaggable_by_reason,
        by_tag_key=by_tag_key,
        by_service={r["key"]: _breakdown(r) for r in table.breakdown("service")},
        by_account={r["key"]: _breakdown(r) for r in table.breakdown("account")},
        by_region={r["key"]: _breakdown(r) for r in table.breakdown("region")},
        by_resource_type={r["key"]: _breakdown(r) for r in table.breakdown("rtype")},
        notes=notes)


def _filters(rf: RowFilter, types: tuple[str, ...] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("accounts", "regions", "services", "providers"):
        values = getattr(rf, name)
        if values:
            out[name] = list(values)
    if rf.start is not None:
        out["start"] = rf.start.isoformat()
    if rf.end is not None:
        out["end"] = rf.end.isoformat()
    if rf.currency:
        out["currency"] = rf.currency
    if types is not None:
        out["resource_types"] = list(types)
    return out


def _notes(table: FocusTable, summary: StageSummary, policy: Policy, metric: str,
           currency: str | None, rows: RowCounts, totals: Mapping[str, Any], flagged: Mapping[str, Any],
           types: tuple[str, ...] | None) -> list[str]:
    notes = [f"Measured from {rows.total} FOCUS row(s) of {table.source.display_name}: every figure is a sum of "
             f"{metric}; attribution_gap counts each row once however many required keys it misses.",
             OVERLAP_NOTE]
    if rows.total == 0:
        notes.append("No row was counted (the export is empty or the filters matched nothing).")
    if rows.untaggable:
        notes.append(f"{rows.untaggable} row(s) ({_money(as_decimal(totals['untaggable']), currency)}) are untaggable "
                     f"(no ResourceId, or ChargeCategory {', '.join(UNTAGGABLE_CATEGORIES)}): reported apart in "
                     "untaggable_cost, never as gap.")
    if rows.out_of_scope:
        notes.append(f"{rows.out_of_scope} taggable row(s) "
                     f"({_money(as_decimal(totals['out_of_scope']), currency)}) are on resource types no "
                     "required tag applies to: counted as attributable (the policy asks nothing of them) and "
                     "shown as out_of_scope_cost.")
    if rows.unknown_resource_type:
        notes.append(f"{rows.unknown_resource_type} taggable row(s) "
                     f"({_money(as_decimal(flagged['untyped_cost']), currency)}) have a ResourceId that names no "
                     "service:resource type (non-AWS ids, OCIDs, bare ids): only required tags with an empty "
                     "applies_to were checked on them.")
    if rows.unreadable_tags:
        notes.append(f"{rows.unreadable_tags} taggable row(s) "
                     f"({_money(as_decimal(flagged['unreadable_cost']), currency)}) have Tags that are not a JSON "
                     "object: read as untagged.")
    if summary.null_cost_rows:
        notes.append(f"{summary.null_cost_rows} row(s) have no {metric} value: counted as 0.")
    if flagged["negative_rows"]:
        notes.append(f"{flagged['negative_rows']} taggable row(s) carry negative {metric} "
                     f"({_money(as_decimal(flagged['negative_cost']), currency)}, "
                     "corrections or refunds): figures are net, and with negative rows a per-key figure can "
                     "exceed the gap.")
    if summary.missing_optional:
        notes.append(f"The export has no {', '.join(summary.missing_optional)} column(s): those breakdowns show "
                     "'(none)'.")
    if policy.exemptions:
        notes.append(f"The policy's {len(policy.exemptions)} exemption(s) are not applied: an exemption waives a "
                     "finding, it does not put the tag on the bill.")
    if any(o.organizational_units for o in policy.overrides):
        notes.append("Overrides that target organizational units are not applied (FOCUS rows name the account, "
                     "not its OU); overrides that name accounts are.")
    if types is not None:
        notes.append(f"Only rows of resource types {', '.join(types)} are counted; rows without a ResourceId "
                     "are left out.")
    return notes
