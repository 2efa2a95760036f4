"""``finops-tags demo``: an emulated AWS organization scanned through the real pipeline.

The emulator (moto's server) runs in this process on 127.0.0.1; the scan goes through the same
submit -> Celery shards -> database -> finalize path as production, then the gateway keeps serving.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from rich.console import Console

from services.config import Settings
from services.schemas import ScanRequest


def run_demo(*, once: bool, fmt: Any, port: int, host: str, render: Callable[..., None],
             wait: Callable[..., Any], serve: Callable[..., None], console: Console) -> None:
    from api.context import get_runtime
    from scanner.emulator.demo_costs import write_demo_focus
    from scanner.emulator.demo_estate import seed_demo_organization
    from scanner.emulator.server import EmulatorServer, aws_env
    from services import cost_gap, scans

    emulator = EmulatorServer()
    emulator.start()
    try:
        # boto3 in this process (and any subprocess) talks to the emulator with fake keys, never to AWS.
        os.environ.update(aws_env(emulator.endpoint_url))
        console.print(f"AWS emulator on {emulator.endpoint_url}; seeding the demo organization...", highlight=False)
        estate = seed_demo_organization(emulator.endpoint_url)
        console.print(f"seeded {estate.expected_resource_count} resources in {len(estate.member_account_ids)} accounts "
                      f"x {len(estate.regions)} regions", highlight=False)
        base = Settings()
        home = base.home / "demo"
        shutil.rmtree(home, ignore_errors=True)  # the emulator is new each run, so is its history
        # The demo judges every account by the shipped example policy (the emulated organization's own
        # tag policies can be synced with `policy import-aws` against a real organization).
        # The emulator bills nothing: a FOCUS export of the seeded resources lets the demo price the gap.
        focus = write_demo_focus(estate.resources, home / "demo-focus.csv", payer_account=estate.management_account_id)
        settings = Settings(home=home, aws_endpoint_url=emulator.endpoint_url, database_url=None,
                            accounts=estate.account_ids, regions=list(estate.regions), policy_source="file",
                            focus_path=str(focus))
        rt = get_runtime(settings)
        # 'all' walks Organizations ListAccounts and assumes a role into each member, as in a real org.
        request = ScanRequest(accounts="all", regions=list(estate.regions))
        scan_id = scans.submit(rt, request, requested_by="demo")
        console.print(f"scan {scan_id} submitted", highlight=False)
        result = wait(rt, scan_id, timeout=900)
        render(rt, result, fmt, None)
        if str(getattr(fmt, "value", fmt)) == "table":
            gap = cost_gap.cost_attribution_gap(rt, group_by="account")
            console.print(f"\n[bold]Cost of non-compliance[/] (demo FOCUS export, {gap.metric}): "
                          f"{gap.attribution_gap:,.2f} of {gap.taggable_cost:,.2f} USD taggable spend "
                          f"({gap.attribution_gap_percentage or 0:.1f} %) cannot be attributed; "
                          "ask get_cost_attribution_gap for more", highlight=False)
        if once:
            return

        def announce(bound: int) -> None:
            url = f"http://{host}:{bound}/mcp/"
            snippet = {"mcpServers": {"finops-tag-compliance": {"command": "npx", "args": ["-y", "mcp-remote", url]}}}
            console.print(f"\n[bold]Gateway ready[/]: REST http://{host}:{bound}/docs   MCP (streamable HTTP) {url}",
                          highlight=False)
            console.print("Claude Code:    claude mcp add --transport http finops " + url, highlight=False)
            console.print("Claude Desktop (claude_desktop_config.json):\n" + json.dumps(snippet, indent=2),
                          highlight=False, markup=False)
            console.print("Press Ctrl+C to stop.", highlight=False)

        serve(settings, host, port, on_started=announce)
    finally:
        emulator.stop()
