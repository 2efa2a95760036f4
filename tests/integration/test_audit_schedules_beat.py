"""Scheduled audits for real: PostgreSQL, a Redis broker, a `celery worker` process and a `celery beat -S
workers.schedule_db:DatabaseScheduler` process. A schedule created through the service after beat started
is fired by beat, its scan runs on the worker, and the recipients hear about it: a webhook receiver gets
Slack-compatible JSON and an SMTP server gets the email with the report attached. Disabling and deleting
schedules stops beat from sending them, without restarting it. Every server binds 127.0.0.1 and stops
at the end of the test; processes are ended by their PID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services import audit_schedules
from services.db.models import ScanRow
from tests.conftest import ROOT, WorkerProcess, celery_bin, free_port

pytestmark = pytest.mark.integration

REFRESH_SECONDS = 3


class BeatProcess:
    """A real `celery -A workers.app beat -S workers.schedule_db:DatabaseScheduler` process."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.log_path = tmp_path / "beat.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [celery_bin(), "-A", "workers.app", "beat", "-S", "workers.schedule_db:DatabaseScheduler",
             "--loglevel", "INFO", "-s", str(tmp_path / "celerybeat-schedule")],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that records every POSTed JSON body (per path)."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook-receiver")
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in list(self.received) if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 collecting every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        messages: list[bytes] = []

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                messages.append(envelope.content)
                return "250 OK"

        self.messages = messages
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, on_timeout: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen after {timeout:.0f} s\n{on_timeout()}")
        time.sleep(0.5)


