"""End-to-end fixtures: one seeded AWS emulator process per session, the environment that points the
project's own processes (``finops-tags mcp`` / ``finops-tags serve``) at it, and a synchronous driver
for the MCP SDK's client.

The emulator runs in its own process so that its CPU (moto answers every call) and its module-level
state stay out of the test process. It is seeded once, from this process, with the demo organization,
so the tests know exactly what lives where (``DemoEstate.count(account, region, type)``) and compare
the servers' answers with it.
"""

from __future__ import annotations

import functools
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port, service_missing

BIN = Path(sys.executable).parent
FINOPS_TAGS = str(BIN / "finops-tags")
# Variables of the developer's or CI's environment that would steer a server away from the emulator
# or out of the embedded mode (a real AWS profile, a production database or broker).
_DROP_PREFIXES = ("AWS_", "FINOPS_")
_DROP_NAMES = {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL"}


def _stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """End a process this suite started, by its PID: SIGTERM, then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------- emulator

#: Every tool the MCP server lists, with the annotations it must carry: (readOnlyHint, destructiveHint,
#: idempotentHint). One table for every e2e test; a new tool is added here with its reasons.
TOOL_ANNOTATIONS: dict[str, tuple[bool, bool, bool]] = {
    # Starting a scan writes a job row but changes nothing in the cloud; each call starts a new one.
    "check_tag_compliance": (False, False, False),
    "find_untagged_resources": (False, False, False),
    # Syncing the organization twice with nothing changed stores the same versions.
    "import_aws_tag_policy": (False, False, True),
    # Schedules are rows of this system: creating one twice makes two; updating and deleting converge.
    "schedule_compliance_audit": (False, False, False),
    "update_audit_schedule": (False, False, True),
    "delete_audit_schedule": (False, True, True),
    # A tagging request is a new row each time (nothing changes in the cloud); approving one applies tag
    # changes in the cloud (destructive), and a decision cannot be repeated.
    "bulk_tag_resources": (False, False, False),
    "approve_bulk_tagging_request": (False, True, False),
    # Everything else reads stored results, the cloud or cost data, and changes nothing.
    **{name: (True, False, True) for name in (
        "get_scan_status", "list_scans", "list_violations", "validate_resource_tags", "get_tagging_policy",
        "generate_compliance_report", "get_violation_history", "detect_tag_drift", "export_violations_csv",
        "get_cost_attribution_gap", "suggest_tags", "suggest_tags_batch", "list_audit_schedules",
        "validate_tagging_policy", "preview_bulk_tagging", "get_tagging_request")},
}
TOOLS = frozenset(TOOL_ANNOTATIONS)
READ_ONLY_TOOLS = frozenset(name for name, (read_only, _, _) in TOOL_ANNOTATIONS.items() if read_only)


@dataclass(frozen=True)
class SeededEmulator:
    endpoint: str
    estate: Any  # scanner.emulator.DemoEstate
    log_path: Path

    @property
    def accounts(self) -> list[str]:
        return list(self.estate.member_account_ids)

    @property
    def regions(self) -> list[str]:
        return list(self.estate.regions)

    def count(self, account: str | None = None, region: str | None = None, rtype: str | None = None) -> int:
        return int(self.estate.count(account, region, rtype))


@pytest.fixture(scope="session")
def seeded_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededEmulator]:
    """``python -m scanner.emulator`` on a free port, seeded once with the demo organization
    (3 member accounts x 3 regions, ~640 resources of 20 types)."""
    try:
        import moto  # noqa: F401
    except ImportError:
        service_missing("moto (the AWS emulator) is not installed")
    from scanner.emulator.demo_estate import seed_demo_organization

    log_path = tmp_path_factory.mktemp("emulator") / "emulator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scanner.emulator", "--port", "0", "--seed", "none"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        endpoint = _await_line(proc, "EMULATOR_READY ", timeout=60, log_path=log_path).split()[1]
        estate = seed_demo_organization(endpoint)
        assert estate.expected_resource_count > 500, estate.summary()
        yield SeededEmulator(endpoint=endpoint, estate=estate, log_path=log_path)
    finally:
        _stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _await_line(proc: subprocess.Popen[str], prefix: str, *, timeout: float, log_path: Path) -> str:
    """The first stdout line starting with ``prefix``; fails with the process's log if it never comes."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name="emulator-stdout").start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the emulator printed no {prefix.strip()} within {timeout} s "
                         f"(exit code {proc.poll()}); log:\n{log_path.read_text(errors='replace')[-3000:]}")


# -------------------------------------------------------------------------------------- server env

