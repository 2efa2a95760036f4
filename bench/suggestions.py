"""Tag suggestion quality on the demo organization: hide a tag whose truth is known, ask for it back.

1. The emulator (own process) is seeded with the demo organization; one scan stores every resource.
2. Every (resource, required tag) pair where the resource carries a valid value is a trial: the value
   is removed from that resource only, and the suggester is asked for the tag. The resource is never
   its own evidence (see services/suggestions.py), so the hidden value cannot leak back.
3. For each confidence threshold: precision = correct top suggestions / top suggestions at or above
   it; recall = correct top suggestions at or above it / trials. Per-tag and per-signal figures too.

The demo estate tags applications consistently (an application has one cost center and owner) and
names resources after their application and environment, as many real estates do; the numbers
measure the method on that kind of estate, not on any estate.

    python -m bench.suggestions [--json] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9)


def run(scale: float) -> dict[str, Any]:
    from scanner.emulator.server import EmulatorProcess, aws_env

    emulator = EmulatorProcess(seed="demo", scale=scale).start()
    try:
        os.environ.update(aws_env(emulator.endpoint_url))
        from api.context import get_runtime
        from services import scans
        from services.config import Settings
        from services.schemas import ScanRequest
        from services.suggestions import EstateIndex, Suggester, _records

        summary = emulator.estate_summary or {}
        settings = Settings(home=Path(tempfile.mkdtemp(prefix="finops-bench-")), aws_endpoint_url=emulator.endpoint_url,
                            policy_source="file")
        rt = get_runtime(settings)
        scan_id = scans.submit(rt, ScanRequest(accounts="all", regions=summary.get("regions")))
        while scans.get_scan(rt, scan_id, violations_limit=0).status not in ("succeeded", "partial", "failed"):
            time.sleep(0.1)
        result = scans.get_scan(rt, scan_id, violations_limit=0)
        accounts = list(result.breakdowns.by_account)
        records = _records(rt, accounts)
        compiled = rt.policies.get(rt.db, result.policy_version)
        suggester = Suggester(EstateIndex(records), lambda _account: compiled)

        outcomes: list[tuple[str, float, bool, str]] = []  # (tag, confidence, correct, first signal)
        trials: Counter[str] = Counter()
        started = time.perf_counter()
        for record in records:
            for rule in compiled.rules_for(record.resource_type):
                truth = record.tags.get(rule.name)
                if not rule.required or truth is None or not rule.accepts(truth):
                    continue
                trials[rule.name] += 1
                hidden = replace(record, tags={k: v for k, v in record.tags.items() if k != rule.name})
                answer = suggester.suggest(hidden)
                top = next((s for s in answer.suggestions if s.tag == rule.name), None)
                if top is not None:
                    outcomes.append((rule.name, top.confidence, top.value == truth, top.signals[0]))
        seconds = time.perf_counter() - started
        total = sum(trials.values())

        def figures(rows: list[tuple[str, float, bool, str]], n: int) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for t in THRESHOLDS:
                kept = [r for r in rows if r[1] >= t]
                correct = sum(1 for r in kept if r[2])
                out[f">={t}"] = {"suggested": len(kept), "correct": correct,
                                 "precision": round(correct / len(kept), 3) if kept else None,
                                 "recall": round(correct / n, 3) if n else None}
            return out

        by_tag = defaultdict(list)
        for row in outcomes:
            by_tag[row[0]].append(row)
        by_signal: dict[str, dict[str, Any]] = {}
        for signal in sorted({r[3] for r in outcomes}):
            rows = [r for r in outcomes if r[3] == signal]
            precision = round(sum(r[2] for r in rows) / len(rows), 3)
            by_signal[signal] = {"top_suggestions": len(rows), "precision": precision}
        return {
            "bench": "suggestions",
            "resources": len(records),
            "trials": total,
            "overall": figures(outcomes, total),
            "by_tag": {tag: figures(rows, trials[tag]) for tag, rows in sorted(by_tag.items())},
            "by_strongest_signal": by_signal,
            "seconds": round(seconds, 3),
            "ms_per_suggestion": round(1000 * seconds / max(total, 1), 3),
            "scale": scale,
        }
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="demo estate size multiplier")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = run(args.scale)
    print(json.dumps(report, indent=None if args.json else 2))
    sys.stdout.flush()
    os._exit(0)  # the embedded worker thread is a daemon; skip its orderly shutdown


if __name__ == "__main__":
    raise SystemExit(main())
