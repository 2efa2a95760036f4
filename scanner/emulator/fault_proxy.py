"""A fault and latency proxy in front of the moto server: real AWS behaviour that moto lacks.

moto answers every call in a few milliseconds and never throttles, so a scan against it says nothing about
how the scanner behaves against AWS, where each call costs a network round trip and every (account, region,
API) has a rate limit answered with the protocol's own throttling error. This proxy adds both, plus the
faults tests need (a service that hangs, a service that fails), and runs as its own process so the CPU it
spends can be measured apart from the scanner's.

    python -m scanner.emulator.fault_proxy --upstream http://127.0.0.1:5000 --port 0 \\
        [--latency-ms 50] [--rate-per-key 10] [--burst 10] [--throttle-fraction 0.0] [--seed 0]

prints ``FAULT_PROXY_READY http://127.0.0.1:PORT`` once it serves. Point boto3 at that URL
(``AWS_ENDPOINT_URL``). Per request:

1. the rate key is (access key id, region, service) from the SigV4 credential scope: moto gives every
   assumed-role session its own access key, so the access key stands for the account. Where the proxy saw
   the AssumeRole answer that issued a key, the token bucket is the account's instead (several worker
   processes each assume the role once, and AWS limits the account, not the session); counters stay per key;
2. the request is held while its service or access key is in ``hang_services`` / ``hang_access_keys``;
3. it waits ``latency_ms`` (asyncio: thousands of calls wait at once without threads);
4. it is answered HTTP 500 ``InternalError`` when its service is in ``fail_services``, or the protocol's
   throttling error when the key's token bucket is empty or a random draw falls under
   ``throttle_fraction``; otherwise it is forwarded to moto over a pooled connection.

Control endpoints live under ``/__proxy__/``, a prefix no AWS API uses: ``GET stats``, ``POST config``
(JSON with any of the options above), ``POST reset`` (zero the counters). :class:`FaultProxy` drives all
of this from tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTROL_PREFIX = "/__proxy__/"
READY_MARKER = "FAULT_PROXY_READY"
# A hung request is released after this long even if nobody changes the config, so a test that forgets
# to release it cannot leave a client waiting forever.
HANG_LIMIT_S = 600.0

# Services whose REST protocol is XML (S3 aside, which has its own error shape); every other REST service
# without X-Amz-Target or a form Action speaks REST-JSON.
REST_XML_SERVICES = frozenset({"route53", "cloudfront"})

# Headers that describe one hop of the connection, not the message: never forwarded either way.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # The proxy sends the length of the body it forwards (and of the answer it sends back) itself.
        "content-length",
        # The proxy has the whole body before it forwards: the upstream must not wait to be asked for it.
        "expect",
    }
)

_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)

# Read from AssumeRole answers passing through: which account an issued access key belongs to.
_ISSUED_KEY = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")
_ASSUMED_ARN = re.compile(rb"<Arn>arn:[^:<]*:sts::(\d{12}):assumed-role/")

CONFIG_FIELDS = (
    "latency_ms",
    "rate_per_key",
    "burst",
    "throttle_fraction",
    "hang_services",
    "hang_access_keys",
    "fail_services",
)


# -- options ---------------------------------------------------------------------------------------


@dataclass
class ProxyOptions:
    """What the proxy does to each request; changed at run time through ``POST /__proxy__/config``."""

    latency_ms: float = 0.0
    rate_per_key: float = 0.0  # requests per second per key; 0 = no limit
    burst: float = 10.0
    throttle_fraction: float = 0.0
    hang_services: frozenset[str] = field(default_factory=frozenset)
    hang_access_keys: frozenset[str] = field(default_factory=frozenset)
    fail_services: frozenset[str] = field(default_factory=frozenset)

    def as_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "rate_per_key": self.rate_per_key,
            "burst": self.burst,
            "throttle_fraction": self.throttle_fraction,
            "hang_services": sorted(self.hang_services),
            "hang_access_keys": sorted(self.hang_access_keys),
            "fail_services": sorted(self.fail_services),
        }


class ConfigError(ValueError):
    """A bad option value; the message names the field and the fix."""


def _number(name: str, value: Any, *, minimum: float, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ConfigError(f"{name}: must be {bounds}, got {value!r}")
    return float(value)


def _names(name: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple | set | frozenset) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: expected a list of strings (e.g. [\"ec2\"]), got {value!r}")
    return frozenset(value)


def apply_config(options: ProxyOptions, changes: Any) -> ProxyOptions:
    """A copy of ``options`` with ``changes`` applied; :class:`ConfigError` names any bad field."""
    if not isinstance(changes, dict):
        raise ConfigError(f"config: expected a JSON object with any of {', '.join(CONFIG_FIELDS)}")
    unknown = sorted(set(changes) - set(CONFIG_FIELDS))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: unknown option; known options are {', '.join(CONFIG_FIELDS)}")
    values = options.as_json()
    for name, value in changes.items():
        if name == "latency_ms":
            values[name] = _number(name, value, minimum=0, maximum=HANG_LIMIT_S * 1000)
        elif name == "rate_per_key":
            values[name] = _number(name, value, minimum=0)
        elif name == "burst":
            values[name] = _number(name, value, minimum=1)
        elif name == "throttle_fraction":
            values[name] = _number(name, value, minimum=0, maximum=1)
        else:
            values[name] = _names(name, value)
    return ProxyOptions(
        latency_ms=float(values["latency_ms"]),
        rate_per_key=float(values["rate_per_key"]),
        burst=float(values["burst"]),
        throttle_fraction=float(values["throttle_fraction"]),
        hang_services=frozenset(values["hang_services"]),
        hang_access_keys=frozenset(values["hang_access_keys"]),
        fail_services=frozenset(values["fail_services"]),
    )


# -- what a request is -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestIdentity:
    """Who asks what: the rate key's parts and the wire protocol the error answer must speak."""

    access_key: str
    region: str
    service: str
    protocol: str  # "ec2", "query", "json", "rest-json", "rest-xml", "s3"
    json_content_type: str = "application/x-amz-json-1.1"

    @property
    def key(self) -> str:
        return f"{self.access_key}/{self.region}/{self.service}"


