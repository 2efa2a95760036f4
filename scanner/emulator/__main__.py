"""``python -m scanner.emulator``: run moto's server in the foreground, optionally seeded.

Prints one line ``EMULATOR_READY <endpoint>`` once it serves (tests wait for it), then, when seeded,
one line of JSON summarising the estate (``EMULATOR_ESTATE {...}``), and serves until SIGINT or
SIGTERM. ``--port 0`` picks a free port; the printed endpoint has the real one.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from scanner.emulator.demo_estate import seed_demo_organization, seed_small_estate
from scanner.emulator.server import DEFAULT_HOST, EmulatorServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scanner.emulator",
        description="Run the AWS emulator (moto) and optionally seed the demo organization.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--seed",
        choices=("none", "demo", "small"),
        default="none",
        help="estate to create at start: the demo organization, a small two-account estate, or none",
    )
    parser.add_argument("--random-seed", type=int, default=42, help="seed for names, tags and moto IDs")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplier of the demo's resource counts")
    parser.add_argument("--verbose", action="store_true", help="keep the per-request access log")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    with EmulatorServer(args.host, args.port, quiet=not args.verbose) as server:
        # Clients inside a container reach the server by its service name, not the bind address,
        # but the bound port is what matters to them; 0.0.0.0 is reported as the loopback address.
        endpoint = server.endpoint_url.replace("//0.0.0.0:", "//127.0.0.1:")
        if args.seed != "none":
            try:
                if args.seed == "demo":
                    estate = seed_demo_organization(endpoint, seed=args.random_seed, scale=args.scale)
                else:
                    estate = seed_small_estate(endpoint, seed=args.random_seed)
            except Exception as exc:  # report and exit non-zero instead of serving a half-built estate
                print(f"EMULATOR_SEED_FAILED {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                return 1
            print(f"EMULATOR_READY {endpoint}", flush=True)
            print("EMULATOR_ESTATE " + json.dumps(estate.summary(), sort_keys=True), flush=True)
        else:
            print(f"EMULATOR_READY {endpoint}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
