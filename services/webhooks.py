"""Which webhook URLs the server may call: the SSRF guard shared by schedule validation and delivery."""

from __future__ import annotations

import ipaddress
import socket

import httpx

from services.config import Settings


class WebhookRefused(Exception):
    """The server will not call this URL; the message says why (never the URL's secret path)."""


_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_webhook_target(settings: Settings, url: str, *, resolve: bool = True) -> None:
    """Refuse a webhook the server must not call, checked again at every delivery (settings may have
    changed since the schedule was saved): not https (unless allowed), a host off the allow-list, or a
    host that resolves to a loopback, private, link-local, shared or metadata address (unless allowed).

    ``resolve=False`` (when a schedule is saved) checks what the URL itself says (scheme, allow-list,
    address literals, local names) without DNS; delivery resolves the name just before the request. A DNS
    answer that changes in between (rebinding) is not prevented here: keep FINOPS_WEBHOOK_ALLOWED_HOSTS set
    in production."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise WebhookRefused("not a valid URL") from None
    if any(ord(ch) < 33 for ch in url):
        raise WebhookRefused("the URL contains spaces or control characters")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and settings.webhook_allow_http):
        raise WebhookRefused("webhooks must use https (FINOPS_WEBHOOK_ALLOW_HTTP allows http)")
    host = (parsed.host or "").lower()
    allowed = [h.lower() for h in settings.webhook_allowed_hosts]
    if allowed and not any(host == a or (a.startswith("*.") and host.endswith(a[1:])) for a in allowed):
        raise WebhookRefused(f"host {host!r} is not in FINOPS_WEBHOOK_ALLOWED_HOSTS")
    if settings.webhook_allow_private_hosts:
        return
    literal = _literal_address(host)
    if literal is not None and not literal.is_global:
        raise WebhookRefused(f"{literal} is not a public address; FINOPS_WEBHOOK_ALLOW_PRIVATE_HOSTS allows it")
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        raise WebhookRefused(f"host {host!r} is local; FINOPS_WEBHOOK_ALLOW_PRIVATE_HOSTS allows it")
    if not resolve or literal is not None:
        return
    try:
        infos = socket.getaddrinfo(host, parsed.port or (443 if parsed.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise WebhookRefused(f"host {host!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise WebhookRefused(f"host {host!r} resolves to a non-public address ({address}); "
                                "FINOPS_WEBHOOK_ALLOW_PRIVATE_HOSTS allows it")
