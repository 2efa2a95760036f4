"""Assumed-role credentials shared by every worker process through Redis.

Each prefork worker process has its own session cache, so without sharing every process assumes the role
of every account it meets: the benchmark's 50-account scan made 1,174 AssumeRole calls instead of 50, all
against the management account's STS budget, and those were most of its throttles. One process assumes,
stores the temporary credentials (they expire within the hour) under a key derived from the role ARN and
External ID, and the others read them. A short lock stops a cold start from sending every process to STS
at once. Redis already carries the work queue, so it is inside the same trust boundary; set
FINOPS_SHARE_ROLE_CREDENTIALS=false to keep credentials in each process only.

A Redis outage falls back to assuming the role in the process (more STS calls, never a failed scan).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)

Credentials = dict[str, str]  # AccessKeyId, SecretAccessKey, SessionToken, Expiration (ISO 8601)


class RedisCredentialCache:
    """``get_or_create(role_arn, external_id, create)``: the shared credentials, or ``create()`` stored."""

    def __init__(self, url: str, *, prefix: str = "finops:role-credentials", lock_seconds: float = 15.0,
                 wait_seconds: float = 5.0, client: Any | None = None) -> None:
        self._client = client or redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
        self._prefix = prefix
        self._lock_seconds = lock_seconds
        self._wait_seconds = wait_seconds

    def _key(self, role_arn: str, external_id: str | None) -> str:
        # The External ID is part of what the credentials answer to, but is not stored in clear.
        digest = hashlib.sha256(f"{role_arn}\n{external_id or ''}".encode()).hexdigest()[:32]
        return f"{self._prefix}:{digest}"

    def get_or_create(self, role_arn: str, external_id: str | None, create: Callable[[], Credentials],
                      ttl_for: Callable[[Credentials], float]) -> Credentials:
        """Credentials for the role: shared ones when stored, else ``create()`` (stored for ``ttl_for``
        seconds when positive). While another process holds the lock, wait up to ``wait_seconds``."""
        key = self._key(role_arn, external_id)
        try:
            found = self._read(key)
            if found is not None:
                return found
            if not self._client.set(f"{key}:lock", "1", nx=True, ex=int(self._lock_seconds)):
                deadline = time.monotonic() + self._wait_seconds
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                    found = self._read(key)
                    if found is not None:
                        return found
        except redis.RedisError as exc:
            log.warning("role credentials: Redis unreachable (%s); assuming the role in this process",
                        type(exc).__name__)
            return create()
        creds = create()
        ttl = ttl_for(creds)
        try:
            if ttl > 1:
                self._client.set(key, json.dumps(creds), ex=int(ttl))
            self._client.delete(f"{key}:lock")
        except redis.RedisError as exc:
            # The credentials are good; only the sharing failed (other processes assume for themselves).
            log.info("role credentials: could not share them through Redis (%s)", type(exc).__name__)
        return creds

    def _read(self, key: str) -> Credentials | None:
        raw = self._client.get(key)
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None
