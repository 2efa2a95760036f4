"""Guards calls per principal: rate limit, daily quotas, identical-call loops and input size.

Both front doors call ``AgentGuard`` once per call (the MCP server's ``call_tool`` and the HTTP gateway's
app-wide dependency), before any work starts:

- **Rate**: at most ``FINOPS_AGENT_CALLS_PER_MINUTE`` calls per principal per minute, MCP and REST together.
- **Daily quota** per tool class (UTC day): ``read`` (status, lists, reports), ``write`` (tagging requests,
  approvals, schedules, API keys) and ``expensive`` (scans, live cloud reads, cost queries, policy syncs).
- **Loops**: the same principal calling the same tool with identical arguments more than
  ``FINOPS_AGENT_REPEAT_LIMIT`` times within ``FINOPS_AGENT_REPEAT_WINDOW_SECONDS`` is told it is looping and
  what to do instead. Polling tools (``get_scan_status``, ``get_tagging_request``, ``check_tag_compliance``
  with a ``scan_id``, and REST GETs) follow running jobs by repeating the same call, so they get the higher
  ``FINOPS_AGENT_POLL_REPEAT_LIMIT`` (30 a minute: one call every 2 s) rather than an exemption: an agent
  polling a finished scan forever is still a loop, while one using ``wait_seconds`` never gets near it.
- **Input size**: arguments (and REST bodies) as JSON at most ``FINOPS_AGENT_MAX_BODY_BYTES``; each string
  at most ``FINOPS_AGENT_MAX_STRING_CHARS`` and each list at most ``FINOPS_AGENT_MAX_LIST_ITEMS`` items;
  documents (a ``policy`` argument) at most ``FINOPS_AGENT_MAX_DOCUMENT_BYTES``.

Counters live in Redis in production (``REDIS_URL``, else a ``redis://`` broker URL) so every gateway replica
shares them, and in the process in embedded mode (``LocalCounterStore``, same interface). A Redis outage
lets calls through (logged): the guard protects the system from runaway callers, it is not access control.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from services.config import Settings
from services.errors import InvalidInput, PayloadTooLarge, RateLimited
from services.runtime import Runtime

log = logging.getLogger(__name__)

_KEY_PREFIX = "finops:agent:"
_MAX_DEPTH = 32
#: Arguments that carry a whole document: measured as a whole against agent_max_document_bytes.
DOCUMENT_FIELDS = frozenset({"policy"})


class ToolClass(StrEnum):
    """What a call costs, for the daily quotas."""

    READ = "read"
    WRITE = "write"
    EXPENSIVE = "expensive"


_QUOTA_SETTING = {ToolClass.READ: "agent_daily_read_calls", ToolClass.WRITE: "agent_daily_write_calls",
                  ToolClass.EXPENSIVE: "agent_daily_expensive_calls"}

# MCP tools by class; every other tool reads stored results (READ).
_EXPENSIVE_TOOLS = frozenset({
    "check_tag_compliance", "find_untagged_resources",  # start a scan of the estate
    "validate_resource_tags",  # reads the cloud live
    "get_cost_attribution_gap",  # Cost Explorer bills each request
    "import_aws_tag_policy",  # walks the whole organization
})
_WRITE_TOOLS = frozenset({
    "bulk_tag_resources", "approve_bulk_tagging_request", "schedule_compliance_audit", "update_audit_schedule",
    "delete_audit_schedule"})
_POLLING_TOOLS = frozenset({"get_scan_status", "get_tagging_request"})


def mcp_tool_class(name: str, arguments: Mapping[str, Any]) -> tuple[ToolClass, bool]:
    """``(class, polling)`` of an MCP tool call. Reading an existing scan through check_tag_compliance
    (``scan_id`` given) is a poll of stored results, not a new scan."""
    if name == "check_tag_compliance" and arguments.get("scan_id"):
        return ToolClass.READ, True
    if name in _EXPENSIVE_TOOLS:
        return ToolClass.EXPENSIVE, False
    if name in _WRITE_TOOLS:
        return ToolClass.WRITE, False
    return ToolClass.READ, name in _POLLING_TOOLS


class CounterStore(Protocol):
    """Counters that expire: the only state the guard keeps."""

    def hit(self, key: str, window_seconds: float) -> tuple[int, float]:
        """Add one to ``key`` (created with a ``window_seconds`` lifetime when absent); returns the count and
        the seconds left until the key expires."""
        ...


class LocalCounterStore:
    """In-process counters for the embedded mode (one process serves every caller)."""

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window_seconds: float) -> tuple[int, float]:
        now = time.monotonic()
        with self._lock:
            count, expires = self._counters.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + window_seconds
            self._counters[key] = (count + 1, expires)
            if len(self._counters) > 50_000:  # many principals x tools x argument sets: drop the expired ones
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
            return count + 1, expires - now


class RedisCounterStore:
    """Counters shared by every gateway replica: ``SET NX EX`` starts the window, ``INCR`` keeps its expiry."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def hit(self, key: str, window_seconds: float) -> tuple[int, float]:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, 0, px=max(1, int(window_seconds * 1000)), nx=True)
        pipe.incr(key)
        pipe.pttl(key)
        _, count, ttl_ms = pipe.execute()
        return int(count), max(0.0, int(ttl_ms) / 1000)