@pytest.fixture()
def stack(tmp_path: Path, postgres_url: str, redis_url: str, aws_environment: Any) -> Iterator[dict[str, Any]]:
    from scanner.emulator.demo_estate import seed_small_estate
    from scanner.emulator.server import aws_env
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime
    from workers.app import create_app
    from workers.dispatch import CeleryDispatcher

    estate = seed_small_estate(aws_environment.endpoint_url)
    webhook = WebhookReceiver()
    smtp = SmtpReceiver()
    env_vars = {"FINOPS_MODE": "production", "DATABASE_URL": postgres_url, "CELERY_BROKER_URL": redis_url,
                "FINOPS_HOME": str(tmp_path), "FINOPS_POLICY_SOURCE": "file",
                "FINOPS_SCHEDULE_REFRESH_SECONDS": str(REFRESH_SECONDS),
                "FINOPS_SMTP_HOST": "127.0.0.1", "FINOPS_SMTP_PORT": str(smtp.port), "FINOPS_SMTP_STARTTLS": "false",
                "FINOPS_SMTP_FROM": "audits@finops.test", "FINOPS_PUBLIC_URL": "https://finops.example.test",
                # The receivers listen on 127.0.0.1 over http, which production settings refuse (SSRF guard).
                "FINOPS_WEBHOOK_ALLOW_PRIVATE_HOSTS": "true", "FINOPS_WEBHOOK_ALLOW_HTTP": "true",
                "FINOPS_SCHEDULE_MIN_INTERVAL_MINUTES": "1",  # every-minute crons keep the test short
                **aws_env(aws_environment.endpoint_url)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINOPS_")} | env_vars
    settings = Settings(mode="production", database_url=postgres_url, celery_broker_url=redis_url, home=tmp_path,
                        aws_endpoint_url=aws_environment.endpoint_url, policy_source="file", smtp_host="127.0.0.1",
                        smtp_port=smtp.port, smtp_starttls=False, webhook_allow_private_hosts=True,
                        webhook_allow_http=True, schedule_min_interval_minutes=1)
    upgrade(postgres_url)
    worker = WorkerProcess(env, concurrency=2, log_path=tmp_path / "worker.log")
    beat = BeatProcess(env, tmp_path)
    rt = Runtime(settings=settings, db=Database(postgres_url), dispatcher=CeleryDispatcher(create_app(settings)))
    try:
        yield {"rt": rt, "estate": estate, "worker": worker, "beat": beat, "webhook": webhook, "smtp": smtp}
    finally:
        beat.stop()
        worker.stop()
        webhook.stop()
        smtp.stop()
        rt.db.dispose()


def _scans_of(rt: Any, schedule_id: str) -> list[ScanRow]:
    with rt.db.session() as s:
        return list(s.scalars(select(ScanRow).where(ScanRow.requested_by == f"schedule:{schedule_id}")
                              .order_by(ScanRow.created_at)))


def test_beat_fires_a_stored_schedule_and_stops_when_it_is_disabled_or_deleted(stack: dict[str, Any]) -> None:
    rt, estate, beat, worker = stack["rt"], stack["estate"], stack["beat"], stack["worker"]
    webhook, smtp = stack["webhook"], stack["smtp"]

    def logs() -> str:
        return f"beat log:\n{beat.log_text()[-3000:]}\nworker log:\n{worker.log_text()[-3000:]}"

    wait_for("beat start-up", lambda: "audit schedules -> database" in beat.log_text() or
             "beat: Starting" in beat.log_text(), 60, logs)
    scope = {"accounts": list(estate.member_account_ids), "regions": list(estate.regions),
             "resource_types": ["ec2:instance", "s3:bucket"]}
    # Created after beat started: beat must find them in the table (no restart, no config echo).
    hook_a, hook_b = f"/hooks/{uuid.uuid4().hex}", f"/hooks/{uuid.uuid4().hex}"
    a = audit_schedules.create_schedule(rt, cron="* * * * *", name="every minute A", timezone="Europe/Paris",
                                        recipients=[webhook.url(hook_a), "finops@example.com"],
                                        notification_format="markdown", **scope)
    b = audit_schedules.create_schedule(rt, cron="* * * * *", name="every minute B",
                                        recipients=[webhook.url(hook_b)], **scope)
    started = time.monotonic()

    # (1) beat fires both at the next minute; the worker scans; each webhook gets Slack JSON.
    wait_for("webhook A notification", lambda: webhook.bodies(hook_a), 150, logs)
    wait_for("webhook B notification", lambda: webhook.bodies(hook_b), 30, logs)
    elapsed = time.monotonic() - started
    payload = webhook.bodies(hook_a)[0]
    # The outcome is recorded just after the notifications go out: wait for it rather than race it.
    shown = wait_for("A's run recorded", lambda: (lambda sh: sh if sh.last_status == "succeeded" else None)(
        audit_schedules.get_schedule(rt, a.schedule_id)), 15, logs)
    assert shown.last_scan_id, shown
    scan = _scans_of(rt, a.schedule_id)[0]
    assert scan.status == "succeeded" and scan.trigger == "scheduled"
    assert scan.request["resource_types"] == ["ec2:instance", "s3:bucket"]
    assert f"Sending due task audit-schedule:{a.schedule_id}" in beat.log_text()
    assert "audit.run_scheduled" in worker.log_text() and "audit.notify_run" in worker.log_text()

    assert payload["text"].startswith("Compliance audit 'every minute A': ")
    assert f"{scan.compliance_score * 100:.1f}% compliant" in payload["text"]
    assert f"{scan.compliant_resources}/{scan.in_scope_resources} resources" in payload["text"]
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "context" and "section" in kinds
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in payload["blocks"][1]["fields"]}
    assert fields["*Compliance score*"] == f"{scan.compliance_score * 100:.1f}%"
    assert fields["*Data quality*"] == "complete"
    assert any("Top findings" in b.get("text", {}).get("text", "") for b in payload["blocks"])
    context = payload["blocks"][-1]["elements"][0]["text"]
    assert f"<https://finops.example.test/v1/reports/{scan.id}?format=html|compliance-report-{scan.id}.md>" in context

    # (2) The email: the markdown report attached, the summary in the body, sent through SMTP.
    mail = wait_for("the email", lambda: smtp.messages, 30, logs)
    message = message_from_bytes(mail[0], policy=policy.default)
    assert message["To"] == "finops@example.com" and message["From"] == "audits@finops.test"
    assert "every minute A" in message["Subject"] and "compliant" in message["Subject"]
    attachments = list(message.iter_attachments())
    assert [p.get_filename() for p in attachments] == [f"compliance-report-{scan.id}.md"]
    report_text = attachments[0].get_content()
    assert scan.id in report_text and "#" in report_text  # the rendered markdown report
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "Data quality: complete" in body and scan.id in body

    # (3) Disable A, delete B: beat drops both within the refresh delay, and no new scan starts at the
    # next minute boundary.
    audit_schedules.update_schedule(rt, a.schedule_id, enabled=False)
    audit_schedules.delete_schedule(rt, b.schedule_id)
    wait_for("beat dropping A and B", lambda: beat.log_text().count(" removed") >= 2, REFRESH_SECONDS * 4, logs)
    changed_at = datetime.now(UTC)
    scans_a, scans_b = len(_scans_of(rt, a.schedule_id)), len(_scans_of(rt, b.schedule_id))
    posts = len(webhook.received)
    # Past the next minute boundary, plus time for a task that beat would have sent to start a scan.
    time.sleep(60 - changed_at.second + 10)
    assert len(_scans_of(rt, a.schedule_id)) == scans_a and len(_scans_of(rt, b.schedule_id)) == scans_b, logs()
    sent_after = [line for line in beat.log_text().splitlines()
                  if ("audit-schedule:" in line and "Sending due task" in line
                      and _log_time(line) is not None and _log_time(line) > changed_at)]
    assert sent_after == [], sent_after
    assert len(webhook.received) == posts
    assert elapsed < 150


