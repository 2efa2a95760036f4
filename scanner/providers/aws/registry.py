"""The AWS resource-type registry: every collectable type described as data, keyed by its public name.

A type is not a function. It is a ``ResourceTypeInfo`` saying which API lists it, how pages are
followed, where the id, name, ARN and tags are, what to skip, and which IAM actions it needs. A few
generic collectors (``collectors.py``), one per API *shape*, turn that metadata into ``Resource``
objects. Adding a type means adding metadata in ``resource_types.py``; ``validate_info`` and
``tests/unit/test_registry_metadata.py`` reject incomplete or inconsistent entries.

References (``Ref``) used in call parameters: ``@arn``, ``@id``, ``@name``, ``@parent`` (the parent
item's value for nested listings) and ``@region``; any other string is a JMESPath expression
evaluated on the item being collected.
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

# A call parameter value taken from the item: "@arn", "@id", "@name", "@parent", "@region", or a
# JMESPath expression on the item.
Ref = str
REF_NAMES = frozenset({"@arn", "@id", "@name", "@parent", "@region"})

# Pagination of one operation: "botocore" follows botocore's paginator model for it; a PageSpec
# describes tokens for operations botocore has no paginator for; None means the API has one page.
BOTOCORE: Literal["botocore"] = "botocore"


class CollectorShape(StrEnum):
    """The API shapes the generic collectors handle (one collector per shape)."""

    # One paginated describe/list call returns complete items with their tags inline.
    DESCRIBE_INLINE_TAGS = "describe_inline_tags"
    # A paginated list returns items; tags need a per-item or batched tag call.
    LIST_THEN_TAG = "list_then_tag"
    # A list returns ids; a per-item or batched describe call returns the details.
    LIST_THEN_DESCRIBE = "list_then_describe"
    # Items live under parents (ECS services in clusters): list parents, then children per parent.
    NESTED_LIST = "nested_list"
    # Global list whose items each live in their own region (S3): per-item region lookup and
    # tag calls made in that region.
    GLOBAL_LIST_LOCATE = "global_list_locate"


class TagSource(StrEnum):
    """Where a type's tags come from."""

    INLINE = "inline"  # in the (listed or described) item itself
    PER_ITEM = "per_item"  # one tag call per resource
    BATCH = "batch"  # one tag call per batch of resources


class TagShape(StrEnum):
    """How tags are encoded in a response."""

    KV_LIST = "kv_list"  # [{"Key": k, "Value": v}] (field names configurable)
    DICT = "dict"  # {k: v}


class Transform(StrEnum):
    """Small string transforms for ids and names found inside URLs, paths or ARNs."""

    BASENAME = "basename"  # text after the last "/" (SQS queue URL, "/hostedzone/Z123")
    AFTER_LAST_COLON = "after_last_colon"  # text after the last ":" (SNS topic ARN)


@dataclass(frozen=True, slots=True)
class PageSpec:
    """Tokens of an operation that has no botocore paginator (same meaning as botocore's model).

    ``output_token`` is a JMESPath on the response (``Tags[-1].Key``); ``more_results``, when set,
    is a JMESPath whose falsy value ends the listing.
    """

    input_token: str
    output_token: str
    more_results: str | None = None


Pagination = Literal["botocore"] | PageSpec | None


@dataclass(frozen=True, slots=True)
class ListSpec:
    """The call that enumerates a type (or the children of one parent)."""

    operation: str  # API operation name, e.g. "DescribeInstances"
    items_path: str  # JMESPath from a page to the list of items
    params: Mapping[str, Any] = field(default_factory=dict)  # static parameters (page size, owner)
    scalar_field: str | None = None  # items are plain strings: wrap each as {scalar_field: value}
    pagination: Pagination = BOTOCORE
    # Smallest page size the API accepts when botocore's model does not say (EC2 Describe*: 5).
    min_page_size: int | None = None


@dataclass(frozen=True, slots=True)
class ParentSpec:
    """Parents whose children are the type's items (ECS clusters for ECS services)."""

    operation: str
    items_path: str
    child_param: str  # parameter of the child list call that takes the parent value
    value_path: str = "@"  # JMESPath on one parent item giving the value ("@": the item itself)
    params: Mapping[str, Any] = field(default_factory=dict)
    pagination: Pagination = BOTOCORE


