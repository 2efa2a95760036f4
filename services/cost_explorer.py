"""AWS Cost Explorer as a cost source: cached requests, and the attribution gap estimated per required key.

Cost Explorer knows spend per tag value only for keys activated as cost allocation tags, one key at a
time (``GroupBy TAG``: ``Key$value``, and ``Key$`` for spend without the key). It cannot say how much
spend misses several keys at once, so the gap is a range:

* per key ``K``: the taggable spend whose ``K`` value is absent (``K$``) or not allowed by the policy,
  counted only on services where the rule applies (``applies_to`` mapped through :data:`SERVICE_PREFIXES`;
  a service not in the map counts only for rules that apply to every type);
* ``attribution_gap`` (the estimate) is the largest per-key figure: spend certainly unattributable;
  ``attribution_gap_upper_bound`` is the sum of the per-key figures, capped at the taggable spend.
  Summing ``K$`` over several keys double-counts (REFERENCE.md), so the sum is only a bound.

Untaggable spend is the record types Tax, Credit and Refund (FOCUS's Tax, Credit and Adjustment);
taggable is the rest. The metric is AmortizedCost for EffectiveCost, UnblendedCost for BilledCost.
Every request costs USD 0.01: answers are kept in the database for ``cost_cache_hours`` and the
number of requests a call made (and how many came from the cache) is in the notes.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete

from policies.engine import CompiledRule, compile_policy
from policies.policy import Policy
from services.cost import CostAttribution, CostBreakdown, TagKeyGap
from services.db.models import CostExplorerCacheRow, utcnow
from services.errors import AppError, InvalidInput, Unavailable
from services.runtime import Runtime

#: FOCUS metric -> Cost Explorer metric.
CE_METRICS: Mapping[str, str] = {"EffectiveCost": "AmortizedCost", "BilledCost": "UnblendedCost"}
UNTAGGABLE_RECORD_TYPES: tuple[str, ...] = ("Tax", "Credit", "Refund")
#: Cost Explorer SERVICE names -> the service prefixes of our resource types they bill.
SERVICE_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "Amazon Elastic Compute Cloud - Compute": ("ec2",),
    "EC2 - Other": ("ec2",),
    "Amazon Simple Storage Service": ("s3",),
    "Amazon Relational Database Service": ("rds",),
    "AWS Lambda": ("lambda",),
    "Amazon DynamoDB": ("dynamodb",),
    "Amazon Simple Queue Service": ("sqs",),
    "Amazon Simple Notification Service": ("sns",),
    "AmazonCloudWatch": ("logs",),
    "AWS Key Management Service": ("kms",),
    "AWS Secrets Manager": ("secretsmanager",),
    "Amazon EC2 Container Registry (ECR)": ("ecr",),
    "Amazon Kinesis": ("kinesis",),
    "Amazon Elastic Load Balancing": ("elasticloadbalancing",),
    "AWS Step Functions": ("states",),
    "Amazon Elastic Container Service": ("ecs",),
    "Amazon Elastic Container Service for Kubernetes": ("eks",),
    "Amazon Elastic File System": ("elasticfilesystem",),
    "Amazon ElastiCache": ("elasticache",),
    "Amazon OpenSearch Service": ("es",),
    "Amazon CloudFront": ("cloudfront",),
    "Amazon Route 53": ("route53",),
}
#: Where a Cost Explorer service bills only some resource types of its prefix, those types (a service not
#: listed here bills every type of its prefixes): compute is instances, "EC2 - Other" is storage and network.
SERVICE_TYPES: Mapping[str, tuple[str, ...]] = {
    "Amazon Elastic Compute Cloud - Compute": ("ec2:instance",),
    "EC2 - Other": ("ec2:volume", "ec2:snapshot", "ec2:elastic-ip", "ec2:natgateway"),
}
_CE_REGION = "us-east-1"  # Cost Explorer has one endpoint


def service_bills(service: str, resource_type: str) -> bool:
    """Whether Cost Explorer service ``service`` bills resources of ``resource_type``."""
    types = SERVICE_TYPES.get(service)
    if types is not None:
        return resource_type in types
    return resource_type.split(":", 1)[0] in SERVICE_PREFIXES.get(service, ())
_MAX_PAGES = 50


class CostExplorerUsage(BaseModel):
    requests: int = 0
    from_cache: int = 0


class CostExplorer:
    """Cost Explorer requests from the caller's (management or payer) account, cached in the database."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.usage = CostExplorerUsage()
        self._client: Any = None
        self._account: str | None = None

    def _connect(self) -> Any:
        if self._client is None:
            self._account = self.rt.aws.caller_account()
            self._client = self.rt.aws.client(self._account, "ce", _CE_REGION)
        return self._client

    def get_cost_and_usage(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``GetCostAndUsage`` with every page merged (ResultsByTime joined), from the cache when fresh."""
        return self._cached("GetCostAndUsage", params)

    def get_cost_and_usage_with_resources(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``GetCostAndUsageWithResources`` (resource-level, opt-in, last 14 days), pages merged, cached."""
        return self._cached("GetCostAndUsageWithResources", params)

    def _cached(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = self._connect()
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"AWS credentials could not be used for Cost Explorer: {type(exc).__name__}",
                              fix="check the AWS credentials of the gateway and workers") from None
        self.usage.requests += 1
        canonical = json.dumps({"account": self._account, "operation": operation, "params": params},
                               sort_keys=True, default=str)
        key = hashlib.sha256(canonical.encode()).hexdigest()
        ttl = timedelta(hours=self.rt.settings.cost_cache_hours)
        with self.rt.db.session() as s:
            row = s.get(CostExplorerCacheRow, key)
            if row is not None and ttl and _aware(row.fetched_at) > utcnow() - ttl:
                self.usage.from_cache += 1
                return dict(row.response)
        merged = self._fetch(client, operation, dict(params))
        with self.rt.db.session() as s:
            s.execute(delete(CostExplorerCacheRow).where(CostExplorerCacheRow.key == key))
            s.add(CostExplorerCacheRow(key=key, account_id=str(self._account), operation=operation,
                                       request=json.loads(canonical), response=merged, fetched_at=utcnow()))
        return merged

    @staticmethod
    def _fetch(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        method = {"GetCostAndUsage": client.get_cost_and_usage,
                  "GetCostAndUsageWithResources": client.get_cost_and_usage_with_resources}[operation]
        results: list[Any] = []
        token: str | None = None
        for _ in range(_MAX_PAGES):
            try:
                page = method(**params, **({"NextPageToken": token} if token else {}))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "ClientError")
                if code in ("AccessDeniedException", "AccessDenied"):
                    raise InvalidInput(f"Cost Explorer answered {code}", field="credentials",
                                       fix="grant ce:GetCostAndUsage to the gateway's role in the payer account, or "
                                           "configure a FOCUS export (FINOPS_FOCUS_PATH)") from None
                if code == "DataUnavailableException" or (
                        operation == "GetCostAndUsageWithResources" and code in ("ValidationException",
                                                                               "OptInRequiredException")):
                    raise Unavailable("Cost Explorer has no data for this period yet",
                                      fix="ask for an earlier period; new accounts get data within 24 hours") from None
                raise Unavailable(f"Cost Explorer call failed: {code}", fix="retry later") from None
            except BotoCoreError as exc:
                raise Unavailable(f"Cost Explorer could not be reached: {type(exc).__name__}",
                                  fix="check network access and AWS_ENDPOINT_URL") from None
            results.extend(page.get("ResultsByTime", []))
            token = page.get("NextPageToken")
            if not token:
                return {"ResultsByTime": results}
        # Never a truncated answer presented (and cached) as the whole: the figures would be too low.
        raise Unavailable(f"Cost Explorer answered more than {_MAX_PAGES} pages for one request",
                          fix="narrow the request (fewer accounts, a shorter time_period), or use a FOCUS export")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _amount(metrics: Mapping[str, Any], metric: str) -> float:
    try:
        return float((metrics.get(metric) or {}).get("Amount") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _groups(response: Mapping[str, Any], metric: str) -> Iterable[tuple[tuple[str, ...], float]]:
    for period in response.get("ResultsByTime", []):
        for group in period.get("Groups", []):
            yield tuple(group.get("Keys", [])), _amount(group.get("Metrics", {}), metric)


def _rule_applies(rule: CompiledRule, service: str) -> bool:
    if not rule.applies_to:
        return True
    return any(service_bills(service, t) or (t.endswith(":*") and t.split(":", 1)[0] in SERVICE_PREFIXES.get(
        service, ())) for t in rule.applies_to)


def check_period(start: date | None, end: date | None, *, today: date | None = None) -> tuple[date, date]:
    """The [start, end) period to price: default the last full month; end is exclusive, as in Cost Explorer."""
    today = today or utcnow().date()
    if start is None and end is None:
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
    if start is None or end is None:
        raise InvalidInput("time_period needs both Start and End", field="time_period",
                           fix='pass {"Start": "2026-11-01", "End": "2026-12-01"} (End exclusive), or omit it for '
                               "the last full month")
    if end <= start:
        raise InvalidInput(f"time_period End {end} is not after Start {start}", field="time_period.End",
                           fix="End is exclusive: for November pass Start 2026-11-01 and End 2026-12-01")
    if (end - start).days > 366:
        raise InvalidInput("time_period spans more than a year", field="time_period",
                           fix="ask for 12 months or less (Cost Explorer keeps 13 months)")
    return start, end


def attribution_from_cost_explorer(rt: Runtime, policy: Policy, *, start: date, end: date,
                                   metric: str = "EffectiveCost", accounts: Sequence[str] = (),
                                   regions: Sequence[str] = ()) -> CostAttribution:
    """The attribution gap estimated from Cost Explorer (see the module docstring for the method)."""
    if metric not in CE_METRICS:
        raise InvalidInput(f"metric {metric!r} has no Cost Explorer equivalent", field="metric",
                           fix="use EffectiveCost (AmortizedCost) or BilledCost (UnblendedCost)")
    ce_metric = CE_METRICS[metric]
    ce = CostExplorer(rt)
    base: list[dict[str, Any]] = []
    if accounts:
        base.append({"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": list(accounts)}})
    if regions:
        base.append({"Dimensions": {"Key": "REGION", "Values": list(regions)}})
    taggable_filter = [*base, {"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": list(UNTAGGABLE_RECORD_TYPES)}}}]

    def query(group_by: list[dict[str, str]], filters: list[dict[str, Any]]) -> dict[str, Any]:
        params: dict[str, Any] = {"TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
                                  "Granularity": "MONTHLY", "Metrics": [ce_metric], "GroupBy": group_by}
        if len(filters) == 1:
            params["Filter"] = filters[0]
        elif filters:
            params["Filter"] = {"And": filters}
        return ce.get_cost_and_usage(params)

    # The order of requests is fixed (tests seed an emulator's answers in this order).
    total = untaggable = 0.0
    for (record_type, *_), amount in _groups(query([{"Type": "DIMENSION", "Key": "RECORD_TYPE"}], base), ce_metric):
        total += amount
        untaggable += amount if record_type in UNTAGGABLE_RECORD_TYPES else 0.0
    by_service_taggable: dict[str, float] = defaultdict(float)
    for (service, *_), amount in _groups(query([{"Type": "DIMENSION", "Key": "SERVICE"}], taggable_filter),
                                         ce_metric):
        by_service_taggable[service] += amount
    by_account_taggable: dict[str, float] = defaultdict(float)
    for (account, *_), amount in _groups(query([{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}], taggable_filter),
                                         ce_metric):
        by_account_taggable[account] += amount
    taggable = total - untaggable

    compiled = compile_policy(policy)
    rules = {r.name: r for r in _required_rules(compiled)}
    by_key: dict[str, TagKeyGap] = {}
    key_gap_by_service: dict[str, dict[str, float]] = {}
    key_gap_by_account: dict[str, dict[str, float]] = {}
    for name in sorted(rules):
        rule = rules[name]
        per_service: dict[str, float] = defaultdict(float)
        applicable = 0.0
        problems: dict[str, float] = defaultdict(float)
        for keys, amount in _groups(query([{"Type": "TAG", "Key": name}, {"Type": "DIMENSION", "Key": "SERVICE"}],
                                          taggable_filter), ce_metric):
            tag_key, service = (*keys, "", "")[:2]
            if not _rule_applies(rule, service):
                continue
            applicable += amount
            value = tag_key.split("$", 1)[1] if "$" in tag_key else ""
            if not value:
                per_service[service] += amount
                problems["missing_required_tag"] += amount
            elif not rule.accepts(value):
                per_service[service] += amount
                problems["invalid_value" if rule.allowed is not None else "invalid_format"] += amount
        per_account: dict[str, float] = defaultdict(float)
        if rule.applies_to:
            # Per account only where the rule applies everywhere: a TAG x LINKED_ACCOUNT answer has no
            # service to restrict by, and a third GroupBy is not allowed.
            note_accounts = False
        else:
            note_accounts = True
            for keys, amount in _groups(query([{"Type": "TAG", "Key": name},
                                               {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}], taggable_filter),
                                        ce_metric):
                tag_key, account = (*keys, "", "")[:2]
                value = tag_key.split("$", 1)[1] if "$" in tag_key else ""
                if not value or not rule.accepts(value):
                    per_account[account] += amount
        gap = sum(per_service.values())
        by_key[name] = TagKeyGap(attribution_gap=round(gap, 6), gap_rows=0, applicable_cost=round(applicable, 6),
                                 applicable_rows=0, gap_percentage_of_applicable=_pct(gap, applicable),
                                 by_problem={k: round(v, 6) for k, v in sorted(problems.items())})
        key_gap_by_service[name] = per_service
        if note_accounts:
            key_gap_by_account[name] = per_account

    lower = max((k.attribution_gap for k in by_key.values()), default=0.0)
    upper = min(max(taggable, 0.0), sum(k.attribution_gap for k in by_key.values()))
    by_service = {svc: _breakdown(t, max((g.get(svc, 0.0) for g in key_gap_by_service.values()), default=0.0))
                  for svc, t in sorted(by_service_taggable.items())}
    by_account = {acc: _breakdown(t, max((g.get(acc, 0.0) for g in key_gap_by_account.values()), default=0.0))
                  for acc, t in sorted(by_account_taggable.items())}
    notes = [
        "estimated: Cost Explorer reports spend per tag key one key at a time; attribution_gap is the largest "
        "per-key gap (spend certainly unattributable) and attribution_gap_upper_bound the per-key gaps summed "
        "(capped at taggable spend): the true gap lies between them.",
        "by_tag_key figures overlap: spend missing several keys counts under each of them.",
        "only keys activated as cost allocation tags are visible to Cost Explorer; for a key that is not "
        "activated all spend reads as missing it (activate it in the Billing console).",
        f"Cost Explorer requests: {ce.usage.requests} ({ce.usage.from_cache} answered from the cache; each "
        "uncached request costs USD 0.01).",
    ]
    if any(r.applies_to for r in rules.values()):
        notes.append("keys required only for some resource types are matched to Cost Explorer services by name; "
                     "by_account counts only the keys required for every type.")
    return CostAttribution(
        source="cost_explorer", source_name="AWS Cost Explorer", method="estimated",
        method_description=("Cost Explorer GetCostAndUsage grouped by RECORD_TYPE, SERVICE, LINKED_ACCOUNT and, "
                            "per required key, by TAG x SERVICE: gap = the largest per-key gap (lower bound), "
                            "upper bound = the sum of per-key gaps capped at taggable spend"),
        metric=metric, currency="USD", billing_period_start=datetime.combine(start, datetime.min.time(), UTC),
        billing_period_end=datetime.combine(end, datetime.min.time(), UTC), charge_period_start=None,
        charge_period_end=None, policy_version=policy.content_hash()[:12],
        filters={k: v for k, v in (("accounts", list(accounts)), ("regions", list(regions))) if v},
        total_cost=round(total, 6), taggable_cost=round(taggable, 6), untaggable_cost=round(untaggable, 6),
        attributable_cost=round(taggable - lower, 6), attribution_gap=round(lower, 6),
        attribution_gap_upper_bound=round(upper, 6),
        attribution_gap_percentage=0.0 if taggable == 0 else _pct(lower, taggable),
        out_of_scope_cost=0.0, rows=None, untaggable_by_reason={}, by_tag_key=by_key, by_service=by_service,
        by_account=by_account, by_region={}, by_resource_type={}, notes=notes)


