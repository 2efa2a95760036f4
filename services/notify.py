"""Notifications of a finished scheduled audit: a webhook POST with Slack-compatible JSON, and an email
(SMTP) with the report attached.

Bounded: every request has a timeout and at most ``FINOPS_NOTIFY_ATTEMPTS`` tries with a short backoff;
a failure is returned as text (recorded on the schedule's ``last_error``), never raised into the
worker loop. Messages never include credentials; a webhook URL (Slack's is a secret) is shown shortened.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, TypeVar

import httpx

from services import report_formats
from services.audit_schedules import RunContext, is_webhook, mask
from services.config import Settings
from services.errors import AppError
from services.report_builder import ComplianceReport
from services.runtime import Runtime
from services.webhooks import WebhookRefused, check_webhook_target

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Slack rejects a section text over 3000 characters and a header over 150.
_SECTION_LIMIT = 2900
_HEADER_LIMIT = 150
_TOP_FINDINGS = 5


class DeliveryError(Exception):
    """One recipient could not be reached; the message says why (no secrets)."""


def deliver(rt: Runtime, ctx: RunContext) -> list[str]:
    """Send the run's notifications to every recipient; returns one line per failed recipient."""
    report: ComplianceReport | None = None
    rendered: report_formats.RenderedReport | None = None
    report_problem: str | None = None
    if ctx.scan_status in ("succeeded", "partial"):
        try:
            rendered = report_formats.generate(rt, format=ctx.notification_format, scan_id=ctx.scan_id)
            report = rendered.report
        except AppError as exc:
            report_problem = f"the report could not be built: {exc}"
    link = report_link(rt.settings, ctx)
    failures: list[str] = []
    hooks = [r for r in ctx.recipients if is_webhook(r)]
    emails = [r for r in ctx.recipients if not is_webhook(r)]
    if hooks:
        payload = slack_payload(ctx, report, link, rendered.filename if rendered else None, report_problem)
        for url in hooks:
            try:
                post_webhook(url, payload, timeout=rt.settings.webhook_timeout_seconds,
                             attempts=rt.settings.notify_attempts, settings=rt.settings)
            except DeliveryError as exc:
                failures.append(f"webhook {mask(url)}: {exc}")
            except Exception as exc:  # one broken recipient never stops the others
                log.exception("schedule %s: webhook %s failed", ctx.schedule_id, mask(url))
                failures.append(f"webhook {mask(url)}: unexpected {type(exc).__name__}")
    if emails:
        attachment = rendered
        body = email_body(ctx, report, link, report_problem)
        if rendered is not None and rendered.size_bytes > rt.settings.email_attachment_max_bytes:
            # Mail servers refuse large messages (552), and then nobody gets even the summary.
            attachment = None
            body += (f"\n\nThe {rendered.format.name} report ({rendered.size_bytes:,} bytes) is too large to attach; "
                     "open it from the link above or with `finops-tags report`.")
        try:
            send_email(rt.settings, emails, subject=subject(ctx, report), body=body, attachment=attachment)
        except DeliveryError as exc:
            failures.append(f"email to {', '.join(emails)}: {exc}")
        except Exception as exc:  # recorded on the schedule, never crashes the notifier
            log.exception("schedule %s: email failed", ctx.schedule_id)
            failures.append(f"email to {', '.join(emails)}: unexpected {type(exc).__name__}")
    for line in failures:
        log.warning("schedule %s: %s", ctx.schedule_id, line)
    return failures


def report_link(settings: Settings, ctx: RunContext) -> str:
    """Where a person reads the full report: an absolute URL with FINOPS_PUBLIC_URL, else the REST path."""
    path = f"/v1/reports/{ctx.scan_id}?format=html"
    return settings.public_url.rstrip("/") + path if settings.public_url else path


# ------------------------------------------------------------------------------------------ content

def _pct(score: float) -> str:
    return f"{score * 100:.1f}%"