@dataclass(frozen=True, slots=True)
class DescribeSpec:
    """Details of listed items. Per item (``batch_param`` unset): the result at ``result_path`` is
    merged into the item. Batched: ``batch_param`` receives up to ``batch_size`` values of
    ``batch_ref`` and the list at ``result_path`` replaces the items of that batch."""

    operation: str
    result_path: str
    params: Mapping[str, Ref] = field(default_factory=dict)
    static_params: Mapping[str, Any] = field(default_factory=dict)
    batch_param: str | None = None
    batch_ref: Ref | None = None
    batch_size: int = 1
    missing_codes: tuple[str, ...] = ()  # error codes meaning "the item is gone": drop it


@dataclass(frozen=True, slots=True)
class RegionLookupSpec:
    """Per-item call giving the region an item of a global listing lives in (S3 buckets)."""

    operation: str
    params: Mapping[str, Ref]
    result_path: str
    default_region: str = "us-east-1"  # an empty/None answer means this region
    aliases: Mapping[str, str] = field(default_factory=dict)  # legacy answers ("EU" -> eu-west-1)
    missing_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TagSpec:
    """Where a type's tags are and how they are encoded.

    INLINE: ``path`` is a JMESPath on the item. PER_ITEM: ``operation`` is called with ``params``
    for every resource, following ``pagination``; ``path`` selects tags in each page. BATCH:
    ``batch_param`` gets up to ``batch_size`` values of ``batch_ref``; ``result_path`` lists one
    entry per resource, matched back by ``batch_match_path`` and read at ``path``.
    """

    source: TagSource
    path: str
    shape: TagShape = TagShape.KV_LIST
    key_field: str = "Key"
    value_field: str = "Value"
    operation: str | None = None
    params: Mapping[str, Ref] = field(default_factory=dict)
    static_params: Mapping[str, Any] = field(default_factory=dict)
    pagination: Pagination = None
    batch_param: str | None = None
    batch_ref: Ref | None = None
    batch_size: int = 1
    result_path: str | None = None
    batch_match_path: str | None = None
    empty_codes: tuple[str, ...] = ()  # error codes meaning "no tags" (S3 NoSuchTagSet)
    missing_codes: tuple[str, ...] = ()  # error codes meaning "resource gone": drop it
    in_item_region: bool = False  # call in the item's own region (S3 buckets)
    # PER_ITEM types whose tags the Resource Groups Tagging API also serves, as its ResourceTypeFilters
    # value: several listed resources then cost one GetResources page per 100 tagged resources instead
    # of one call each. Set only where the emulator tests show both give the same tags (collectors test).
    tagging_api_filter: str | None = None


