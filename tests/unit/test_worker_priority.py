"""Celery workers lower their CPU priority at start (FINOPS_WORKER_NICE); an embedded worker, which runs inside
the gateway's process, leaves it alone. Each case runs in a fresh interpreter: a niced process cannot go back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, sys
import workers.runtime as r
if sys.argv[1] == "embedded":
    r.use_runtime(object())
r._lower_cpu_priority()
print(os.getpriority(os.PRIO_PROCESS, 0))
"""


def _priority_after_worker_init(kind: str, nice: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINOPS_")}
    env.update({"FINOPS_WORKER_NICE": nice, "PYTHONPATH": str(ROOT)})
    out = subprocess.run([sys.executable, "-c", PROBE, kind], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_a_worker_lowers_its_priority_to_the_setting() -> None:
    start = os.getpriority(os.PRIO_PROCESS, 0)
    assert _priority_after_worker_init("worker", "17") == max(start, 17)
    # 0 keeps whatever the process inherited (never raised: that would need privileges).
    assert _priority_after_worker_init("worker", "0") == start


def test_an_embedded_worker_leaves_the_gateway_process_alone() -> None:
    assert _priority_after_worker_init("embedded", "17") == os.getpriority(os.PRIO_PROCESS, 0)