def _credential_scope(credential: str) -> tuple[str, str, str] | None:
    """``AKID/20261205/us-east-1/ec2/aws4_request`` -> (AKID, region, service)."""
    parts = credential.split("/")
    if len(parts) >= 5:
        return parts[0], parts[2], parts[3]
    return None


def identify(headers: dict[str, str], query: str, body: bytes) -> RequestIdentity:
    """Read the rate key and protocol from a request (headers lower-cased)."""
    scope: tuple[str, str, str] | None = None
    authorization = headers.get("authorization", "")
    marker = authorization.find("Credential=")
    if marker >= 0:
        credential = authorization[marker + len("Credential="):].split(",", 1)[0].strip()
        scope = _credential_scope(credential)
    params: dict[str, list[str]] = {}
    if scope is None and query:
        # Presigned URLs carry the scope in the query (SigV4), or only the access key (SigV2, S3).
        params = urllib.parse.parse_qs(query)
        if "X-Amz-Credential" in params:
            scope = _credential_scope(params["X-Amz-Credential"][0])
        elif "AWSAccessKeyId" in params:
            scope = (params["AWSAccessKeyId"][0], "unknown", "s3")
    if scope is None:
        # Anonymous: in practice S3 (public objects); the service still follows from the request's shape.
        scope = ("anonymous", "unknown", "s3")
    access_key, region, service = scope

    target = headers.get("x-amz-target")
    content_type = headers.get("content-type", "")
    if service == "ec2":
        protocol = "ec2"
    elif target:
        protocol = "json"
    elif service == "s3":
        protocol = "s3"
    elif (content_type.startswith("application/x-www-form-urlencoded") and b"Action=" in body) or (
        "Action=" in query
    ):
        protocol = "query"
    elif service in REST_XML_SERVICES:
        protocol = "rest-xml"
    else:
        protocol = "rest-json"
    json_type = content_type if content_type.startswith("application/x-amz-json") else "application/x-amz-json-1.1"
    return RequestIdentity(access_key, region, service, protocol, json_type)