ServerEnv = Callable[[Path], dict[str, str]]


@pytest.fixture(scope="session")
def server_env(seeded_emulator: SeededEmulator) -> ServerEnv:
    """Builds the environment of a ``finops-tags`` process: embedded mode with its SQLite file under
    ``home``, boto3 pointed at the emulator, and the seeded member accounts and regions as the default
    scope (so a scan without filters covers exactly the seeded estate)."""
    from scanner.emulator.server import aws_env

    def make(home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in _DROP_NAMES}
        env.update(aws_env(seeded_emulator.endpoint))
        env.update({
            "FINOPS_HOME": str(home),
            "FINOPS_ACCOUNTS": ",".join(seeded_emulator.accounts),
            "FINOPS_REGIONS": ",".join(seeded_emulator.regions),
            # The seeded organization has tag policies; tests expect the shipped policy unless they opt in.
            "FINOPS_POLICY_SOURCE": "file",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    return make


# ------------------------------------------------------------------------------------------ gateway

class Gateway:
    """``finops-tags serve`` on a free loopback port, ended by its PID."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = f"{self.base_url}/mcp/"
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([FINOPS_TAGS, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                         cwd=env["FINOPS_HOME"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=2)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise AssertionError(f"/health did not answer 200 within {timeout} s (last: {last}, exit code "
                             f"{self.proc.poll()}); log:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        _stop(self.proc)


@pytest.fixture(scope="module")
def gateway(server_env: ServerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway per test module, with its own database."""
    home = tmp_path_factory.mktemp("gateway-home")
    gw = Gateway(server_env(home), home / "gateway.log")
    try:
        gw.wait_healthy()
        yield gw
    finally:
        gw.stop()


# -------------------------------------------------------------------------------------- MCP client

class SyncMcpClient:
    """The MCP SDK's ``Client``, driven from synchronous tests through an anyio blocking portal.

    The client (and, for stdio, the server process it spawns) lives in the portal's event loop on
    its own thread for as long as the context is open, so one server can serve a whole module.
    """

    def __init__(self, target: Any, *, mode: str = "auto", timeout: float = 120.0,
                 elicitation_callback: Any = None) -> None:
        self._target = target
        self._mode = mode
        self._timeout = timeout
        # Async (context, params) -> ElicitResult; the client then declares the elicitation capability.
        self._elicitation_callback = elicitation_callback
        self._portal_cm: AbstractContextManager[Any] | None = None
        self._client_cm: AbstractContextManager[Any] | None = None
        self.client: Any = None

    def __enter__(self) -> SyncMcpClient:
        from anyio.from_thread import start_blocking_portal
        from mcp import Client

        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        try:
            self._client_cm = self.portal.wrap_async_context_manager(
                Client(self._target, mode=self._mode, read_timeout_seconds=self._timeout,  # type: ignore[arg-type]
                       elicitation_callback=self._elicitation_callback))
            self.client = self._client_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._client_cm is not None:
                self._client_cm.__exit__(*exc)
        finally:
            if self._portal_cm is not None:
                self._portal_cm.__exit__(None, None, None)

    def list_tools(self) -> list[Any]:
        tools: list[Any] = []
        cursor = None
        while True:
            page = self.portal.call(functools.partial(self.client.list_tools, cursor=cursor))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return tools

    def call(self, name: str, arguments: dict[str, Any] | None = None,
             progress: list[tuple[float, float | None, str | None]] | None = None) -> Any:
        """``tools/call``; ``progress`` collects the notifications received for this call."""

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            if progress is not None:
                progress.append((value, total, message))

        return self.portal.call(lambda: self.client.call_tool(
            name, arguments or {}, progress_callback=on_progress if progress is not None else None))

    def read_resource(self, uri: str) -> Any:
        return self.portal.call(lambda: self.client.read_resource(uri))


def stdio_target(env: dict[str, str], errlog: Any) -> Any:
    """The SDK's stdio transport spawning ``finops-tags mcp`` (stderr into ``errlog``)."""
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=FINOPS_TAGS, args=["mcp"], env=env, cwd=env["FINOPS_HOME"])
    return stdio_client(params, errlog=errlog)


def tool_text(result: Any) -> str:
    """All text content of a tool result, joined."""
    return "\n".join(getattr(block, "text", "") for block in result.content)


def assert_tool_error(result: Any, *needles: str) -> str:
    """The result is an isError answer naming every needle, without a stack trace."""
    text = tool_text(result)
    assert result.is_error, f"expected isError, got: {text[:500]}"
    assert "Traceback" not in text and 'File "' not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in error: {text}"
    return text
