"""Scrubs error answers before they leave the process (HTTP error bodies, MCP isError texts).

Errors are written to name the field and the fix, never internals; this is the net under that rule for text
that comes from a library or a dependency (a driver's connection error naming a host, botocore quoting an
endpoint URL, an exception carrying a file path or a credential). It removes:

- stack traces (``Traceback (most recent call last):`` onwards, and ``File "...", line N`` frames);
- file system paths (absolute POSIX paths under a system or home root, Windows drive paths, ``~/...``);
- URLs: credentials (``user:pass@``), paths and queries go; only scheme and an allowed host stay;
- host names and IP addresses other than the documentation names of RFC 2606 and the operator's own public
  hosts (FINOPS_PUBLIC_URL, FINOPS_OAUTH_ISSUER), which fix messages legitimately point at;
- AWS access key ids (AKIA/ASIA...), secret-looking 40-character keys, this project's API keys, bearer tokens,
  JWTs, PEM private keys and ``password=...``-style assignments.

Host names are recognized by their top-level domain (a fixed list of common public and private-network
suffixes) so that field paths such as ``filters.regions`` and file names such as ``policy.json`` are not
mistaken for hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[redacted]"
_PATH = "[path]"
_HOST = "[host]"

_TRACEBACK = re.compile(r"Traceback \(most recent call last\):.*", re.DOTALL)
_FRAME = re.compile(r"\s*File \"[^\"]*\", line \d+(?:, in \S+)?")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_PROJECT_KEY = re.compile(r"\bfta_[A-Za-z0-9_-]{8,}")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{12,}\b")
# A 40-character base64 run with mixed case and a digit (an AWS secret access key); hex digests are one case.
_SECRET_40 = re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+=]*[a-z])(?=[A-Za-z0-9/+=]*[A-Z])"
                        r"(?=[A-Za-z0-9/+=]*[0-9])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")
_ASSIGNMENT = re.compile(r"\b((?:aws_)?(?:secret(?:_access)?_key|session_token|password|passwd|pwd|secret|token|"
                         r"api[_-]?key|pepper|credentials?))(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)]+)",
                         re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{1,20}://[^\s\"'<>`]+", re.IGNORECASE)
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\[^\s\"'<>]*")
_HOME_PATH = re.compile(r"(?<![\w/])~/[^\s\"'<>]*")
# Absolute paths under the roots a host's files live in; API paths (/v1/...) and ARN parts are not touched.
_POSIX_ROOTS = ("home", "root", "tmp", "var", "etc", "usr", "opt", "srv", "mnt", "media", "proc", "sys", "dev",
                "run", "app", "work", "data", "private", "Users", "Library", "System", "Volumes", "nix", "snap",
                "bin", "sbin", "lib", "lib64", "boot", "workspace", "code", "site-packages")
_POSIX_PATH = re.compile(r"(?<![\w.~/:-])/(?:" + "|".join(_POSIX_ROOTS) + r")(?:/[^\s\"'<>,;)]*)?")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])\[?(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{1,4}\]?(?::\d{1,5})?(?![\w:])")
_TLDS = ("com", "net", "org", "io", "co", "ai", "dev", "app", "cloud", "internal", "local", "localdomain", "lan",
         "corp", "intranet", "private", "home", "svc", "cluster", "edu", "gov", "mil", "info", "biz", "us", "uk",
         "eu", "de", "fr", "nl", "jp", "cn", "in", "br", "au", "ca", "ch", "se", "no", "fi", "it", "es", "ie")
# A two-label name is a host only under these; fewer false hits on field paths such as tags.app.
_TWO_LABEL_TLDS = frozenset({"com", "net", "org", "io", "internal", "local", "localdomain", "lan", "corp"})
# Field paths of error messages start with a parameter name, never a host.
_FIELD_ROOTS = frozenset({"tags", "filters", "body", "query", "path", "time_period", "policy", "arguments",
                          "request", "schedule", "columns", "resource_arns", "regions", "accounts"})
_HOSTNAME = re.compile(r"(?<![\w@/.:-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:" + "|".join(_TLDS)
                       + r"))(?::\d{1,5})?(?![\w-])", re.IGNORECASE)
# ``name:port`` (docker-compose service names such as redis:6379 have no dot).
_HOST_PORT = re.compile(r"(?<![\w@/.:-])([a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*):\d{2,5}(?![\w:])", re.IGNORECASE)
# RFC 2606 / 6761 names exist for documentation: a fix message may use them as examples.
_DOCUMENTATION_SUFFIXES = ("example.com", "example.org", "example.net", ".example", ".test", ".invalid")


class ErrorSanitizer:
    """Removes internals from error text; ``public_hosts`` are host names that may stay (the gateway's own)."""

    def __init__(self, public_hosts: Iterable[str] = ()) -> None:
        self.public_hosts = frozenset(h.lower() for h in public_hosts if h)

    def _host_allowed(self, host: str) -> bool:
        host = host.lower().strip("[]")
        return host in self.public_hosts or host.endswith(_DOCUMENTATION_SUFFIXES) or host in (
            "example.com", "example.org", "example.net")

    def _url(self, match: re.Match[str]) -> str:
        text = match.group(0)
        trail = ""
        while text and text[-1] in ".,:;!?)]}":  # sentence punctuation after a URL is not part of it
            trail = text[-1] + trail
            text = text[:-1]
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
        except ValueError:
            return "[url]" + trail
        if host and self._host_allowed(host):
            shown = f"{parts.scheme}://{host}"
            if parts.path not in ("", "/") or parts.query:
                # A path can carry a secret (webhook URLs); the operator's own documented paths are kept.
                shown += parts.path if not parts.query and _safe_path(parts.path) else "/[redacted]"
            return shown + trail
        return f"{parts.scheme}://{_HOST}" + trail

    def _hostname(self, match: re.Match[str]) -> str:
        host = match.group(1)
        labels = host.lower().split(".")
        if labels[0] in _FIELD_ROOTS or (len(labels) == 2 and labels[1] not in _TWO_LABEL_TLDS):
            return match.group(0)
        return match.group(0) if self._host_allowed(host) else _HOST

    def text(self, value: str) -> str:
        """``value`` without stack traces, paths, hosts, URLs with internals, keys or secrets."""
        if not value:
            return value
        out = _TRACEBACK.sub("[stack trace removed]", value)
        out = _FRAME.sub("", out)
        out = _PEM.sub(REDACTED, out)
        out = _JWT.sub(REDACTED, out)
        out = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", out)
        out = _PROJECT_KEY.sub(REDACTED, out)
        out = _AWS_KEY_ID.sub(REDACTED, out)
        out = _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)
        out = _URL.sub(self._url, out)
        out = _SECRET_40.sub(REDACTED, out)
        out = _WINDOWS_PATH.sub(_PATH, out)
        out = _HOME_PATH.sub(_PATH, out)
        out = _POSIX_PATH.sub(_PATH, out)
        out = _IPV4.sub(lambda m: m.group(0) if self._host_allowed(m.group(0).split(":")[0]) else _HOST, out)
        out = _IPV6.sub(lambda m: m.group(0) if m.group(0).count(":") < 3 else _HOST, out)
        out = _HOST_PORT.sub(lambda m: m.group(0) if self._host_allowed(m.group(1)) else _HOST, out)
        return _HOSTNAME.sub(self._hostname, out)

    def value(self, value: Any, depth: int = 0) -> Any:
        """Every string inside ``value`` (an error body: dicts, lists, strings) sanitized."""
        if isinstance(value, str):
            return self.text(value)
        if depth > 20:
            return value
        if isinstance(value, dict):
            return {k: self.value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, depth + 1) for v in value]
        return value


def _safe_path(path: str) -> bool:
    # The gateway's own routes (/v1/..., /mcp, /docs, /.well-known/...) carry no secret.
    return bool(re.fullmatch(r"/(?:v1|mcp|docs|openapi\.json|health|\.well-known)(?:/[\w.{}-]*)*/?", path))


def public_hosts_of(*urls: str | None) -> list[str]:
    """Host names of the operator's own public URLs (they may appear in fix messages)."""
    hosts = []
    for url in urls:
        if url:
            try:
                host = urlsplit(url).hostname
            except ValueError:
                continue
            if host:
                hosts.append(host)
    return hosts