def operation_name(identity: RequestIdentity, method: str, path: str, query: str, body: bytes) -> str:
    """The API operation, as well as it can be read cheaply (for per-operation call counts)."""
    if identity.protocol in ("ec2", "query"):
        source = body.decode("latin-1") if b"Action=" in body else query
        for pair in source.split("&"):
            if pair.startswith("Action="):
                return urllib.parse.unquote_plus(pair[len("Action="):])
    if identity.protocol == "s3":
        # Bucket and object names would make one entry per resource; the sub-resource (?tagging) names the API.
        subresources = sorted(pair.split("=", 1)[0] for pair in query.split("&") if pair)
        return f"{method} ?{'&'.join(subresources)}" if subresources else method
    # REST paths carry resource names after the first segments (/2015-03-31/functions/NAME): keep the head.
    return method + " " + "/".join(path.split("/")[:3])


# -- the protocol's own error answers --------------------------------------------------------------


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _xml(status: int, body: str) -> ErrorAnswer:
    return ErrorAnswer(status, [(b"content-type", b"text/xml")], body.encode())


def throttling_answer(identity: RequestIdentity) -> ErrorAnswer:
    """The throttling error each protocol really answers, which botocore parses to its error code."""
    request_id = str(uuid.uuid4())
    if identity.protocol == "ec2":
        return _xml(
            503,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
            f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        )
    if identity.protocol in ("query", "rest-xml"):
        return _xml(
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        )
    if identity.protocol == "json":
        return ErrorAnswer(
            400,
            [(b"content-type", identity.json_content_type.encode()), (b"x-amzn-requestid", request_id.encode())],
            b'{"__type":"ThrottlingException","message":"Rate exceeded"}',
        )
    if identity.protocol == "s3":
        return _xml(
            503,
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
            f"<RequestId>{request_id}</RequestId></Error>",
        )
    return ErrorAnswer(
        429,
        [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", b"TooManyRequestsException"),
            (b"x-amzn-requestid", request_id.encode()),
        ],
        b'{"Type":"User","message":"Rate exceeded"}',
    )