def _required_rules(compiled: Any) -> list[CompiledRule]:
    """Every required rule of the policy (top level), compiled once."""
    seen: dict[str, CompiledRule] = {}
    for rule, required in compiled.policy.rules():
        if required and rule.name not in seen:
            seen[rule.name] = CompiledRule(rule, required=True, case_sensitive=compiled.case_sensitive)
    return list(seen.values())


def _pct(part: float, whole: float) -> float | None:
    """``part`` as a percentage of ``whole``; None when ``whole`` is not positive."""
    return round(100 * part / whole, 4) if whole > 0 else None


def _breakdown(taggable: float, gap: float) -> CostBreakdown:
    return CostBreakdown(total_cost=round(taggable, 6), taggable_cost=round(taggable, 6), untaggable_cost=0.0,
                         attributable_cost=round(taggable - gap, 6), attribution_gap=round(gap, 6),
                         attribution_gap_percentage=_pct(gap, taggable),
                         rows=0, gap_rows=0)


def service_monthly_totals(rt: Runtime, *, start: date, end: date, metric: str = "EffectiveCost",
                           accounts: Sequence[str] = ()) -> tuple[dict[tuple[str, str], float], CostExplorerUsage]:
    """Monthly average spend per (account, Cost Explorer service) over [start, end)."""
    ce = CostExplorer(rt)
    ce_metric = CE_METRICS[metric]
    params: dict[str, Any] = {"TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
                              "Granularity": "MONTHLY", "Metrics": [ce_metric],
                              "GroupBy": [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"},
                                          {"Type": "DIMENSION", "Key": "SERVICE"}],
                              "Filter": {"Not": {"Dimensions": {"Key": "RECORD_TYPE",
                                                                "Values": list(UNTAGGABLE_RECORD_TYPES)}}}}
    if accounts:
        params["Filter"] = {"And": [params["Filter"], {"Dimensions": {"Key": "LINKED_ACCOUNT",
                                                                         "Values": list(accounts)}}]}
    response = ce.get_cost_and_usage(params)
    months = max(1, len(response.get("ResultsByTime", [])))
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for (account, service, *_), amount in _groups(response, ce_metric):
        totals[(account, service)] += amount / months
    return dict(totals), ce.usage