@dataclass(frozen=True, slots=True)
class Exclude:
    """Skip items whose value at ``path`` is one of ``values`` (terminated, deleted, AWS-managed)."""

    path: str
    values: tuple[Any, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ResourceTypeInfo:
    """Everything the generic collectors need to list one resource type completely.

    ``resource_type`` is the public ``service:resource`` name and the registry key. ``service`` is
    the boto3 client name; ``api_family`` keys the rate limiter; ``group`` is the shard group.
    The ARN comes from ``arn_field`` or is built from ``arn_template`` (placeholders
    ``{partition} {region} {account} {id} {name} {parent}`` and ``{item[Field]}``). ``resource_id``
    is the ``id_field`` value, else the resource part of the ARN. ``is_global`` types are collected
    once per account. ``arn_type`` is the ``service:resource`` an ARN of this type parses to when
    it differs from ``resource_type`` (OpenSearch ARNs say ``es:domain``).
    """

    resource_type: str
    service: str
    api_family: str
    group: str
    shape: CollectorShape
    listing: ListSpec
    tags: TagSpec
    iam_actions: tuple[str, ...]
    arn_field: str | None = None
    arn_template: str | None = None
    id_field: str | None = None
    id_transform: Transform | None = None
    name_field: str | None = None
    name_transform: Transform | None = None
    name_from_tag: str | None = None  # fall back to this tag for the display name (EC2 "Name")
    parent: ParentSpec | None = None
    describe: DescribeSpec | None = None
    region_lookup: RegionLookupSpec | None = None
    exclude: tuple[Exclude, ...] = ()
    is_global: bool = False
    arn_type: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute name -> JMESPath
    description: str = ""

    @property
    def arn_key(self) -> str:
        """The ``service:resource`` that parse_arn gives for ARNs of this type."""
        return self.arn_type or self.resource_type

    def operations(self) -> tuple[str, ...]:
        """Every API operation this type calls, in call order."""
        ops: list[str] = []
        if self.parent:
            ops.append(self.parent.operation)
        ops.append(self.listing.operation)
        if self.describe:
            ops.append(self.describe.operation)
        if self.region_lookup:
            ops.append(self.region_lookup.operation)
        if self.tags.operation:
            ops.append(self.tags.operation)
        return tuple(dict.fromkeys(ops))


class InvalidResourceTypeInfo(ValueError):
    """Raised by ``register`` for metadata that the generic collectors could not run."""


class UnknownResourceTypeError(ValueError):
    """A resource type name that is not registered; the message lists the valid ones."""

    def __init__(self, unknown: Iterable[str], valid: Iterable[str]) -> None:
        self.unknown = sorted(unknown)
        self.valid = sorted(valid)
        super().__init__(
            f"unknown resource type(s): {', '.join(self.unknown)}; valid types: {', '.join(self.valid)}"
        )


_TYPE_RE = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9-]+$")
_ACTION_RE = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+\*?$")
_TEMPLATE_FIELDS = frozenset({"partition", "region", "account", "id", "name", "parent", "item"})

# What each shape requires; checked at registration and by the metadata test.
_SHAPE_TAG_SOURCES: dict[CollectorShape, frozenset[TagSource]] = {
    CollectorShape.DESCRIBE_INLINE_TAGS: frozenset({TagSource.INLINE}),
    CollectorShape.LIST_THEN_TAG: frozenset({TagSource.PER_ITEM, TagSource.BATCH}),
    CollectorShape.LIST_THEN_DESCRIBE: frozenset(TagSource),
    CollectorShape.NESTED_LIST: frozenset(TagSource),
    CollectorShape.GLOBAL_LIST_LOCATE: frozenset({TagSource.PER_ITEM}),
}


def _template_fields(template: str) -> set[str]:
    names: set[str] = set()
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name:
            names.add(re.split(r"[\[.]", field_name, maxsplit=1)[0])
    return names


def _check_refs(where: str, refs: Iterable[Ref | None], problems: list[str], *, identity: bool) -> None:
    for ref in refs:
        if ref is None or not ref:
            problems.append(f"{where}: empty reference")
        elif ref.startswith("@") and ref not in REF_NAMES:
            problems.append(f"{where}: unknown reference {ref!r} (use one of {sorted(REF_NAMES)})")
        elif not identity and ref in {"@arn", "@id", "@name"}:
            problems.append(f"{where}: {ref} is not known yet at this stage; use an item field")