def headline(ctx: RunContext, report: ComplianceReport | None) -> str:
    """One line: the score and counts, or why there are none."""
    if report is None:
        why = ctx.scan_error or f"the scan ended {ctx.scan_status}"
        return f"Compliance audit '{ctx.schedule_name}': no result ({why})."
    s = report.summary
    return (f"Compliance audit '{ctx.schedule_name}': {_pct(s.compliance_score)} compliant, "
            f"{s.compliant_resources}/{s.in_scope_resources} resources in scope compliant, "
            f"{s.violations_total} violations (data quality: {report.data_quality.status}).")


def subject(ctx: RunContext, report: ComplianceReport | None) -> str:
    if report is None:
        return f"[finops-tags] Compliance audit '{ctx.schedule_name}' did not produce a result"
    quality = "" if report.data_quality.status == "complete" else f" ({report.data_quality.status} data)"
    score = _pct(report.summary.compliance_score)
    return f"[finops-tags] Compliance audit '{ctx.schedule_name}': {score} compliant{quality}"


def top_findings(report: ComplianceReport, limit: int = _TOP_FINDINGS) -> list[str]:
    """The biggest problems, as plain lines (recommendations first, else tags with the most violations)."""
    lines: list[str] = []
    for rec in (report.recommendations or [])[:limit]:
        lines.append(f"{rec.title}: {rec.resources_affected} resources (+{rec.estimated_score_points:.1f} score "
                     "points when fixed)")
    if not lines:
        for tag in report.by_tag[:limit]:
            lines.append(f"tag {tag.tag_name}: {tag.violations} violations on {tag.resources} resources")
    return lines


def _esc(text: object) -> str:
    # Slack mrkdwn: only &, < and > are control characters; cloud strings must not become links.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(ctx: RunContext, report: ComplianceReport | None, link: str, filename: str | None,
                  report_problem: str | None = None) -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (the fallback every client shows) plus ``blocks``."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"Compliance audit: {ctx.schedule_name}",
                                                                        _HEADER_LIMIT)}}]
    if report is not None:
        s = report.summary
        dq = report.data_quality
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Compliance score*\n{_pct(s.compliance_score)}"},
            {"type": "mrkdwn", "text": f"*Compliant resources*\n{s.compliant_resources} / {s.in_scope_resources} "
                                       f"in scope ({s.total_resources} scanned)"},
            {"type": "mrkdwn", "text": f"*Violations*\n{s.violations_total} "
                                       f"({s.errors} errors, {s.warnings} warnings)"},
            {"type": "mrkdwn", "text": f"*Data quality*\n{dq.status}"
                                       + (f" ({len(dq.failed_shards)} failed shards)" if dq.failed_shards else "")},
        ]})
        findings = top_findings(report)
        if findings:
            text = "*Top findings*\n" + "\n".join(f"• {_esc(line)}" for line in findings)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, _SECTION_LIMIT)}})
    else:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"*No result*: {_esc(ctx.scan_error or 'the scan ended ' + ctx.scan_status)}", _SECTION_LIMIT)}})
    if report_problem:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": _cut(_esc(report_problem), _SECTION_LIMIT)}})
    where = f"<{link}|{_esc(filename or 'report')}>" if link.startswith(("http://", "https://")) else (
        f"{_esc(filename or 'report')} (GET {_esc(link)} on the gateway)")
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"Report: {where} · scan `{ctx.scan_id}` · status {ctx.scan_status}"}]})
    # The fallback text is mrkdwn too: a schedule name or scan error like '<!channel>' must stay text.
    return {"text": _esc(headline(ctx, report)), "blocks": blocks}


