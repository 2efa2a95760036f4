"""The generic collectors: one per API shape, all driven by ``ResourceTypeInfo`` metadata.

Every API call goes through ``CollectContext.call``: the rate limiter is asked first, the call is
counted, and throttling/transient errors are retried with backoff. Pages are followed to the end,
with botocore's paginator model where one exists (read from botocore's data, so every page is its
own retried call) and the type's ``PageSpec`` otherwise.

Failures are never silent: a listing that fails raises (the caller records the whole type as
failed); a per-item call that fails leaves that resource out and records an aggregated
``CollectFailure`` naming it, so the type is reported as partial.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

import jmespath
from botocore import xform_name
from botocore.exceptions import ClientError

from policies.models import GLOBAL_REGION, Resource
from scanner.providers.aws.arn import parse_arn, partition_of
from scanner.providers.aws.registry import (
    BOTOCORE,
    CollectorShape,
    PageSpec,
    Pagination,
    Ref,
    ResourceTypeInfo,
    TagShape,
    TagSource,
    Transform,
)
from scanner.providers.aws.session import ClientFactory, shared_botocore_session
from scanner.ratelimit import NullLimiter, RateLimiter, limiter_key
from scanner.results import CollectFailure
from scanner.retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    error_code,
    is_retryable,
    is_throttling,
    reraise_interrupt,
    retrying,
)

log = logging.getLogger(__name__)

Item = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")

# Keys the pipeline adds to items; they never clash with AWS field names (no leading underscore).
_PARENT = "_parent"
_REGION = "_region"


class PaginationLoopError(RuntimeError):
    """An API returned the same continuation token twice; following it would never end."""


# ------------------------------------------------------------------------------ pagination model
@dataclass(frozen=True, slots=True)
class _PageConfig:
    input_tokens: tuple[str, ...]
    output_tokens: tuple[str, ...]
    more_results: str | None
    limit_key: str | None


_botocore_lock = threading.Lock()


@functools.cache
def botocore_page_config(service: str, operation: str) -> _PageConfig | None:
    """botocore's paginator configuration for ``operation``, or None when it has none."""
    with _botocore_lock:
        model = shared_botocore_session().get_paginator_model(service)
    try:
        cfg = model.get_paginator(operation)
    except ValueError:
        return None

    def _tuple(value: Any) -> tuple[str, ...]:
        return tuple(value) if isinstance(value, list) else (value,)

    return _PageConfig(
        input_tokens=_tuple(cfg["input_token"]),
        output_tokens=_tuple(cfg["output_token"]),
        more_results=cfg.get("more_results"),
        limit_key=cfg.get("limit_key"),
    )


def _page_config(service: str, operation: str, pagination: Pagination) -> _PageConfig | None:
    if pagination is None:
        return None
    if isinstance(pagination, PageSpec):
        return _PageConfig(
            (pagination.input_token,), (pagination.output_token,), pagination.more_results, None
        )
    if pagination == BOTOCORE:
        cfg = botocore_page_config(service, operation)
        if cfg is None:
            raise ValueError(f"{service}.{operation}: declared paginated by botocore, which has no paginator")
        return cfg
    raise ValueError(f"unknown pagination {pagination!r}")


# From this many listed resources on, a type whose tags the tagging API serves reads them in bulk.
BULK_TAGS_MIN_ITEMS = 2


class CollectionStopped(Exception):
    """A call not made because its shard is being abandoned (its time limit fired in another thread)."""