def validate_info(info: ResourceTypeInfo) -> list[str]:
    """Problems that would stop the generic collector from running ``info`` (empty when complete)."""
    p: list[str] = []
    rt = info.resource_type
    if not _TYPE_RE.match(rt):
        p.append(f"{rt!r}: resource type must be 'service:resource'")
    if info.arn_type is not None and not _TYPE_RE.match(info.arn_type):
        p.append(f"{rt}: arn_type must be 'service:resource'")
    for name in ("service", "api_family", "group"):
        if not getattr(info, name):
            p.append(f"{rt}: {name} is empty")
    if not isinstance(info.shape, CollectorShape):
        p.append(f"{rt}: unknown collector shape {info.shape!r}")
    if not info.iam_actions:
        p.append(f"{rt}: iam_actions is empty")
    p.extend(f"{rt}: bad IAM action {a!r}" for a in info.iam_actions if not _ACTION_RE.match(a))
    # Identity.
    if bool(info.arn_field) == bool(info.arn_template):
        p.append(f"{rt}: exactly one of arn_field / arn_template is required")
    if info.arn_template:
        used = _template_fields(info.arn_template)
        if used - _TEMPLATE_FIELDS:
            p.append(f"{rt}: arn_template uses unknown fields {sorted(used - _TEMPLATE_FIELDS)}")
        if "id" in used and not info.id_field:
            p.append(f"{rt}: arn_template uses {{id}} but id_field is not set")
        if "name" in used and not info.name_field:
            p.append(f"{rt}: arn_template uses {{name}} but name_field is not set")
        if "parent" in used and not info.parent:
            p.append(f"{rt}: arn_template uses {{parent}} but the type has no parent")
    # Listing.
    if not info.listing.operation or not info.listing.items_path:
        p.append(f"{rt}: listing needs operation and items_path")
    if info.listing.min_page_size is not None and info.listing.min_page_size < 1:
        p.append(f"{rt}: listing.min_page_size must be >= 1")
    # Shape-specific requirements.
    allowed_sources = _SHAPE_TAG_SOURCES.get(info.shape, frozenset())
    if info.tags.source not in allowed_sources:
        p.append(f"{rt}: shape {info.shape} does not take tag source {info.tags.source}")
    if info.shape is CollectorShape.LIST_THEN_DESCRIBE and info.describe is None:
        p.append(f"{rt}: shape {info.shape} needs a describe spec")
    if info.shape is CollectorShape.NESTED_LIST and info.parent is None:
        p.append(f"{rt}: shape {info.shape} needs a parent spec")
    if info.parent is not None and info.shape is not CollectorShape.NESTED_LIST:
        p.append(f"{rt}: only shape {CollectorShape.NESTED_LIST} takes a parent spec")
    if info.shape in (CollectorShape.DESCRIBE_INLINE_TAGS, CollectorShape.LIST_THEN_TAG) and info.describe:
        p.append(f"{rt}: shape {info.shape} takes no describe spec")
    if info.shape is CollectorShape.GLOBAL_LIST_LOCATE:
        if info.region_lookup is None or not info.is_global:
            p.append(f"{rt}: shape {info.shape} needs region_lookup and is_global")
    elif info.region_lookup is not None:
        p.append(f"{rt}: only shape {CollectorShape.GLOBAL_LIST_LOCATE} takes region_lookup")
    # Describe.
    d = info.describe
    if d is not None:
        if not d.operation or not d.result_path:
            p.append(f"{rt}: describe needs operation and result_path")
        _check_refs(f"{rt} describe", d.params.values(), p, identity=False)
        if d.batch_param:
            if d.batch_size < 1 or d.batch_ref is None:
                p.append(f"{rt}: batched describe needs batch_ref and batch_size >= 1")
            _check_refs(f"{rt} describe batch", [d.batch_ref], p, identity=False)
        elif not d.params:
            p.append(f"{rt}: per-item describe needs params")
    if info.region_lookup is not None:
        _check_refs(f"{rt} region_lookup", info.region_lookup.params.values(), p, identity=True)
    # Tags.
    t = info.tags
    if not t.path:
        p.append(f"{rt}: tags.path is empty")
    if t.source is TagSource.INLINE:
        if t.operation:
            p.append(f"{rt}: inline tags take no operation")
    else:
        if not t.operation:
            p.append(f"{rt}: {t.source} tags need an operation")
        _check_refs(f"{rt} tags", t.params.values(), p, identity=True)
    if t.source is TagSource.PER_ITEM and not t.params:
        p.append(f"{rt}: per-item tags need params")
    if t.source is TagSource.BATCH:
        if not (t.batch_param and t.batch_ref and t.result_path and t.batch_match_path) or t.batch_size < 1:
            p.append(f"{rt}: batch tags need batch_param, batch_ref, result_path, batch_match_path, size")
        _check_refs(f"{rt} tags batch", [t.batch_ref], p, identity=True)
    if t.shape is TagShape.KV_LIST and not (t.key_field and t.value_field):
        p.append(f"{rt}: kv_list tags need key_field and value_field")
    for ex in info.exclude:
        if not ex.path or not ex.values or not ex.reason:
            p.append(f"{rt}: exclude rules need path, values and reason")
    return p