def internal_error_answer(identity: RequestIdentity) -> ErrorAnswer:
    """HTTP 500 ``InternalError`` in the protocol's shape (``fail_services``)."""
    request_id = str(uuid.uuid4())
    message = "We encountered an internal error. Please try again."
    if identity.protocol == "ec2":
        return _xml(
            500,
            f"<Response><Errors><Error><Code>InternalError</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>",
        )
    if identity.protocol in ("query", "rest-xml"):
        return _xml(
            500,
            f"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        )
    if identity.protocol == "s3":
        return _xml(
            500,
            f"<Error><Code>InternalError</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>",
        )
    if identity.protocol == "json":
        return ErrorAnswer(
            500,
            [(b"content-type", identity.json_content_type.encode())],
            json.dumps({"__type": "InternalError", "message": message}).encode(),
        )
    return ErrorAnswer(
        500,
        [(b"content-type", b"application/json"), (b"x-amzn-errortype", b"InternalError")],
        json.dumps({"message": message}).encode(),
    )


# -- rate limiting and counters --------------------------------------------------------------------


class TokenBuckets:
    """One token bucket per key: ``burst`` calls at once, then ``rate`` per second."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def take(self, key: str, rate: float, burst: float, now: float) -> bool:
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True
        self._buckets[key] = (tokens, now)
        return False

    def clear(self) -> None:
        self._buckets.clear()


@dataclass
class KeyCounters:
    requests: int = 0
    throttled: int = 0


@dataclass
class Counters:
    requests: int = 0
    forwarded: int = 0
    throttled: int = 0
    failed: int = 0
    upstream_errors: int = 0
    hung_now: int = 0
    peak_in_flight: int = 0
    by_key: dict[str, KeyCounters] = field(default_factory=dict)
    # Per token bucket: the account's once AssumeRole taught the proxy whose key it is, else the key's.
    by_bucket: dict[str, KeyCounters] = field(default_factory=dict)
    by_operation: dict[str, int] = field(default_factory=dict)


def _process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the upstream connection pool ------------------------------------------------------------------


class UpstreamClosedError(ConnectionError):
    """The upstream closed the connection before its answer was complete."""


class _StaleConnectionError(ConnectionError):
    """A reused connection ended (EOF or reset) before any byte of the answer: the upstream closed it while it
    sat idle and never saw the request, which may therefore be sent again."""


class _AnswerParts:
    """httptools' callback side: collects one answer's headers and body."""

    __slots__ = ("body", "complete", "headers", "headers_complete")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_complete = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass
class UpstreamAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]  # hop-by-hop and length headers removed
    body: bytes  # decoded (chunked framing removed)


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one upstream, answers parsed by httptools (llhttp, in C).

    httpx cost the proxy more CPU per call than everything else it does (its per-request machinery, and
    httpcore trying to import sniffio on every call); this does only what forwarding to moto needs. Idle
    connections are reused last-in first-out (the warmest socket first); there is no cap beyond the calls in
    flight and no timeout: moto is slow under load, never wrong. (moto's werkzeug server itself ends every
    answer with ``Connection: close``, so against moto each call still opens a connection.)
    """

    _READ_SIZE = 1 << 16

    def __init__(self, upstream: str) -> None:
        try:
            import httptools
        except ImportError as exc:
            raise ImportError(
                "the fault proxy parses the upstream's answers with httptools, which is not installed: "
                "pip install 'httptools>=0.6' (a dependency of finops-tag-compliance)"
            ) from exc
        self._parser_type: Any = httptools.HttpResponseParser
        # What a broken upstream raises: socket errors (refused, reset, closed mid-answer) and malformed answers.
        self.errors: tuple[type[BaseException], ...] = (OSError, httptools.HttpParserError, httptools.HttpParserUpgrade)
        parsed = urllib.parse.urlsplit(upstream)
        self._tls = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._tls else 80)
        self._netloc = parsed.netloc
        # A path in the upstream URL prefixes every request's (as httpx's base_url did).
        self._prefix = parsed.path.rstrip("/")
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> UpstreamAnswer:
        """Send one request and return its answer; raises one of :attr:`errors` when the upstream fails."""
        lines = [f"{method} {self._prefix}{target} HTTP/1.1"]
        has_host = False
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                continue
            has_host = has_host or lowered == "host"
            lines.append(f"{name}: {value}")
        if not has_host:
            lines.append(f"host: {self._netloc}")
        # Always sent, also 0: the upstream must never wait for (or guess at) a body.
        lines.append(f"content-length: {len(body)}")
        lines.append("\r\n")
        data = "\r\n".join(lines).encode("latin-1") + body
        head_only = method == "HEAD"

        while self._idle:
            connection = self._idle.pop()
            if connection[1].transport.is_closing() or connection[0].at_eof():
                connection[1].close()  # closed by the upstream while idle
                continue
            try:
                return await self._exchange(connection, data, head_only, reused=True)
            except _StaleConnectionError:
                # Closed by the upstream while idle, and noticed only now: it never saw the request, so send it
                # again on a fresh connection (once: a fresh connection failing the same way is a real error).
                break
        connection = await asyncio.open_connection(self._host, self._port, ssl=self._tls or None)
        return await self._exchange(connection, data, head_only, reused=False)

    async def _exchange(
        self,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        data: bytes,
        head_only: bool,
        *,
        reused: bool,
    ) -> UpstreamAnswer:
        reader, writer = connection
        parts = _AnswerParts()
        parser = self._parser_type(parts)
        received = False
        keep_alive = True
        try:
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                if reused:
                    raise _StaleConnectionError() from None
                raise
            while True:
                try:
                    chunk = await reader.read(self._READ_SIZE)
                except ConnectionResetError:
                    if reused and not received:
                        raise _StaleConnectionError() from None
                    raise
                if not chunk:
                    if not received:
                        if reused:
                            raise _StaleConnectionError()
                        raise UpstreamClosedError("the upstream closed the connection without answering")
                    if parts.headers_complete and not head_only and not _has_framing(parts.headers):
                        # Neither a length nor chunks: the answer's body runs until the upstream closes.
                        keep_alive = False
                        break
                    raise UpstreamClosedError("the upstream closed the connection mid-answer")
                received = True
                parser.feed_data(chunk)
                if parts.complete:
                    break
                if head_only and parts.headers_complete:
                    # A HEAD answer has no body even when it carries the length a GET would have; httptools cannot
                    # know the request's method, so the answer ends with its headers. Bytes after them would be a
                    # body the upstream should not have sent: the connection is then out of step, never reused.
                    keep_alive = not parts.body
                    break
        except BaseException:
            writer.close()  # never pooled: the connection is in an unknown state (or the call was cancelled)
            raise

        keep_alive = keep_alive and parser.get_http_version() == "1.1"
        answer_headers: list[tuple[bytes, bytes]] = []
        for name, value in parts.headers:
            lowered = name.lower()
            if lowered in _HOP_BY_HOP_BYTES:
                if lowered == b"connection" and b"close" in value.lower():
                    keep_alive = False
                continue
            answer_headers.append((name, value))
        if keep_alive:
            self._idle.append(connection)
        else:
            writer.close()
        body = b"" if head_only else b"".join(parts.body)
        return UpstreamAnswer(parser.get_status_code(), answer_headers, body)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with suppress(OSError):
                await writer.wait_closed()