def store_for(settings: Settings) -> CounterStore:
    """Redis when the deployment has one (REDIS_URL, else a redis:// broker), else in-process counters."""
    url = settings.redis_url
    broker = settings.celery_broker_url or ""
    if not url and broker.startswith(("redis://", "rediss://")):
        url = broker
    if not url:
        return LocalCounterStore()
    import redis

    return RedisCounterStore(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))


def _duration(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds < 120:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


def _env(setting: str) -> str:
    return f"FINOPS_{setting.upper()}"


def arguments_digest(arguments: Any) -> str:
    """A stable digest of call arguments (key order and whitespace do not matter)."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class AgentGuard:
    """Checks one call of one principal against the limits of ``settings``; raises RateLimited or an input
    error naming the field. Thread-safe (the store is)."""

    def __init__(self, store: CounterStore) -> None:
        self.store = store
        self._warned_at = 0.0

    def _hit(self, key: str, window_seconds: float) -> tuple[int, float] | None:
        try:
            return self.store.hit(_KEY_PREFIX + key, window_seconds)
        except Exception as exc:  # a counter outage must not take the API down (see module docstring)
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("agent limits not enforced: counter store unavailable (%s)", type(exc).__name__)
            return None

    def check(self, settings: Settings, *, principal: str, tool: str, arguments: Any, tool_class: ToolClass,
              polling: bool = False) -> None:
        """Count the call; raise RateLimited when it crosses the rate, the daily quota or the loop limit."""
        self._check_rate(settings, principal)
        self._check_quota(settings, principal, tool_class)
        self._check_loop(settings, principal, tool, arguments, polling)

    def _check_rate(self, settings: Settings, principal: str) -> None:
        limit = settings.agent_calls_per_minute
        if not limit:
            return
        hit = self._hit(f"rate:{principal}", 60)
        if hit and hit[0] > limit:
            wait = hit[1]
            raise RateLimited(
                f"rate limit reached: {principal} may make at most {limit} calls per minute; the limit resets in "
                f"{_duration(wait)}", retry_after_seconds=wait,
                fix=f"wait {_duration(wait)}, then make fewer, larger calls (page with bigger limits, batch ARNs); "
                    f"the operator can raise {_env('agent_calls_per_minute')}",
                details={"limit": limit, "window": "minute", "setting": _env("agent_calls_per_minute")})

    def _check_quota(self, settings: Settings, principal: str, tool_class: ToolClass) -> None:
        setting = _QUOTA_SETTING[tool_class]
        limit = int(getattr(settings, setting))
        if not limit:
            return
        now = datetime.now(UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        hit = self._hit(f"quota:{tool_class.value}:{principal}:{now:%Y%m%d}", (midnight - now).total_seconds())
        if hit and hit[0] > limit:
            wait = hit[1]
            raise RateLimited(
                f"daily quota reached: {principal} may make at most {limit} {tool_class.value} calls per day; the "
                f"quota resets at 00:00 UTC, in {_duration(wait)}", retry_after_seconds=wait,
                fix=f"continue after 00:00 UTC, or reuse answers already received (e.g. read an existing scan by "
                    f"scan_id instead of starting a new one); the operator can raise {_env(setting)}",
                details={"limit": limit, "window": "day", "class": tool_class.value, "setting": _env(setting)})

    def _check_loop(self, settings: Settings, principal: str, tool: str, arguments: Any, polling: bool) -> None:
        setting = "agent_poll_repeat_limit" if polling else "agent_repeat_limit"
        limit = int(getattr(settings, setting))
        if not limit:
            return
        window = settings.agent_repeat_window_seconds
        hit = self._hit(f"loop:{principal}:{tool}:{arguments_digest(arguments)}", window)
        if not hit or hit[0] <= limit:
            return
        wait = hit[1]
        if polling:
            advice = ("poll less often: pass wait_seconds (up to 45) so one call waits for progress, and stop once "
                      "the status is succeeded, partial, failed or cancelled (or applied/failed for a request)")
        else:
            advice = ("repeating the call will not change its answer: use the answer you already have, change the "
                      "arguments (e.g. next_cursor to page, other filters), or ask the user how to proceed")
        raise RateLimited(
            f"loop detected: {tool} was called {hit[0]} times with identical arguments within {window} s (limit "
            f"{limit}); identical calls are refused for {_duration(wait)}", retry_after_seconds=wait,
            field="arguments", fix=f"{advice}; the operator can change {_env(setting)}",
            details={"limit": limit, "window_seconds": window, "tool": tool, "setting": _env(setting)})


def check_input_size(arguments: Any, settings: Settings, *, root: str = "arguments") -> None:
    """Raise PayloadTooLarge (the whole input) or InvalidInput (one field, named as ``a.b[3]``) when the input
    exceeds the size limits. One mechanism for every tool and route: a new parameter is covered without
    declaring anything."""
    try:
        size = len(json.dumps(arguments, separators=(",", ":"), default=str).encode())
    except (TypeError, ValueError, RecursionError):
        raise InvalidInput("the input cannot be read as JSON", field=root,
                           fix="send JSON objects, lists, strings and numbers only") from None
    if size > settings.agent_max_body_bytes:
        raise PayloadTooLarge(
            f"the input is {size:,} bytes; at most {settings.agent_max_body_bytes:,} are accepted", field=root,
            fix="send fewer items per call (split the list over several calls, or use a scan filter instead of "
                f"listing ARNs); the operator can raise {_env('agent_max_body_bytes')}")
    _walk(arguments, settings, "", 0)


def _field(path: str) -> str:
    return path or "arguments"


def _walk(value: Any, settings: Settings, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidInput(f"the input nests deeper than {_MAX_DEPTH} levels", field=_field(path),
                           fix="flatten the value; no parameter needs this depth")
    if isinstance(value, str):
        if len(value) > settings.agent_max_string_chars:
            raise InvalidInput(f"the text is {len(value):,} characters long; at most "
                               f"{settings.agent_max_string_chars:,} are accepted", field=_field(path),
                               fix=f"shorten it; the operator can raise {_env('agent_max_string_chars')}")
        return
    if isinstance(value, list | tuple):
        if len(value) > settings.agent_max_list_items:
            raise InvalidInput(f"the list has {len(value):,} items; at most {settings.agent_max_list_items:,} are "
                               "accepted in one call", field=_field(path),
                               fix="split it over several calls; the operator can raise "
                                   f"{_env('agent_max_list_items')}")
        for i, item in enumerate(value):
            _walk(item, settings, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if depth == 0 and key in DOCUMENT_FIELDS:
                _check_document(item, settings, child)
            else:
                _walk(item, settings, child, depth + 1)


def _check_document(value: Any, settings: Settings, path: str) -> None:
    size = len((value if isinstance(value, str) else json.dumps(value, default=str)).encode())
    if size > settings.agent_max_document_bytes:
        raise InvalidInput(f"the document is {size:,} bytes; at most {settings.agent_max_document_bytes:,} are "
                           "accepted", field=path,
                           fix=f"split or trim the document; the operator can raise "
                               f"{_env('agent_max_document_bytes')}")


# One guard per Runtime (so REST and MCP of one gateway share counters, and separate runtimes, e.g. tests,
# do not): the Runtime lives as long as the process or the test that built it.
_guards: dict[int, tuple[weakref.ref[Runtime], AgentGuard]] = {}
_guards_lock = threading.Lock()


def guard_for(runtime: Runtime) -> AgentGuard:
    """The AgentGuard of ``runtime``, built on first use from its settings."""
    key = id(runtime)
    with _guards_lock:
        entry = _guards.get(key)
        if entry is not None and entry[0]() is runtime:
            return entry[1]
        guard = AgentGuard(store_for(runtime.settings))

        def forget(_ref: weakref.ref[Runtime], k: int = key) -> None:
            _guards.pop(k, None)

        _guards[key] = (weakref.ref(runtime, forget), guard)
        return guard
