"""Pipeline overhead: the demo estate scanned end to end vs. the same AWS calls made plainly.

1. The emulator runs in its own process, seeded with the demo organization (so its CPU is not ours).
2. Pipeline run: submit -> Celery shards -> evaluate -> database -> finalize, in the embedded mode
   (SQLite, in-process broker and a 4-thread worker), timed from submit to a finished scan. Every
   AWS call the collectors make is recorded (service, operation, parameters, account, region).
3. Baseline: the recorded calls replayed one after the other with plain boto3 clients (one per
   account/service/region, AssumeRole once per account), nothing else.

overhead_pct = (pipeline_s - baseline_s) / baseline_s. Negative means the sharded pipeline beats a
sequential listing of the same calls. Peak memory is this process' max RSS (gateway and embedded
worker share it here), measured by the OS.

    python -m bench.pipeline [--json] [--scale 1.0] [--threads 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any


def _record_calls(factory: Any, sink: list[tuple[str, str, str, str, dict[str, Any]]]) -> None:
    """Hook every client the factory hands out so each API call is logged (no extra calls are made).

    Clients are shared by every account (one per service and region), so the hook goes on each shared
    client once and reads the account from the call being made."""
    from scanner.providers.aws.session import acting_account

    original = factory.client
    lock = threading.Lock()
    hooked: weakref.WeakSet[Any] = weakref.WeakSet()

    def client(account_id: str, service: str, region: str) -> Any:
        c = original(account_id, service, region)
        shared = c._client
        with lock:
            if shared in hooked:
                return c
            hooked.add(shared)
        real_region = shared.meta.region_name

        def hook(params: dict[str, Any], model: Any, **_kw: Any) -> None:
            with lock:
                sink.append((acting_account() or "", service, real_region, model.name,
                             json.loads(json.dumps(params, default=str))))

        shared.meta.events.register(f"provide-client-params.{shared.meta.service_model.service_id.hyphenize()}.*",
                                    hook)
        return c

    factory.client = client


def _replay(calls: list[tuple[str, str, str, str, dict[str, Any]]], endpoint: str, caller: str) -> float:
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1})
    started = time.perf_counter()
    base = boto3.Session()
    sessions: dict[str, Any] = {caller: base}
    clients: dict[tuple[str, str, str], Any] = {}
    for account, service, region, operation, params in calls:
        if account not in sessions:
            creds = base.client("sts", endpoint_url=endpoint).assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="bench",
            )["Credentials"]
            sessions[account] = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                              aws_secret_access_key=creds["SecretAccessKey"],
                                              aws_session_token=creds["SessionToken"])
        key = (account, service, region)
        if key not in clients:
            clients[key] = sessions[account].client(service, region_name=region, endpoint_url=endpoint, config=config)
        client = clients[key]
        method = client.meta.method_to_api_mapping
        name = next(k for k, v in method.items() if v == operation)
        # An error answer (e.g. NoSuchTagSet) is what the pipeline saw too: it costs the same round trip.
        with contextlib.suppress(client.exceptions.ClientError):
            getattr(client, name)(**params)
    return time.perf_counter() - started


def run(scale: float, threads: int) -> dict[str, Any]:
    from scanner.emulator.server import EmulatorProcess, aws_env

    emulator = EmulatorProcess(seed="demo", scale=scale).start()
    try:
        os.environ.update(aws_env(emulator.endpoint_url))
        summary = emulator.estate_summary or {}
        from api.context import get_runtime
        from services import scans
        from services.config import Settings
        from services.schemas import ScanRequest

        home = Path(tempfile.mkdtemp(prefix="finops-bench-"))
        settings = Settings(home=home, aws_endpoint_url=emulator.endpoint_url, embedded_worker_threads=threads)
        rt = get_runtime(settings)
        calls: list[tuple[str, str, str, str, dict[str, Any]]] = []
        _record_calls(rt.aws, calls)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        scan_id = scans.submit(rt, ScanRequest(accounts="all", regions=summary.get("regions")))
        while True:
            result = scans.get_scan(rt, scan_id, violations_limit=0)
            if result.status in ("succeeded", "partial", "failed", "cancelled"):
                break
            time.sleep(0.05)
        pipeline_s = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        baseline_s = _replay(list(calls), emulator.endpoint_url, rt.aws.caller_account())
        return {
            "bench": "pipeline",
            "resources": result.total_resources,
            "shards": result.progress.shards_total,
            "status": result.status,
            "api_calls_recorded": len(calls),
            "pipeline_s": round(pipeline_s, 3),
            "baseline_sequential_boto3_s": round(baseline_s, 3),
            "overhead_pct": round(100 * (pipeline_s - baseline_s) / baseline_s, 1),
            "worker_threads": threads,
            "peak_rss_mb_gateway_and_worker": round(peak_rss_mb, 1),
            "rss_before_scan_mb": round(rss_before / 1024, 1),
            "cpu_count": os.cpu_count(),
        }
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="demo estate size multiplier")
    parser.add_argument("--threads", type=int, default=4, help="embedded worker threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = run(args.scale, args.threads)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>32}: {value}")
    sys.stdout.flush()
    os._exit(0)  # the embedded worker thread is a daemon; skip its orderly shutdown


if __name__ == "__main__":
    raise SystemExit(main())