def _has_framing(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)


# -- the ASGI application --------------------------------------------------------------------------


class FaultProxyApp:
    """A bare ASGI app (no framework routing on the hot path: the proxy's own CPU is part of what a
    benchmark measures, so every request should cost as little of it as possible)."""

    def __init__(self, upstream: str, options: ProxyOptions, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.options = options
        self.counters = Counters()
        self._buckets = TokenBuckets()
        self._random = random.Random(seed)
        self._config_changed = asyncio.Event()
        self._account_of_key: dict[str, str] = {}  # access key id -> account, learned from AssumeRole
        self._pool: UpstreamPool | None = None  # made inside the server's event loop
        self._in_flight = 0  # survives reset(): calls still running then end afterwards

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # One connection pool for every request, reusing connections the upstream keeps open (moto's
                # server closes each one after its answer; other upstreams, as in the tests, keep theirs).
                self._pool = UpstreamPool(self.upstream)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    await self._pool.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- control endpoints -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "requests": c.requests,
            "forwarded": c.forwarded,
            "throttled": c.throttled,
            "failed": c.failed,
            "upstream_errors": c.upstream_errors,
            "hung_now": c.hung_now,
            "peak_in_flight": c.peak_in_flight,
            "by_key": {k: {"requests": v.requests, "throttled": v.throttled} for k, v in c.by_key.items()},
            "by_bucket": {k: {"requests": v.requests, "throttled": v.throttled} for k, v in c.by_bucket.items()},
            "by_operation": dict(c.by_operation),
            "accounts_learned": len(self._account_of_key),
            "cpu_seconds": _process_cpu_seconds(),
            "pid": os.getpid(),
            "config": self.options.as_json(),
        }

    def configure(self, changes: Any) -> None:
        self.options = apply_config(self.options, changes)
        # Wake every held request so it re-checks whether it is still meant to hang.
        self._config_changed.set()
        self._config_changed = asyncio.Event()

    def reset(self) -> None:
        hung = self.counters.hung_now
        self.counters = Counters(hung_now=hung)
        self._buckets.clear()

    async def _control(self, method: str, path: str, receive: Receive, send: Send) -> None:
        action = path[len(CONTROL_PREFIX):].strip("/")
        if action == "stats" and method == "GET":
            await _send_json(send, 200, self.stats())
        elif action == "config" and method == "POST":
            raw = await _read_body(receive)
            try:
                changes = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                await _send_json(send, 400, {"error": f"config: body is not JSON ({exc.msg}); send a JSON object"})
                return
            try:
                self.configure(changes)
            except ConfigError as exc:
                await _send_json(send, 400, {"error": str(exc)})
                return
            await _send_json(send, 200, {"config": self.options.as_json()})
        elif action == "reset" and method == "POST":
            self.reset()
            await _send_json(send, 200, {"reset": True})
        else:
            await _send_json(
                send,
                404,
                {"error": f"{method} {path}: unknown control endpoint; use GET stats, POST config or POST reset"},
            )

    # -- the proxied request -----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self._control(method, path, receive, send)
            return
        # Calls in flight at once, as the cloud sees them: the concurrency a scan really used.
        self._in_flight += 1
        self.counters.peak_in_flight = max(self.counters.peak_in_flight, self._in_flight)
        try:
            await self._aws_call(scope, method, path, receive, send)
        finally:
            self._in_flight -= 1

    async def _aws_call(self, scope: Scope, method: str, path: str, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or path.encode()
        query: str = scope.get("query_string", b"").decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        lowered = {k.lower(): v for k, v in headers}
        body = await _read_body(receive)
        identity = identify(lowered, query, body)

        counters = self.counters
        counters.requests += 1
        per_key = counters.by_key.get(identity.key)
        if per_key is None:
            per_key = counters.by_key[identity.key] = KeyCounters()
        per_key.requests += 1
        operation = lowered.get("x-amz-target") or operation_name(identity, method, path, query, body)
        operation_key = f"{identity.service}:{operation}"
        counters.by_operation[operation_key] = counters.by_operation.get(operation_key, 0) + 1

        await self._hold_while_hung(identity)
        options = self.options
        if options.latency_ms > 0:
            await asyncio.sleep(options.latency_ms / 1000.0)

        answer: ErrorAnswer | None = None
        if identity.service in options.fail_services:
            self.counters.failed += 1
            answer = internal_error_answer(identity)
        else:
            bucket = self._bucket_key(identity)
            per_bucket = self.counters.by_bucket.setdefault(bucket, KeyCounters())
            per_bucket.requests += 1
            if self._should_throttle(bucket, options):
                self.counters.throttled += 1
                # by_key may have been reset while this request slept; count it on the live table.
                self.counters.by_key.setdefault(identity.key, KeyCounters()).throttled += 1
                per_bucket.throttled += 1
                answer = throttling_answer(identity)
        if answer is not None:
            await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        payload = await self._forward(method, raw_path, query, headers, body, send)
        if payload is not None and operation == "AssumeRole":
            self._learn_account(payload)

    def _bucket_key(self, identity: RequestIdentity) -> str:
        account = self._account_of_key.get(identity.access_key)
        return f"{account}/{identity.region}/{identity.service}" if account else identity.key

    def _learn_account(self, payload: bytes) -> None:
        key, account = _ISSUED_KEY.search(payload), _ASSUMED_ARN.search(payload)
        if key and account:
            self._account_of_key[key.group(1).decode()] = account.group(1).decode()

    async def _hold_while_hung(self, identity: RequestIdentity) -> None:
        deadline = time.monotonic() + HANG_LIMIT_S
        while (
            identity.service in self.options.hang_services or identity.access_key in self.options.hang_access_keys
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.counters.hung_now += 1
            try:
                await asyncio.wait_for(self._config_changed.wait(), timeout=remaining)
            except TimeoutError:
                return
            finally:
                self.counters.hung_now -= 1

    def _should_throttle(self, key: str, options: ProxyOptions) -> bool:
        if options.throttle_fraction > 0 and self._random.random() < options.throttle_fraction:
            return True
        if options.rate_per_key > 0:
            return not self._buckets.take(key, options.rate_per_key, options.burst, time.monotonic())
        return False

    async def _forward(
        self, method: str, raw_path: bytes, query: str, headers: list[tuple[str, str]], body: bytes, send: Send
    ) -> bytes | None:
        """Send the request upstream and its answer back; returns the answer's body (None if unreachable)."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the upstream pool is made at lifespan startup; serve the app with lifespan on")
        target = raw_path.decode("latin-1") + ("?" + query if query else "")
        # The Host header goes through unchanged: moto builds URLs it hands back (SQS queue URLs) from it,
        # and those must keep pointing at the proxy.
        try:
            answer = await pool.request(method, target, headers, body)
        except pool.errors as exc:
            self.counters.upstream_errors += 1
            await _send_json(send, 502, {"error": f"upstream {self.upstream} unreachable: {type(exc).__name__}"})
            return None
        self.counters.forwarded += 1
        payload = answer.body
        response_headers = answer.headers
        response_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
        return payload if answer.status == 200 else None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


# -- command line ----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scanner.emulator.fault_proxy",
        description="Proxy AWS calls to the moto server with added latency, per-key rate limits and faults.",
    )
    parser.add_argument("--upstream", required=True, help="the moto server, e.g. http://127.0.0.1:5000")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every AWS call")
    parser.add_argument(
        "--rate-per-key", type=float, default=0.0, help="calls/s per (access key, region, service); 0 = no limit"
    )
    parser.add_argument("--burst", type=float, default=10.0, help="calls a key may make at once (bucket size)")
    parser.add_argument("--throttle-fraction", type=float, default=0.0, help="share of calls throttled at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random throttling draw")
    return parser


def _validate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ProxyOptions:
    parsed = urllib.parse.urlsplit(args.upstream)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        parser.error(f"--upstream: expected a URL like http://127.0.0.1:5000, got {args.upstream!r}")
    if not _is_loopback(args.host):
        # The proxy, like moto behind it, accepts any credentials: it must never be reachable off this machine.
        parser.error(f"--host: must be a loopback address such as 127.0.0.1, got {args.host!r}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: must be between 0 and 65535, got {args.port}")
    try:
        return apply_config(
            ProxyOptions(),
            {
                "latency_ms": args.latency_ms,
                "rate_per_key": args.rate_per_key,
                "burst": args.burst,
                "throttle_fraction": args.throttle_fraction,
            },
        )
    except ConfigError as exc:
        option, _, detail = str(exc).partition(":")
        parser.error(f"--{option.replace('_', '-')}:{detail}")
    raise AssertionError("unreachable")  # parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; serves until SIGINT/SIGTERM and returns the exit code."""
    import socket

    import uvicorn

    parser = _parser()
    args = parser.parse_args(argv)
    options = _validate_args(parser, args)
    app = FaultProxyApp(args.upstream, options, seed=args.seed)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP, and
    # with Nagle on, the separate header and body writes of each answer wait 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"--port: cannot bind {args.host}:{args.port} ({exc.strerror}); pick another port or 0", file=sys.stderr)
        return 2
    sock.listen(2048)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        date_header=False,
        # botocore keeps connections pooled between calls; closing them after uvicorn's default 5 s idle would
        # turn into connection-reset retries in the scanner that real AWS (idle timeout minutes) never causes.
        timeout_keep_alive=120,
        backlog=2048,
    )
    server = uvicorn.Server(config)

    async def _serve() -> None:
        # Announce readiness only once the app's startup (the upstream client) has run.
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            print(f"{READY_MARKER} http://{host}:{port}", flush=True)
        await task

    # uvloop runs the event loop (and its sockets) in C: less of the proxy's CPU per call goes to asyncio itself.
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve())
    return 0