#: Days of resource-level data Cost Explorer keeps (GetCostAndUsageWithResources).
RESOURCE_LEVEL_DAYS = 14


def resource_level_monthly(rt: Runtime, services: Sequence[str], accounts: Sequence[str], *,
                           metric: str = "EffectiveCost") -> tuple[dict[str, float], int, CostExplorerUsage]:
    """Monthly spend per Cost Explorer RESOURCE_ID (an ARN or a bare EC2 id) of ``services`` in ``accounts``:
    the last full days of resource-level data (up to 14) scaled to 30 days. A service without
    resource-level data is skipped; Unavailable (the first service's reason) when none has any."""
    ce = CostExplorer(rt)
    ce_metric = CE_METRICS[metric]
    end = utcnow().date()
    start = end - timedelta(days=RESOURCE_LEVEL_DAYS - 1)  # the oldest day may fall outside the window
    spend: dict[str, float] = defaultdict(float)
    days: set[str] = set()
    failures: list[AppError] = []
    wanted = sorted(set(services))
    for service in wanted:
        filters: list[dict[str, Any]] = [{"Dimensions": {"Key": "SERVICE", "Values": [service]}}]
        if accounts:
            filters.append({"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": sorted(set(accounts))}})
        try:
            response = ce.get_cost_and_usage_with_resources({
                "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()}, "Granularity": "DAILY",
                "Metrics": [ce_metric], "GroupBy": [{"Type": "DIMENSION", "Key": "RESOURCE_ID"}],
                "Filter": filters[0] if len(filters) == 1 else {"And": filters}})
        except AppError as exc:  # this service has no resource-level data (not opted in, or none yet)
            failures.append(exc)
            continue
        for period in response.get("ResultsByTime", []):
            days.add(str((period.get("TimePeriod") or {}).get("Start")))
            for group in period.get("Groups", []):
                keys = group.get("Keys") or [""]
                if keys[0]:
                    spend[keys[0]] += _amount(group.get("Metrics", {}), ce_metric)
    if failures and len(failures) == len(wanted):
        raise failures[0]
    n_days = max(1, len(days))
    return {rid: amount * 30.0 / n_days for rid, amount in spend.items()}, n_days, ce.usage