class _Registry:
    def __init__(self) -> None:
        self._types: dict[str, ResourceTypeInfo] = {}
        self._lock = threading.Lock()

    def add(self, info: ResourceTypeInfo) -> ResourceTypeInfo:
        problems = validate_info(info)
        if problems:
            raise InvalidResourceTypeInfo("; ".join(problems))
        with self._lock:
            if info.resource_type in self._types:
                raise InvalidResourceTypeInfo(f"{info.resource_type} is registered twice")
            self._types[info.resource_type] = info
        return info


_REGISTRY = _Registry()
_loaded = False
_load_lock = threading.Lock()


def register(info: ResourceTypeInfo) -> ResourceTypeInfo:
    """Add one type to the registry (raises ``InvalidResourceTypeInfo`` on incomplete metadata)."""
    return _REGISTRY.add(info)


def _ensure_loaded() -> dict[str, ResourceTypeInfo]:
    # The built-in types live in resource_types.py, which imports this module; load it on first use
    # so that either module can be imported first.
    global _loaded
    if not _loaded:
        with _load_lock:
            if not _loaded:
                from scanner.providers.aws import resource_types  # noqa: F401

                _loaded = True
    return _REGISTRY._types


def get(resource_type: str) -> ResourceTypeInfo:
    """The metadata of ``resource_type``; raises ``UnknownResourceTypeError`` naming the valid ones."""
    types = _ensure_loaded()
    try:
        return types[resource_type]
    except KeyError:
        raise UnknownResourceTypeError([resource_type], types) from None


def resolve(resource_types: Iterable[str] | None) -> list[ResourceTypeInfo]:
    """Metadata of the given types (all types for None or ``["all"]``); unknown names all reported."""
    types = _ensure_loaded()
    names = list(resource_types) if resource_types is not None else ["all"]
    if names == ["all"]:
        return [types[n] for n in sorted(types)]
    unknown = [n for n in names if n not in types]
    if unknown:
        raise UnknownResourceTypeError(unknown, types)
    return [types[n] for n in dict.fromkeys(names)]


def all_types() -> list[str]:
    """Every registered resource type, sorted."""
    return sorted(_ensure_loaded())


def regional_types() -> list[str]:
    """Types collected once per (account, region)."""
    return sorted(n for n, i in _ensure_loaded().items() if not i.is_global)


def global_types() -> list[str]:
    """Types collected once per account (region ``global``): S3, CloudFront, Route 53."""
    return sorted(n for n, i in _ensure_loaded().items() if i.is_global)


def is_global(resource_type: str) -> bool:
    """True for types collected once per account."""
    return get(resource_type).is_global


def group_of(resource_type: str) -> str:
    """The shard group of ``resource_type``."""
    return get(resource_type).group


def type_groups() -> dict[str, tuple[str, ...]]:
    """Shard group -> its resource types (sorted)."""
    groups: dict[str, list[str]] = {}
    for name, info in sorted(_ensure_loaded().items()):
        groups.setdefault(info.group, []).append(name)
    return {g: tuple(v) for g, v in sorted(groups.items())}


class _TypeGroups(Mapping[str, tuple[str, ...]]):
    """Read-only view of ``type_groups()`` that loads the registry on first access."""

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return type_groups()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(type_groups())

    def __len__(self) -> int:
        return len(type_groups())

    def __repr__(self) -> str:
        return f"TYPE_GROUPS({type_groups()!r})"


TYPE_GROUPS: Mapping[str, tuple[str, ...]] = _TypeGroups()

# Calls made outside any type's collector: region discovery, the tagging API, identity.
DISCOVERY_IAM_ACTIONS = ("ec2:DescribeRegions", "tag:GetResources", "sts:GetCallerIdentity")


def iam_actions(resource_types: Iterable[str] | None = None, *, include_discovery: bool = True) -> list[str]:
    """Sorted union of the IAM actions the given (default: all) types need to be collected."""
    actions: set[str] = set(DISCOVERY_IAM_ACTIONS) if include_discovery else set()
    for info in resolve(resource_types):
        actions.update(info.iam_actions)
    return sorted(actions)


def type_for_arn_key(arn_key: str) -> ResourceTypeInfo | None:
    """The registered type whose ARNs parse to ``arn_key`` (``es:domain`` -> opensearch:domain)."""
    for info in _ensure_loaded().values():
        if info.arn_key == arn_key:
            return info
    return None