# ------------------------------------------------------------------------------------- context
@dataclass(slots=True)
class _SharedRead:
    """One Tagging API read shared by a shard's types: its answer or its error, once."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tags: dict[str, dict[str, str]] | None = None
    error: Exception | None = None


@dataclass(slots=True)
class CallStats:
    """Thread-safe counters of API calls (every attempt), retries and throttles, in total and per API family."""

    api_calls: int = 0
    retries: int = 0
    throttles: int = 0
    by_family: dict[str, dict[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _family(self, family: str) -> dict[str, int]:
        counts = self.by_family.get(family)
        if counts is None:
            counts = self.by_family[family] = {"calls": 0, "retries": 0, "throttles": 0}
        return counts

    def add_call(self, family: str = "other") -> None:
        with self._lock:
            self.api_calls += 1
            self._family(family)["calls"] += 1

    def add_retry(self, exc: BaseException, attempt: int, sleep: float, family: str = "other") -> None:
        log.info("retrying after %s (attempt %d, sleeping %.2fs)", error_code(exc), attempt, sleep)
        with self._lock:
            self.retries += 1
            self._family(family)["retries"] += 1

    def add_throttle(self, family: str = "other") -> None:
        with self._lock:
            self.throttles += 1
            self._family(family)["throttles"] += 1


@dataclass(slots=True)
class CollectContext:
    """One account and region being collected: clients, limiter, retries, counters, thread pool.

    ``region`` is the region resources are recorded in (``global`` for global types); API calls
    for global types go to the factory's default region.
    """

    factory: ClientFactory
    account_id: str
    region: str
    limiter: RateLimiter = field(default_factory=NullLimiter)
    retry_policy: RetryPolicy = DEFAULT_POLICY
    stats: CallStats = field(default_factory=CallStats)
    executor: ThreadPoolExecutor | None = None
    page_size: int | None = None
    # Tagging API filters of every type collected in this context that reads its tags in bulk: one
    # GetResources read with all of them serves every such type (SQS, SNS, DynamoDB, Lambda... of one
    # account-region: one read, not one per type).
    bulk_filters: tuple[str, ...] = ()
    # Set when the shard is being abandoned (time limit): calls not yet made are not made.
    stop: threading.Event = field(default_factory=threading.Event)
    _bulk_reads: dict[tuple[str | None, tuple[str, ...]], _SharedRead] = field(default_factory=dict, repr=False)
    _bulk_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def api_region(self) -> str:
        """Region API calls go to when the item has no region of its own."""
        return self.factory.default_region if self.region == GLOBAL_REGION else self.region

    @property
    def partition(self) -> str:
        return partition_of(self.api_region)

    def call(
        self,
        service: str,
        api_family: str,
        operation: str,
        params: Mapping[str, Any],
        *,
        region: str | None = None,
    ) -> dict[str, Any]:
        """One API call with the limiter, counting and retries. ``region`` overrides the API region."""
        api_region = region or self.api_region
        key = limiter_key(self.account_id, region or self.region, api_family)
        method_name = xform_name(operation)
        kwargs = dict(params)

        def attempt() -> dict[str, Any]:
            if self.stop.is_set():
                raise CollectionStopped("the shard was stopped before this call")
            # Asked on each attempt: a role that cannot be assumed (now) fails this attempt, and is retried.
            client = self.factory.client(self.account_id, service, api_region)
            self.limiter.acquire(key)
            self.stats.add_call(api_family)
            try:
                response: dict[str, Any] = getattr(client, method_name)(**kwargs)
            except Exception as exc:
                # Counted on every throttled answer, the last one too (it may end the call's retries), and
                # every worker sharing this bucket slows down, not just this call.
                if is_throttling(exc):
                    self.stats.add_throttle(api_family)
                    self.limiter.note_throttle(key)
                raise
            return response

        def on_retry(exc: BaseException, attempt_number: int, sleep: float) -> None:
            self.stats.add_retry(exc, attempt_number, sleep, api_family)

        result: dict[str, Any] = retrying(self.retry_policy, on_retry)(attempt)
        return result

    def pages(
        self,
        service: str,
        api_family: str,
        operation: str,
        params: Mapping[str, Any],
        pagination: Pagination,
        *,
        region: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of ``operation``, each fetched by its own retried call, until the token ends."""
        cfg = _page_config(service, operation, pagination)
        request = dict(params)
        if cfg is not None and cfg.limit_key and page_size:
            request[cfg.limit_key] = _limit_value(service, operation, cfg.limit_key, page_size)
        seen: set[str] = set()
        while True:
            page = self.call(service, api_family, operation, request, region=region)
            yield page
            if cfg is None:
                return
            if cfg.more_results is not None and not _search(cfg.more_results, page):
                return
            tokens = [_search(expr, page) for expr in cfg.output_tokens]
            if all(t in (None, "") for t in tokens):
                return
            marker = repr(tokens)
            if marker in seen:
                raise PaginationLoopError(f"{service}.{operation} returned the same token twice: {marker}")
            seen.add(marker)
            for name, token in zip(cfg.input_tokens, tokens, strict=True):
                if token in (None, ""):
                    request.pop(name, None)
                else:
                    request[name] = token

    def tagging_api_tags(self, type_filter: str, region: str | None) -> dict[str, dict[str, str]]:
        """Tags by (normalized) ARN of every tagged resource matching ``type_filter`` in ``region``
        (None: the context's API region), from the Resource Groups Tagging API.

        When ``type_filter`` is one of the context's ``bulk_filters``, the read covers all of them and
        is made once per region for the whole context, whichever type asks first (the others wait for
        it). Its error, if any, is raised to every type that asks.
        """
        filters = self.bulk_filters if type_filter in self.bulk_filters else (type_filter,)
        with self._bulk_lock:
            read = self._bulk_reads.setdefault((region, filters), _SharedRead())
        with read.lock:  # the first type reads; the others wait for its answer
            if read.tags is None and read.error is None:
                try:
                    read.tags = self._read_tagging_api(list(filters), region)
                except Exception as exc:
                    read.error = exc
        if read.error is not None:
            raise read.error
        assert read.tags is not None
        return read.tags

    def _read_tagging_api(self, filters: list[str], region: str | None) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for page in self.pages("resourcegroupstaggingapi", "tagging", "GetResources",
                               {"ResourceTypeFilters": filters, "ResourcesPerPage": 100}, BOTOCORE, region=region):
            for mapping in page.get("ResourceTagMappingList") or []:
                found[normalize_arn(str(mapping["ResourceARN"]))] = normalize_tags(
                    mapping.get("Tags"), TagShape.KV_LIST)
        return found

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[tuple[T, R | None, BaseException | None]]:
        """Run ``fn`` on every item (in the thread pool when there is one), capturing exceptions."""

        def run(item: T) -> tuple[T, R | None, BaseException | None]:
            try:
                return item, fn(item), None
            except Exception as exc:  # one item's failure is recorded; the others go on
                reraise_interrupt(exc)
                return item, None, exc

        if self.executor is None or len(items) <= 1:
            return [run(item) for item in items]
        return list(self.executor.map(run, items))


