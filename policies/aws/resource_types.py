"""Which resource types AWS Organizations tag policies support, kept as data in ``policies/data``.

``service:ALL_SUPPORTED`` and ``service:*`` in a tag policy mean "every type of this service that tag
policies support"; :func:`expand_resource_types` turns them into that list and
:func:`compress_resource_types` turns a complete list back into ``service:ALL_SUPPORTED``. The data
file is read on first use (never at import) and cached.

A service the data file does not know keeps its wildcard (``foo:*``) instead of expanding to
nothing: dropping it would silently switch a rule off, while our engine already treats ``foo:*`` as
"every type of foo".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = [
    "DATA_FILE",
    "SERVICE_WILDCARDS",
    "all_supported_types",
    "compress_resource_types",
    "data_note",
    "expand_resource_types",
    "is_supported_resource_type",
    "supported_resource_types",
]

DATA_FILE = "aws_tag_policy_resource_types.json"
# AWS spells "every supported type of the service" both ways; ALL_SUPPORTED is the current spelling.
SERVICE_WILDCARDS = frozenset({"*", "ALL_SUPPORTED"})
ALL_SUPPORTED = "ALL_SUPPORTED"


@cache
def _data() -> Mapping[str, Any]:
    text = resources.files("policies").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


@cache
def supported_resource_types() -> Mapping[str, tuple[str, ...]]:
    """Service prefix -> the resource types tag policies support for it (AWS capitalization)."""
    services: Mapping[str, list[str]] = _data()["services"]
    return MappingProxyType({service: tuple(types) for service, types in services.items()})


@cache
def all_supported_types() -> tuple[str, ...]:
    """Every supported resource type, services in alphabetical order."""
    return tuple(t for types in supported_resource_types().values() for t in types)


@cache
def _folded_types() -> frozenset[str]:
    return frozenset(t.casefold() for t in all_supported_types())


def data_note() -> str:
    """Where the data file's list comes from and when it was compiled."""
    note: str = _data()["note"]
    return note


def is_supported_resource_type(resource_type: str) -> bool:
    """Whether tag policies support ``resource_type`` (``service:resource``, compared ignoring case)."""
    return resource_type.casefold() in _folded_types()


def _is_wildcard(entry: str) -> tuple[str, bool]:
    service, _, resource = entry.partition(":")
    return service, resource in SERVICE_WILDCARDS


def expand_resource_types(entries: Iterable[str]) -> list[str]:
    """``entries`` with ``service:ALL_SUPPORTED`` / ``service:*`` replaced by the service's types.

    Order is kept and duplicates (ignoring case) dropped. A wildcard for a service the data file
    does not know stays as written (see the module docstring).
    """
    known = supported_resource_types()
    out: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        service, wildcard = _is_wildcard(entry)
        expanded = known.get(service, (entry,)) if wildcard else (entry,)
        for rtype in expanded:
            folded = rtype.casefold()
            if folded not in seen:
                seen.add(folded)
                out.append(rtype)
    return out


def compress_resource_types(types: Iterable[str]) -> list[str]:
    """The inverse of :func:`expand_resource_types`: a service whose every supported type is listed
    (or that is given as a wildcard) becomes one ``service:ALL_SUPPORTED``; other entries stay.

    The result keeps the order of first appearance of each service or type.
    """
    items = list(types)
    known = supported_resource_types()
    listed: dict[str, set[str]] = {}
    for entry in items:
        service, wildcard = _is_wildcard(entry)
        listed.setdefault(service, set()).add(ALL_SUPPORTED if wildcard else entry.casefold())
    complete = {service for service, names in listed.items()
                if ALL_SUPPORTED in names
                or (service in known and {t.casefold() for t in known[service]} <= names)}
    out: list[str] = []
    seen: set[str] = set()
    for entry in items:
        service, _ = _is_wildcard(entry)
        item = f"{service}:{ALL_SUPPORTED}" if service in complete else entry
        if item.casefold() not in seen:
            seen.add(item.casefold())
            out.append(item)
    return out