def email_body(ctx: RunContext, report: ComplianceReport | None, link: str, report_problem: str | None) -> str:
    lines = [headline(ctx, report), ""]
    if report is not None:
        s = report.summary
        lines += [f"Score: {_pct(s.compliance_score)}",
                  f"Resources: {s.total_resources} scanned, {s.in_scope_resources} in scope, "
                  f"{s.compliant_resources} compliant",
                  f"Violations: {s.violations_total} ({s.errors} errors, {s.warnings} warnings)",
                  f"Data quality: {report.data_quality.status}"]
        lines += [f"  - {note}" for note in report.data_quality.notes[:5]]
        findings = top_findings(report)
        if findings:
            lines += ["", "Top findings:"] + [f"  - {line}" for line in findings]
    if report_problem:
        lines += ["", report_problem]
    lines += ["", f"Scan: {ctx.scan_id} ({ctx.scan_status})", f"Full report: {link}",
              "", f"Sent by finops-tags for the scheduled audit '{ctx.schedule_name}' ({ctx.schedule_id})."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- transport

def _retrying(what: Callable[[], T], attempts: int, retryable: Callable[[Exception], bool]) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return what()
        except Exception as exc:
            if attempt >= attempts or not retryable(exc):
                raise
            time.sleep(min(8.0, 0.5 * 2 ** attempt))
    raise AssertionError("unreachable")


class _RetryableStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0, attempts: int = 3,
                 settings: Settings | None = None) -> None:
    """POST JSON; retried on network errors, 429 and 5xx. Redirects are not followed (the URL is the target).
    With ``settings`` the target is checked first (:func:`check_webhook_target`). An error answer is
    recorded as its status only: a body could carry anything (an internal page, text for a model)."""
    if settings is not None:
        try:
            check_webhook_target(settings, url)
        except WebhookRefused as exc:
            raise DeliveryError(str(exc)) from None

    def once() -> None:
        # Streamed and never read: the answer's status is all that matters.
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, \
                client.stream("POST", url, json=payload, headers={"User-Agent": "finops-tags"}) as response:
            status = response.status_code
        if status == 429 or status >= 500:
            raise _RetryableStatus(status)
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    try:
        _retrying(once, attempts, lambda e: isinstance(e, (_RetryableStatus, httpx.TransportError)))
    except _RetryableStatus as exc:
        raise DeliveryError(f"{exc} after {attempts} attempt(s)") from None
    except httpx.TransportError as exc:
        raise DeliveryError(f"{type(exc).__name__} after {attempts} attempt(s)") from None
    except (httpx.InvalidURL, ValueError) as exc:
        raise DeliveryError(f"not a usable URL ({type(exc).__name__})") from None


def send_email(settings: Settings, recipients: Sequence[str], *, subject: str, body: str,
               attachment: report_formats.RenderedReport | None) -> None:
    """One message to every recipient, the rendered report attached; refused without FINOPS_SMTP_HOST."""
    if not settings.smtp_host:
        raise DeliveryError("no SMTP server is configured (FINOPS_SMTP_HOST)")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="finops-tags")
    message.set_content(body)
    if attachment is not None:
        maintype, _, subtype = attachment.format.media_type.partition("/")
        message.add_attachment(attachment.text.encode("utf-8"), maintype=maintype, subtype=subtype or "octet-stream",
                               filename=attachment.filename)
    host, port = settings.smtp_host, settings.smtp_port

    def once() -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if settings.smtp_ssl:
            smtp = smtplib.SMTP_SSL(host, port, timeout=settings.smtp_timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=settings.smtp_timeout_seconds)
        with smtp:
            if settings.smtp_starttls and not settings.smtp_ssl:
                smtp.starttls(context=context)
            if settings.smtp_user:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_user, password)
            smtp.send_message(message)

    def retryable(exc: Exception) -> bool:
        if isinstance(exc, smtplib.SMTPResponseException):
            return 400 <= exc.smtp_code < 500  # 4xx: transient by definition
        return isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError))

    try:
        _retrying(once, settings.notify_attempts, retryable)
    except smtplib.SMTPAuthenticationError:
        raise DeliveryError("the SMTP server refused FINOPS_SMTP_USER / FINOPS_SMTP_PASSWORD") from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError("the SMTP server does not offer STARTTLS; set FINOPS_SMTP_STARTTLS=false only on "
                            "a trusted network, or FINOPS_SMTP_SSL=true for port 465") from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP {exc.smtp_code}: {text[:200]}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__} after {settings.notify_attempts} attempt(s): {exc}") from None