@functools.cache
def _limit_shape(service: str, operation: str, limit_key: str) -> tuple[str, int | None, int | None]:
    with _botocore_lock:
        model = shared_botocore_session().get_service_model(service)
    input_shape = model.operation_model(operation).input_shape
    assert input_shape is not None  # a paginated operation has input
    shape = input_shape.members[limit_key]
    meta = shape.metadata
    return shape.type_name, meta.get("min"), meta.get("max")


def _limit_value(service: str, operation: str, limit_key: str, size: int) -> int | str:
    # Page-size parameters differ per API: integer or string (Route 53, CloudFront), with bounds.
    type_name, low, high = _limit_shape(service, operation, limit_key)
    if low is not None:
        size = max(size, int(low))
    if high is not None:
        size = min(size, int(high))
    return str(size) if type_name == "string" else size


# ---------------------------------------------------------------------------- item primitives
_PLAIN_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@functools.cache
def _compiled_path(path: str) -> Callable[[Any], Any]:
    """``path`` as a function of the data. Most registry paths are plain field names (``InstanceId``,
    ``State.Name``): those are dictionary lookups with JMESPath's semantics (a missing key or a non-object
    gives None) instead of a JMESPath parse and tree walk, which was ~15% of a shard's collection CPU."""
    if path == "@":
        return lambda data: data
    if _PLAIN_PATH.fullmatch(path):
        keys = path.split(".")

        def lookup(data: Any) -> Any:
            for key in keys:
                if not isinstance(data, dict):
                    return None
                data = data.get(key)
            return data

        return lookup
    search: Callable[[Any], Any] = jmespath.compile(path).search
    return search


def _search(path: str, data: Any) -> Any:
    return _compiled_path(path)(data)


def _transform(value: Any, how: Transform | None) -> Any:
    if value is None or how is None:
        return value
    text = str(value)
    if how is Transform.BASENAME:
        return text.rstrip("/").rsplit("/", 1)[-1]
    if how is Transform.AFTER_LAST_COLON:
        return text.rsplit(":", 1)[-1]
    raise ValueError(f"unknown transform {how!r}")


