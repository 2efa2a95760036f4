"""Entry points of AWS discovery: collect one shard, read the tagging API, look resources up by ARN.

``collect_shard`` is what a worker runs for one (account, region, type group). Each type is
collected by its shape's generic collector; a type that fails becomes a ``CollectFailure`` and the
other types go on, so a shard is either complete or says exactly what is missing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from policies.models import GLOBAL_REGION, Resource
from scanner.providers.aws import registry
from scanner.providers.aws.arn import ParsedArn, parse_arn
from scanner.providers.aws.collectors import (
    CallStats,
    CollectContext,
    CollectionStopped,
    TypeOutcome,
    normalize_arn,
    normalize_tags,
    run_type,
    split_system_tags,
)
from scanner.providers.aws.organization import list_organization_accounts
from scanner.providers.aws.registry import ResourceTypeInfo, TagShape
from scanner.providers.aws.session import ClientFactory
from scanner.ratelimit import NullLimiter, RateLimiter
from scanner.results import CollectFailure, ShardResult
from scanner.retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    error_code,
    interrupt_in,
    is_retryable,
    reraise_interrupt,
    retrying,
)

__all__ = [
    "TAGGING_API_NOTE",
    "ParsedArn",
    "collect_shard",
    "collect_tagging_api",
    "fetch_resources_by_arn",
    "parse_arn",
]

log = logging.getLogger(__name__)

TAGGING_API_NOTE = (
    "tagging API lists only tagged resources; never-tagged resources of these types are not visible"
)
# GetResources takes at most 100 ARNs per call.
_RGTA_ARN_BATCH = 100
_RGTA_SERVICE = "resourcegroupstaggingapi"
_RGTA_FAMILY = "tagging"


def _failure(resource_type: str, exc: BaseException) -> CollectFailure:
    if not isinstance(exc, ClientError | BotoCoreError):
        # Not a cloud answer: most likely a bug. Still reported in the shard, and logged in full.
        log.error("collecting %s failed unexpectedly", resource_type, exc_info=exc)
    return CollectFailure(
        resource_type=resource_type,
        code=error_code(exc),
        message=str(exc) or type(exc).__name__,
        retryable=is_retryable(exc),
    )


def _check_scope(infos: Sequence[ResourceTypeInfo], region: str) -> None:
    # A global type in a regional shard would be counted once per region (a defect of the peer
    # project); a regional type in the global shard has no region to call. Both are planner bugs.
    for info in infos:
        if info.is_global and region != GLOBAL_REGION:
            raise ValueError(f"{info.resource_type} is global: collect it with region={GLOBAL_REGION!r}")
        if not info.is_global and region == GLOBAL_REGION:
            raise ValueError(f"{info.resource_type} is regional: collect it with a real region")


def collect_shard(
    factory: ClientFactory,
    account_id: str,
    region: str,
    resource_types: Iterable[str],
    *,
    limiter: RateLimiter | None = None,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
    max_workers: int = 8,
    type_workers: int = 4,
    page_size: int | None = None,
) -> ShardResult:
    """Collect every resource of ``resource_types`` in one account and region.

    Global types (S3, CloudFront, Route 53) are collected with ``region="global"``; S3 buckets
    still carry their real region. Before every API call the limiter is asked for a token under
    ``{account}:{region}:{api_family}``. Up to ``type_workers`` types are collected side by side (a
    shard holds many small types: run one after another, their latencies would add up), and
    ``max_workers`` threads run per-item calls (tag reads); ``page_size`` overrides list page sizes
    (tests use small pages to exercise pagination). The types that read tags from the tagging API
    share one read. Unknown type names raise ``UnknownResourceTypeError``; cloud failures never raise.
    """
    infos = registry.resolve(list(resource_types))
    _check_scope(infos, region)
    result = ShardResult()
    stats = CallStats()
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="collect")
    ctx = CollectContext(
        factory=factory,
        account_id=account_id,
        region=region,
        limiter=limiter or NullLimiter(),
        retry_policy=retry_policy,
        stats=stats,
        executor=pool,
        page_size=page_size,
        bulk_filters=tuple(sorted({i.tags.tagging_api_filter for i in infos if i.tags.tagging_api_filter})),
    )
    interrupt: BaseException | None = None
    try:
        try:
            # Reach the account once up front (AssumeRole for members): when that fails every type
            # fails the same way, and the role is not asked again for each type.
            if infos:
                retrying(retry_policy, stats.add_retry)(
                    factory.client, account_id, infos[0].service, ctx.api_region
                )
        except Exception as exc:
            reraise_interrupt(exc)
            result.failures.extend(_failure(info.resource_type, exc) for info in infos)
            infos = []
        outcomes, interrupt = _run_types(ctx, infos, type_workers)
    finally:
        # After an interrupt the calls still in flight are abandoned, not waited for (one may hang).
        pool.shutdown(wait=interrupt is None, cancel_futures=interrupt is not None)
    for info, outcome in outcomes:
        if isinstance(outcome, TypeOutcome):
            result.resources.extend(outcome.resources)
            result.failures.extend(outcome.failures)
            if outcome.excluded:
                result.notes.append(f"{info.resource_type}: {outcome.excluded} skipped by exclusion rules")
        elif outcome is None or isinstance(outcome, CollectionStopped):  # not finished when the interrupt came
            result.failures.append(CollectFailure(
                info.resource_type, "TimeLimit", "not finished when the shard's time limit stopped it: its "
                "resources are left out (the shard's other types are complete)", retryable=False))
        else:  # one type failing must not cost the others
            result.failures.append(_failure(info.resource_type, outcome))
    _copy_stats(stats, result)
    return result


TypeResult = TypeOutcome | Exception | None


def _run_types(
    ctx: CollectContext, infos: Sequence[ResourceTypeInfo], type_workers: int
) -> tuple[list[tuple[ResourceTypeInfo, TypeResult]], BaseException | None]:
    """Each type's outcome, the exception that ended it, or None when an interrupt (the shard's soft
    time limit, raised in this thread) came first; and that interrupt. The types finished before an
    interrupt keep their results: a hung API costs its own types, not the whole shard."""
    done: dict[int, TypeResult] = {}

    def one(info: ResourceTypeInfo) -> TypeOutcome | Exception:
        try:
            return run_type(ctx, info)
        except Exception as exc:
            reraise_interrupt(exc)
            return exc

    interrupt: BaseException | None = None
    if type_workers <= 1 or len(infos) <= 1:
        try:
            for index, info in enumerate(infos):
                done[index] = one(info)
        except Exception as exc:
            interrupt = interrupt_in(exc)
            if interrupt is None:
                raise
            ctx.stop.set()
    else:
        types = ThreadPoolExecutor(max_workers=min(type_workers, len(infos)), thread_name_prefix="collect-type")
        futures = [types.submit(one, info) for info in infos]
        try:
            for index, future in enumerate(futures):
                done[index] = future.result()
        except Exception as exc:
            interrupt = interrupt_in(exc)
            if interrupt is None:
                raise
            ctx.stop.set()
            for index, future in enumerate(futures):
                if future.done() and not future.cancelled() and future.exception() is None:
                    done[index] = future.result()
        finally:
            types.shutdown(wait=interrupt is None, cancel_futures=interrupt is not None)
    return [(info, done.get(index)) for index, info in enumerate(infos)], interrupt


def _copy_stats(stats: CallStats, result: ShardResult) -> None:
    result.api_calls, result.retries, result.throttles = stats.api_calls, stats.retries, stats.throttles
    result.api_by_family = {family: dict(counts) for family, counts in stats.by_family.items()}


# -------------------------------------------------------------------------------- tagging API
def _type_of(parsed: ParsedArn) -> str:
    info = registry.type_for_arn_key(parsed.type_key)
    return info.resource_type if info else parsed.type_key


def _rgta_pages(ctx: CollectContext, params: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return ctx.pages(_RGTA_SERVICE, _RGTA_FAMILY, "GetResources", params, registry.BOTOCORE)


def _resource_from_mapping(mapping: dict[str, Any], account_id: str, region: str) -> Resource:
    arn = str(mapping["ResourceARN"])
    parsed = parse_arn(arn)
    tags, system_tags = split_system_tags(normalize_tags(mapping.get("Tags"), TagShape.KV_LIST))
    return Resource(
        arn=arn,
        resource_id=parsed.resource_id,
        resource_type=_type_of(parsed),
        account_id=parsed.account or account_id,
        region=parsed.region or GLOBAL_REGION,
        tags=tags,
        name=None,
        attributes={"system_tags": system_tags} if system_tags else {},
    )


def collect_tagging_api(
    factory: ClientFactory,
    account_id: str,
    region: str,
    exclude_types: Iterable[str] | None = None,
    *,
    limiter: RateLimiter | None = None,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
    include_global: bool | None = None,
) -> ShardResult:
    """Tagged resources of types outside the registry, from the Resource Groups Tagging API.

    Covers the long tail of services the registry has no collector for. ``exclude_types`` (default:
    every registered type) are skipped because their own collectors see untagged resources too.
    ARNs without a region (global services) are kept only when ``include_global`` (default: when
    ``region`` is the factory's default region), so they are not reported once per region.
    """
    excluded = set(registry.all_types() if exclude_types is None else exclude_types)
    if include_global is None:
        include_global = region == factory.default_region
    result = ShardResult(notes=[TAGGING_API_NOTE])
    stats = CallStats()
    ctx = CollectContext(factory, account_id, region, limiter or NullLimiter(), retry_policy, stats)
    seen: set[str] = set()
    try:
        for page in _rgta_pages(ctx, {"ResourcesPerPage": 100}):
            for mapping in page.get("ResourceTagMappingList") or []:
                arn = str(mapping["ResourceARN"])
                if arn in seen:
                    continue
                seen.add(arn)
                try:
                    parsed = parse_arn(arn)
                except ValueError:
                    result.notes.append(f"tagging API returned an unparseable ARN, skipped: {arn}")
                    continue
                if _type_of(parsed) in excluded:
                    continue
                if parsed.region and parsed.region != region:
                    continue
                if not parsed.region and not include_global:
                    continue
                result.resources.append(_resource_from_mapping(mapping, account_id, region))
    except Exception as exc:
        reraise_interrupt(exc)
        result.failures.append(_failure("tagging-api", exc))
    _copy_stats(stats, result)
    return result


# ------------------------------------------------------------------------------- lookup by ARN
def _match_key(arn: str) -> tuple[str, str, str, str]:
    # Compare ARNs by partition, service, region and resource: ARN formats differ on whether the
    # account is included for some types (EC2 snapshots), and the caller's account is known anyway.
    p = parse_arn(normalize_arn(arn))
    return (p.partition, p.service, p.region, p.resource)


def fetch_resources_by_arn(
    factory: ClientFactory,
    arns: Iterable[str],
    *,
    accounts: Iterable[str] | None = None,
    limiter: RateLimiter | None = None,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
) -> tuple[list[Resource], list[CollectFailure]]:
    """Current tags of specific resources, by ARN.

    ARNs are grouped by account and region; the tagging API (``ResourceARNList``, 100 per call)
    answers for tagged resources. The rest (never tagged, or not existing) are looked up with their
    type's own collector when the type is registered; whatever is still not found, or has an
    unregistered type, becomes a ``CollectFailure`` with code ``NotFound``. Invalid ARNs become
    failures with code ``InvalidArn``; they do not stop the others.

    S3 and Route 53 ARNs name no account. They are searched in the caller's account first, then in
    ``accounts`` (when None: the organization's active accounts, if the caller may list them),
    stopping as soon as all are found.
    """
    limiter = limiter or NullLimiter()
    lookup = _Lookup(factory, limiter, retry_policy)
    groups: dict[tuple[str, str], dict[str, ParsedArn]] = defaultdict(dict)
    accountless: dict[str, dict[str, ParsedArn]] = defaultdict(dict)  # region -> arn -> parsed
    for arn in dict.fromkeys(arns):
        try:
            parsed = parse_arn(arn)
        except ValueError as exc:
            lookup.failures.append(CollectFailure("unknown", "InvalidArn", str(exc), retryable=False))
            continue
        if parsed.account and parsed.account != "aws":
            groups[(parsed.account, parsed.region)][arn] = parsed
        else:
            accountless[parsed.region][arn] = parsed

    for (account, region), by_arn in groups.items():
        lookup.failures.extend(lookup.group(account, region, by_arn).values())

    if accountless:
        lookup.search_accounts(accountless, accounts)
    return lookup.resources, lookup.failures


class _Lookup:
    """State of one ``fetch_resources_by_arn`` call."""

    def __init__(self, factory: ClientFactory, limiter: RateLimiter, retry_policy: RetryPolicy) -> None:
        self.factory = factory
        self.limiter = limiter
        self.retry_policy = retry_policy
        self.resources: list[Resource] = []
        self.failures: list[CollectFailure] = []

    def _candidates(self, accounts: Iterable[str] | None) -> Iterable[str]:
        caller = self.factory.caller_account()
        yield caller
        if accounts is not None:
            yield from (a for a in dict.fromkeys(accounts) if a != caller)
            return
        try:
            client = self.factory.client(caller, "organizations", self.factory.default_region)
            active, _skipped = list_organization_accounts(client)
        except (ClientError, BotoCoreError) as exc:
            # Not the management account, or no permission: only the caller's account is searched.
            log.info("cannot list organization accounts (%s); searching the caller only", error_code(exc))
            return
        yield from (a.id for a in active if a.id != caller)

    def search_accounts(
        self, by_region: dict[str, dict[str, ParsedArn]], accounts: Iterable[str] | None
    ) -> None:
        """Look account-less ARNs up account by account until every one is found."""
        remaining = {region: dict(by_arn) for region, by_arn in by_region.items()}
        last_miss: dict[str, CollectFailure] = {}
        errors: list[CollectFailure] = []
        searched = 0
        for account in self._candidates(accounts):
            if not any(remaining.values()):
                break
            searched += 1
            for region, by_arn in remaining.items():
                if not by_arn:
                    continue
                before = len(self.failures)
                missing = self.group(account, region, by_arn)
                # Errors in an account that does not hold the resource are noise unless the
                # resource is never found; keep them aside until the end.
                errors.extend(self.failures[before:])
                del self.failures[before:]
                for arn in list(by_arn):
                    if arn in missing:
                        last_miss[arn] = missing[arn]
                    else:
                        del by_arn[arn]
                        last_miss.pop(arn, None)
        leftovers = [arn for by_arn in remaining.values() for arn in by_arn]
        for arn in leftovers:
            miss = last_miss.get(arn)
            rtype = miss.resource_type if miss else "unknown"
            self.failures.append(
                CollectFailure(
                    rtype, "NotFound", f"{arn}: not found in {searched} account(s) searched", False
                )
            )
        if leftovers:
            self.failures.extend(errors)

    def group(self, account: str, region: str, by_arn: dict[str, ParsedArn]) -> dict[str, CollectFailure]:
        """Look up ARNs of one account and region; returns NotFound failures by ARN, records others."""
        not_found: dict[str, CollectFailure] = {}
        remaining = dict(by_arn)
        rgta_error: BaseException | None = None

        # S3 ARNs name no region and the tagging API only answers for its own region: the bucket
        # collector finds the region itself.
        rgta_arns = [a for a, p in remaining.items() if not (p.service == "s3" and not p.region)]
        ctx = CollectContext(
            self.factory, account, region or self.factory.default_region, self.limiter, self.retry_policy
        )
        try:
            for start in range(0, len(rgta_arns), _RGTA_ARN_BATCH):
                batch = rgta_arns[start : start + _RGTA_ARN_BATCH]
                for page in _rgta_pages(ctx, {"ResourceARNList": batch}):
                    for mapping in page.get("ResourceTagMappingList") or []:
                        returned = str(mapping["ResourceARN"])
                        requested = next((a for a in batch if _match_key(a) == _match_key(returned)), None)
                        if requested is None or requested not in remaining:
                            continue
                        res = _resource_from_mapping(mapping, account, region or GLOBAL_REGION)
                        self.resources.append(_with_arn(res, requested))
                        del remaining[requested]
        except Exception as exc:
            reraise_interrupt(exc)
            # The collectors below may still find them; the error is reported if they do not.
            rgta_error = exc

        # Not returned by the tagging API: never tagged, not existing, or the API failed.
        by_type: dict[str, list[str]] = defaultdict(list)
        for arn, parsed in remaining.items():
            info = registry.type_for_arn_key(parsed.type_key)
            if info is not None:
                by_type[info.resource_type].append(arn)
            elif rgta_error is not None:
                self.failures.append(_failure(_type_of(parsed), rgta_error))
            else:
                not_found[arn] = CollectFailure(
                    _type_of(parsed),
                    "NotFound",
                    f"{arn}: not returned by the tagging API (not existing, or never tagged) and "
                    "its type has no collector to look it up",
                    retryable=False,
                )

        for type_name, arns in by_type.items():
            info = registry.get(type_name)
            shard_region = GLOBAL_REGION if info.is_global else region
            type_ctx = CollectContext(self.factory, account, shard_region, self.limiter, self.retry_policy)
            try:
                outcome = run_type(type_ctx, info, wanted_arns=arns)
            except Exception as exc:
                reraise_interrupt(exc)
                failure = _failure(type_name, exc)
                message = f"could not look up {', '.join(arns)} in {account}: {failure.message}"
                self.failures.append(CollectFailure(type_name, failure.code, message, failure.retryable))
                continue
            by_key = {_match_key(r.arn): r for r in outcome.resources}
            for arn in arns:
                hit = by_key.get(_match_key(arn))
                if hit is not None:
                    self.resources.append(hit)
                else:
                    not_found[arn] = CollectFailure(
                        type_name, "NotFound", f"{arn}: resource not found", False
                    )
            self.failures.extend(outcome.failures)
        return not_found


def _with_arn(resource: Resource, arn: str) -> Resource:
    # Report the ARN exactly as the caller asked for it.
    if resource.arn == arn:
        return resource
    return Resource(
        arn=arn,
        resource_id=resource.resource_id,
        resource_type=resource.resource_type,
        account_id=resource.account_id,
        region=resource.region,
        tags=resource.tags,
        name=resource.name,
        attributes=resource.attributes,
    )