# -- helper for tests and benchmarks ---------------------------------------------------------------


class FaultProxy:
    """The proxy as a child process, driven over its control endpoints.

    >>> with FaultProxy(emulator.endpoint_url, latency_ms=50) as proxy:   # doctest: +SKIP
    ...     boto3.client("ec2", endpoint_url=proxy.url, ...)
    ...     proxy.configure(hang_services=["ec2"])
    ...     proxy.stats()["throttled"]

    Start options: latency_ms, rate_per_key, burst, throttle_fraction, seed, host; the run-time ones
    (hang_services, hang_access_keys, fail_services) are applied by :meth:`configure` right after start.
    """

    _START_OPTIONS = ("latency_ms", "rate_per_key", "burst", "throttle_fraction", "seed", "host")

    def __init__(self, upstream_url: str, *, startup_timeout: float = 30.0, **options: Any) -> None:
        unknown = sorted(set(options) - set(self._START_OPTIONS) - set(CONFIG_FIELDS))
        if unknown:
            known = ", ".join((*self._START_OPTIONS, *CONFIG_FIELDS[4:]))
            raise ValueError(f"{', '.join(unknown)}: unknown FaultProxy option; known options are {known}")
        self.upstream_url = upstream_url
        self._options = options
        self._timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._url: str | None = None
        self._stderr: list[str] = []

    def start(self) -> str:
        """Spawn the proxy on a free loopback port, wait until it answers, and return its URL."""
        if self._process is not None:
            raise RuntimeError("FaultProxy already started")
        argv = [sys.executable, "-m", "scanner.emulator.fault_proxy", "--upstream", self.upstream_url, "--port", "0"]
        for name in self._START_OPTIONS:
            if name in self._options:
                argv += ["--" + name.replace("_", "-"), str(self._options[name])]
        env = dict(os.environ)
        project_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH", "")) if p)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._process = process
        ready = threading.Event()
        lines: list[str] = []

        def _drain(stream: Any, sink: list[str], watch: bool) -> None:
            # Drained for the child's whole life: a full pipe would block it mid-request.
            for line in stream:
                if len(sink) < 200:
                    sink.append(line)
                if watch and line.startswith(READY_MARKER):
                    ready.set()
            ready.set()

        threading.Thread(target=_drain, args=(process.stdout, lines, True), daemon=True).start()
        threading.Thread(target=_drain, args=(process.stderr, self._stderr, False), daemon=True).start()
        ready.wait(self._timeout)
        for line in lines:
            if line.startswith(READY_MARKER):
                self._url = line.split(" ", 1)[1].strip()
        if self._url is None:
            time.sleep(0.2)  # let stderr drain so the error says why
            self.stop()
            detail = "".join(self._stderr[-20:]).strip() or "(no output)"
            raise RuntimeError(f"fault proxy did not start within {self._timeout:.0f} s: {detail}")
        runtime = {k: v for k, v in self._options.items() if k in CONFIG_FIELDS[4:]}
        if runtime:
            self.configure(**runtime)
        return self._url

    def stop(self) -> None:
        """Terminate the child by its PID (SIGTERM, SIGKILL after 10 s). Safe to call twice."""
        process, self._process = self._process, None
        self._url = None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("FaultProxy is not running; call start() or use it as a context manager")
        return self._process.pid

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FaultProxy is not running; call start() or use it as a context manager")
        return self._url

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last :meth:`reset`, and the proxy's own CPU seconds."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change options at run time; ValueError (naming the field) on a bad value. Returns the new config."""
        result: dict[str, Any] = self._call("POST", "config", options)["config"]
        return result

    def reset(self) -> None:
        """Zero the counters and refill every token bucket."""
        self._call("POST", "reset", {})

    def _call(self, method: str, action: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + CONTROL_PREFIX + action, data=data, method=method)
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                message = json.loads(detail)["error"]
            except (ValueError, KeyError, TypeError):
                message = detail
            if exc.code == 400:
                raise ValueError(message) from None
            raise RuntimeError(f"fault proxy {action}: HTTP {exc.code}: {message}") from None


if __name__ == "__main__":
    sys.exit(main())