SYSTEM_TAG_PREFIX = "aws:"


def split_system_tags(tags: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(user tags, AWS-set tags). Keys starting with ``aws:`` (CloudFormation stack, Auto Scaling group)
    are written by AWS, cannot be changed by users and count against no tag policy, so they are kept
    apart (in ``attributes["system_tags"]``) instead of being judged as user tags."""
    user: dict[str, str] = {}
    system: dict[str, str] = {}
    for key, value in tags.items():
        (system if key.lower().startswith(SYSTEM_TAG_PREFIX) else user)[key] = value
    return user, system


def normalize_tags(
    raw: Any, shape: TagShape, key_field: str = "Key", value_field: str = "Value"
) -> dict[str, str]:
    """Tags as ``{key: value}``; a missing or null value becomes "" (moto omits empty S3 values)."""
    if not raw:
        return {}
    if shape is TagShape.DICT:
        return {str(k): "" if v is None else str(v) for k, v in dict(raw).items()}
    tags: dict[str, str] = {}
    for entry in raw:
        key = entry.get(key_field)
        if key is None:
            continue
        value = entry.get(value_field)
        tags[str(key)] = "" if value is None else str(value)
    return tags


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(slots=True)
class _Identity:
    arn: str
    resource_id: str
    name: str | None
    region: str  # region recorded on the Resource


def _item_region(ctx: CollectContext, item: Item) -> str:
    return str(item.get(_REGION) or ctx.region)


def identity_of(ctx: CollectContext, info: ResourceTypeInfo, item: Item) -> _Identity:
    """ARN, id, name and region of one item; raises ``KeyError`` when the item lacks the fields."""
    region = _item_region(ctx, item)
    raw_id = _transform(_search(info.id_field, item), info.id_transform) if info.id_field else None
    name = _transform(_search(info.name_field, item), info.name_transform) if info.name_field else None
    if info.arn_field:
        arn = _search(info.arn_field, item)
    else:
        assert info.arn_template is not None  # guaranteed by validate_info
        if (info.id_field and raw_id is None) or (
            info.name_field and "{name}" in info.arn_template and not name
        ):
            raise KeyError(f"{info.resource_type}: item lacks the fields of its ARN template")
        arn = info.arn_template.format(
            partition=partition_of(region if region != GLOBAL_REGION else ctx.api_region),
            region="" if region == GLOBAL_REGION else region,
            account=ctx.account_id,
            id=raw_id,
            name=name,
            parent=item.get(_PARENT),
            item=item,
        )
    if not arn:
        raise KeyError(f"{info.resource_type}: item has no ARN at {info.arn_field!r}")
    resource_id = str(raw_id) if raw_id is not None else parse_arn(str(arn)).resource_id
    return _Identity(str(arn), resource_id, str(name) if name else None, region)


def _resolve(ref: Ref, item: Item, ident: _Identity | None) -> Any:
    if ref == "@parent":
        return item.get(_PARENT)
    if ref == "@region":
        return item.get(_REGION)
    if ref in ("@arn", "@id", "@name"):
        if ident is None:
            raise ValueError(f"{ref} is not known before the item's identity")
        return {"@arn": ident.arn, "@id": ident.resource_id, "@name": ident.name}[ref]
    return _search(ref, item)


def _params(
    refs: Mapping[str, Ref], static: Mapping[str, Any], item: Item, ident: _Identity | None
) -> dict[str, Any]:
    params = dict(static)
    params.update({name: _resolve(ref, item, ident) for name, ref in refs.items()})
    return params


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


# --------------------------------------------------------------------------------- one type run
@dataclass(slots=True)
class _Pending:
    item: Item
    ident: _Identity
    tags: dict[str, str] | None = None


@dataclass(slots=True)
class TypeOutcome:
    """Resources of one type and the failures met while collecting them."""

    resources: list[Resource] = field(default_factory=list)
    failures: list[CollectFailure] = field(default_factory=list)
    excluded: int = 0


class TypeRun:
    """Collects one resource type in one context: the stages the shape collectors compose."""

    def __init__(self, ctx: CollectContext, info: ResourceTypeInfo, wanted_arns: Iterable[str] | None = None):
        self.ctx = ctx
        self.info = info
        self.wanted = {normalize_arn(a) for a in wanted_arns} if wanted_arns is not None else None
        self.outcome = TypeOutcome()
        # (stage, code) -> (count, example resources, first exception)
        self._errors: dict[tuple[str, str], tuple[int, list[str], BaseException]] = {}

    # -- helpers
    def _call(self, operation: str, params: Mapping[str, Any], region: str | None = None) -> dict[str, Any]:
        return self.ctx.call(self.info.service, self.info.api_family, operation, params, region=region)

    def _pages(
        self,
        operation: str,
        params: Mapping[str, Any],
        pagination: Pagination,
        *,
        listing: bool,
        region: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        page_size = self.ctx.page_size if listing else None
        if page_size and self.info.listing.min_page_size and operation == self.info.listing.operation:
            page_size = max(page_size, self.info.listing.min_page_size)
        return self.ctx.pages(
            self.info.service,
            self.info.api_family,
            operation,
            params,
            pagination,
            region=region,
            page_size=page_size,
        )

    def _record_error(self, stage: str, label: str, exc: BaseException) -> None:
        code = error_code(exc)
        count, examples, first = self._errors.get((stage, code), (0, [], exc))
        if len(examples) < 5:
            examples.append(label)
        self._errors[(stage, code)] = (count + 1, examples, first)
        if not isinstance(exc, ClientError):
            log.warning("%s %s of %s failed: %r", self.info.resource_type, stage, label, exc)

    def _is_missing(self, exc: BaseException, codes: Sequence[str]) -> bool:
        return isinstance(exc, ClientError) and error_code(exc) in codes

    def finish(self) -> TypeOutcome:
        """Turn per-item errors into failures and return the outcome."""
        for (stage, code), (count, examples, first) in sorted(self._errors.items()):
            more = f" (+{count - len(examples)} more)" if count > len(examples) else ""
            self.outcome.failures.append(
                CollectFailure(
                    resource_type=self.info.resource_type,
                    code=code,
                    message=(
                        f"{stage} failed for {count} resource(s), left out of the results: "
                        f"{', '.join(examples)}{more}: {first}"
                    ),
                    retryable=is_retryable(first),
                )
            )
        return self.outcome

    # -- stage 1: listing
    def _items_of(self, page: Mapping[str, Any]) -> list[Item]:
        raw = _search(self.info.listing.items_path, page) or []
        field_name = self.info.listing.scalar_field
        if field_name:
            return [{field_name: value} for value in raw]
        return [dict(entry) for entry in raw]

    def list_items(self) -> list[Item]:
        """Every item of the listing, all pages."""
        listing = self.info.listing
        items: list[Item] = []
        for page in self._pages(listing.operation, listing.params, listing.pagination, listing=True):
            items.extend(self._items_of(page))
        return items

    def list_nested_items(self) -> list[Item]:
        """Children of every parent, each item remembering its parent value under ``_parent``."""
        parent = self.info.parent
        assert parent is not None
        parent_values: list[Any] = []
        for page in self._pages(parent.operation, parent.params, parent.pagination, listing=True):
            for entry in _search(parent.items_path, page) or []:
                parent_values.append(entry if parent.value_path == "@" else _search(parent.value_path, entry))
        listing = self.info.listing

        def children(parent_value: Any) -> list[Item]:
            params = {**listing.params, parent.child_param: parent_value}
            found: list[Item] = []
            for page in self._pages(listing.operation, params, listing.pagination, listing=True):
                for item in self._items_of(page):
                    item[_PARENT] = parent_value
                    found.append(item)
            return found

        items: list[Item] = []
        for parent_value, result, exc in self.ctx.map(children, parent_values):
            if exc is not None:
                self._record_error(listing.operation, str(parent_value), exc)
            elif result is not None:
                items.extend(result)
        return items

    # -- stage 2: filters
    def prefilter(self, items: list[Item]) -> list[Item]:
        """Drop items whose ARN is already computable and not wanted (targeted lookups)."""
        if self.wanted is None:
            return items
        kept = []
        for item in items:
            try:
                arn = identity_of(self.ctx, self.info, item).arn
            except (KeyError, ValueError, TypeError):
                kept.append(item)  # ARN only known after describe
                continue
            if normalize_arn(arn) in self.wanted:
                kept.append(item)
        return kept

    def exclude(self, items: list[Item]) -> list[Item]:
        """Drop items matching the type's exclusion rules (terminated, deleted, AWS-managed)."""
        if not self.info.exclude:
            return items
        kept = []
        for item in items:
            if any(_search(rule.path, item) in rule.values for rule in self.info.exclude):
                self.outcome.excluded += 1
            else:
                kept.append(item)
        return kept

    # -- stage 3: describe
    def describe(self, items: list[Item]) -> list[Item]:
        """Details per item (merged in) or per batch (replacing the batch's items)."""
        spec = self.info.describe
        assert spec is not None
        if spec.batch_param is None:

            def one(item: Item) -> Item | None:
                try:
                    response = self._call(
                        spec.operation, _params(spec.params, spec.static_params, item, None)
                    )
                except ClientError as exc:
                    if self._is_missing(exc, spec.missing_codes):
                        return None
                    raise
                detail = _search(spec.result_path, response)
                if detail is None:
                    return None
                return {**item, **detail}

            described: list[Item] = []
            for item, result, exc in self.ctx.map(one, items):
                if exc is not None:
                    self._record_error(spec.operation, _label(item), exc)
                elif result is not None:
                    described.append(result)
            return described

        assert spec.batch_ref is not None
        batch_ref, batch_param = spec.batch_ref, spec.batch_param
        by_parent: dict[Any, list[Item]] = defaultdict(list)
        for item in items:
            by_parent[item.get(_PARENT)].append(item)
        batches = [batch for group in by_parent.values() for batch in _chunks(group, spec.batch_size)]

        def many(batch: Sequence[Item]) -> list[Item]:
            first = batch[0]
            params = _params(spec.params, spec.static_params, first, None)
            params[batch_param] = [_resolve(batch_ref, it, None) for it in batch]
            response = self._call(spec.operation, params)
            results = []
            for detail in _search(spec.result_path, response) or []:
                merged = dict(detail)
                if _PARENT in first:
                    merged[_PARENT] = first[_PARENT]
                results.append(merged)
            return results

        out: list[Item] = []
        for batch, batch_result, batch_exc in self.ctx.map(many, batches):
            if batch_exc is not None:
                for it in batch:
                    self._record_error(spec.operation, _label(it), batch_exc)
            elif batch_result is not None:
                out.extend(batch_result)
        return out

    # -- stage 4: region lookup (global listings whose items live in regions)
    def locate(self, items: list[Item]) -> list[Item]:
        """Set ``_region`` on every item from the region lookup call."""
        spec = self.info.region_lookup
        assert spec is not None

        def one(item: Item) -> Item | None:
            ident = identity_of(self.ctx, self.info, item)
            try:
                response = self._call(spec.operation, _params(spec.params, {}, item, ident))
            except ClientError as exc:
                if self._is_missing(exc, spec.missing_codes):
                    return None
                raise
            region = _search(spec.result_path, response) or spec.default_region
            region = spec.aliases.get(region, region)
            return {**item, _REGION: region}

        located: list[Item] = []
        for item, result, exc in self.ctx.map(one, items):
            if exc is not None:
                self._record_error(spec.operation, _label(item), exc)
            elif result is not None:
                located.append(result)
        return located

    # -- stage 5: identity
    def identify(self, items: list[Item]) -> list[_Pending]:
        """ARN/id/name of every item; unwanted ARNs (targeted lookups) are dropped here."""
        pending = []
        for item in items:
            try:
                ident = identity_of(self.ctx, self.info, item)
            except (KeyError, ValueError, TypeError) as exc:
                self._record_error("identity", _label(item), exc)
                continue
            if self.wanted is not None and normalize_arn(ident.arn) not in self.wanted:
                continue
            pending.append(_Pending(item, ident))
        return pending

    # -- stage 6: tags
    def tags(self, pending: list[_Pending]) -> list[_Pending]:
        """Attach tags from the item, a per-item call or a batched call."""
        spec = self.info.tags
        if spec.source is TagSource.INLINE:
            for p in pending:
                p.tags = normalize_tags(
                    _search(spec.path, p.item), spec.shape, spec.key_field, spec.value_field
                )
            return pending
        if spec.source is TagSource.PER_ITEM:
            # Targeted lookups (a few wanted ARNs) stay per item: the bulk read pages through every
            # tagged resource of the type in the region.
            if spec.tagging_api_filter and self.wanted is None and len(pending) >= BULK_TAGS_MIN_ITEMS:
                return self._tags_from_tagging_api(pending, spec.tagging_api_filter)
            return self._tags_per_item(pending)
        return self._tags_batched(pending)

    def _tags_from_tagging_api(self, pending: list[_Pending], type_filter: str) -> list[_Pending]:
        """Tags of many listed resources from the Resource Groups Tagging API, one page per 100 tagged
        resources (per region for types whose items live in their own region, as S3 buckets do).

        The API lists only resources that carry (or carried) tags, so a listed resource it does not
        return has none. When the API cannot be used here (denied, not offered in the region) the
        type falls back to its own per-item tag calls for that region.
        """
        spec = self.info.tags
        by_region: dict[str | None, list[_Pending]] = {}
        for p in pending:
            region = p.ident.region if spec.in_item_region and p.ident.region != GLOBAL_REGION else None
            by_region.setdefault(region, []).append(p)
        done: list[_Pending] = []
        for region, group in by_region.items():
            try:
                found = self.ctx.tagging_api_tags(type_filter, region)
            except ClientError as exc:
                if is_retryable(exc):  # throttled past its retries: the shard is run again, not 100x the calls
                    raise
                log.info("tagging API unavailable for %s in %s (%s); reading tags per item",
                         self.info.resource_type, region or self.ctx.api_region, error_code(exc))
                done.extend(self._tags_per_item(group))
                continue
            for p in group:
                p.tags = found.get(normalize_arn(p.ident.arn), {})
                done.append(p)
        return done

    def _tags_per_item(self, pending: list[_Pending]) -> list[_Pending]:
        spec = self.info.tags
        assert spec.operation is not None
        operation = spec.operation

        def one(p: _Pending) -> dict[str, str] | None:
            region = p.ident.region if spec.in_item_region and p.ident.region != GLOBAL_REGION else None
            params = _params(spec.params, spec.static_params, p.item, p.ident)
            tags: dict[str, str] = {}
            try:
                for page in self._pages(operation, params, spec.pagination, listing=False, region=region):
                    tags.update(
                        normalize_tags(_search(spec.path, page), spec.shape, spec.key_field, spec.value_field)
                    )
            except ClientError as exc:
                if self._is_missing(exc, spec.empty_codes):
                    return {}
                if self._is_missing(exc, spec.missing_codes):
                    return None
                raise
            return tags

        done: list[_Pending] = []
        for p, result, exc in self.ctx.map(one, pending):
            if exc is not None:
                self._record_error(operation, p.ident.arn, exc)
            elif result is not None:
                p.tags = result
                done.append(p)
        return done

    def _tags_batched(self, pending: list[_Pending]) -> list[_Pending]:
        spec = self.info.tags
        assert (
            spec.operation
            and spec.batch_param
            and spec.batch_ref
            and spec.result_path
            and spec.batch_match_path
        )
        operation, batch_param, batch_ref = spec.operation, spec.batch_param, spec.batch_ref
        result_path, match_path = spec.result_path, spec.batch_match_path

        def many(batch: Sequence[_Pending]) -> dict[str, dict[str, str]]:
            params = _params(spec.params, spec.static_params, batch[0].item, batch[0].ident)
            params[batch_param] = [_resolve(batch_ref, p.item, p.ident) for p in batch]
            response = self._call(operation, params)
            found: dict[str, dict[str, str]] = {}
            for entry in _search(result_path, response) or []:
                key = _search(match_path, entry)
                found[str(key)] = normalize_tags(
                    _search(spec.path, entry), spec.shape, spec.key_field, spec.value_field
                )
            return found

        done: list[_Pending] = []
        for batch, result, exc in self.ctx.map(many, list(_chunks(pending, spec.batch_size))):
            for p in batch:
                if exc is not None or result is None:
                    self._record_error(operation, p.ident.arn, exc or RuntimeError("no answer"))
                    continue
                # These APIs answer one entry per requested resource, an empty list when untagged;
                # an absent entry is read the same way.
                p.tags = result.get(str(_resolve(batch_ref, p.item, p.ident)), {})
                done.append(p)
        return done

    # -- stage 7: resources
    def emit(self, pending: list[_Pending]) -> None:
        """Build ``Resource`` objects from identified, tagged items."""
        info = self.info
        for p in pending:
            tags, system_tags = split_system_tags(p.tags or {})
            name = p.ident.name or (tags.get(info.name_from_tag) if info.name_from_tag else None) or None
            attributes: dict[str, Any] = {"system_tags": system_tags} if system_tags else {}
            for attr, path in info.attributes.items():
                value = _search(path, p.item)
                if value is not None and value != "":
                    attributes[attr] = _jsonable(value)
            self.outcome.resources.append(
                Resource(
                    arn=p.ident.arn,
                    resource_id=p.ident.resource_id,
                    resource_type=info.resource_type,
                    account_id=self.ctx.account_id,
                    region=p.ident.region,
                    tags=tags,
                    name=name,
                    attributes=attributes,
                )
            )


def _label(item: Item) -> str:
    # Something a human can find the item by: its first string field (usually its id or ARN).
    for key, value in item.items():
        if key != _PARENT and isinstance(value, str):
            return value
    return repr(item)[:80]


def normalize_arn(arn: str) -> str:
    """ARN form used for matching: log-group ARNs lose DescribeLogGroups' trailing ``:*``."""
    return arn[:-2] if arn.endswith(":*") else arn


# ---------------------------------------------------------------------------- shape collectors
ShapeCollector = Callable[[TypeRun], None]
SHAPE_COLLECTORS: dict[CollectorShape, ShapeCollector] = {}


def shape_collector(shape: CollectorShape) -> Callable[[ShapeCollector], ShapeCollector]:
    """Register the generic collector of one API shape."""

    def register(fn: ShapeCollector) -> ShapeCollector:
        if shape in SHAPE_COLLECTORS:
            raise ValueError(f"shape {shape} has two collectors")
        SHAPE_COLLECTORS[shape] = fn
        return fn

    return register


@shape_collector(CollectorShape.DESCRIBE_INLINE_TAGS)
def collect_describe_inline_tags(run: TypeRun) -> None:
    """One paginated describe call returns complete items, tags included."""
    items = run.exclude(run.list_items())
    run.emit(run.tags(run.identify(items)))


@shape_collector(CollectorShape.LIST_THEN_TAG)
def collect_list_then_tag(run: TypeRun) -> None:
    """A paginated list, then one tag call per item or per batch of items."""
    items = run.exclude(run.list_items())
    run.emit(run.tags(run.identify(items)))


@shape_collector(CollectorShape.LIST_THEN_DESCRIBE)
def collect_list_then_describe(run: TypeRun) -> None:
    """A paginated list of ids, a describe call per item or batch, then tags."""
    items = run.prefilter(run.list_items())
    items = run.exclude(run.describe(items))
    run.emit(run.tags(run.identify(items)))


@shape_collector(CollectorShape.NESTED_LIST)
def collect_nested_list(run: TypeRun) -> None:
    """Parents, children per parent, an optional describe, then tags."""
    items = run.prefilter(run.list_nested_items())
    if run.info.describe is not None:
        items = run.describe(items)
    items = run.exclude(items)
    run.emit(run.tags(run.identify(items)))


@shape_collector(CollectorShape.GLOBAL_LIST_LOCATE)
def collect_global_list_locate(run: TypeRun) -> None:
    """A global list; each item's region is looked up, and its tags read in that region."""
    items = run.prefilter(run.exclude(run.list_items()))
    located = run.locate(items)
    run.emit(run.tags(run.identify(located)))


def run_type(
    ctx: CollectContext, info: ResourceTypeInfo, wanted_arns: Iterable[str] | None = None
) -> TypeOutcome:
    """Collect one type with its shape's collector. Listing failures raise; per-item ones are recorded."""
    run = TypeRun(ctx, info, wanted_arns)
    SHAPE_COLLECTORS[info.shape](run)
    return run.finish()