def _log_time(line: str) -> datetime | None:
    match = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+", line)
    if not match:
        return None
    # Celery logs local time: read it as local (astimezone on a naive datetime), then compare in UTC.
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").astimezone(UTC)


def test_rest_crud_of_schedules(tmp_path: Path) -> None:
    from api.http.app import create_app
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime
    from workers.app import create_app as create_celery
    from workers.dispatch import CeleryDispatcher

    settings = Settings(home=tmp_path, policy_source="file")
    upgrade(settings.effective_database_url)
    rt = Runtime(settings=settings, db=Database(settings.effective_database_url),
                 dispatcher=CeleryDispatcher(create_celery(settings)))
    try:
        with TestClient(create_app(lambda: rt)) as client:
            created = client.post("/v1/schedules", json={
                "schedule": "monthly", "time": "06:00", "timezone": "Asia/Tokyo",
                "recipients": ["https://hooks.slack.com/services/T1/B2/secretsecret"], "resource_types": ["s3:bucket"]})
            assert created.status_code == 201, created.text
            body = created.json()
            sid = body["schedule_id"]
            assert body["cron_expression"] == "0 6 1 * *" and body["recipients"] == ["https://hooks.slack.com/…cret"]
            assert body["next_run_local"].endswith("+09:00") and "T06:00:00" in body["next_run_local"]

            bad = client.post("/v1/schedules", json={"cron": "0 9 * *", "timezone": "UTC"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "cron"
            assert "5" in bad.json()["error"]["message"] and bad.json()["error"]["fix"]
            bad = client.post("/v1/schedules", json={"timezone": "Europe/Pariss"})
            assert bad.status_code == 422 and "Europe/Paris" in bad.json()["error"]["fix"]
            bad = client.post("/v1/schedules", json={"recipients": ["ops@example.com"]})
            assert bad.status_code == 422 and "FINOPS_SMTP_HOST" in bad.json()["error"]["fix"]
            bad = client.post("/v1/schedules", json={"timezon": "UTC"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "timezon"

            assert [s["schedule_id"] for s in client.get("/v1/schedules").json()] == [sid]
            patched = client.patch(f"/v1/schedules/{sid}", json={"enabled": False, "cron": "15 7 * * 1-5"})
            assert patched.status_code == 200 and patched.json()["enabled"] is False
            assert patched.json()["next_run"] is None and patched.json()["schedule"] is None
            assert client.get("/v1/schedules", params={"enabled": "true"}).json() == []
            assert client.delete(f"/v1/schedules/{sid}").status_code == 204
            missing = client.get(f"/v1/schedules/{sid}")
            assert missing.status_code == 404 and missing.json()["error"]["field"] == "schedule_id"
    finally:
        rt.db.dispose()
