"""An in-process AWS emulator (moto's server on a thread) for tests, benchmarks and the demo.

The emulator listens on 127.0.0.1 only, on a free port chosen by the OS unless one is given, and
answers every AWS API moto implements at a single endpoint. boto3 reaches it through
``endpoint_url=`` (in process) or ``AWS_ENDPOINT_URL`` (subprocesses, see :func:`aws_env`).

One caveat shapes how it is used: moto keeps its state (every account, region and resource) in
module-level backends, so every emulator started in one Python process shares that state, and a
:meth:`EmulatorServer.reset` clears it for all of them. Tests that need isolated estates either
reset between uses or run the emulator in its own process (``python -m scanner.emulator``).
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

# Loopback only: the emulator accepts any credentials, so it must never listen on a reachable
# interface by accident (the container profile passes --host 0.0.0.0 explicitly).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"

# moto accepts any key pair; these values only need to be non-empty so botocore signs requests.
# Without a matching IAM access key moto attributes every call to its default account.
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"  # not a secret: the emulator accepts anything

# moto's default account: where calls signed with the fake keys land (the organization's management
# account in the demo). Assumed-role credentials land in the role's account instead.
MANAGEMENT_ACCOUNT_ID = "123456789012"


def disable_default_amis() -> None:
    """Stop moto from loading its catalogue of public AMIs.

    moto attributes the ~1,300 snapshots behind those AMIs to whichever account asks, so
    ``DescribeSnapshots(OwnerIds=['self'])`` would list them as the account's own and drown the
    estate. Real AWS does not; instances launch fine without the catalogue. Must run before the
    first EC2 backend is created (moto reads it lazily, per account and region).
    """
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"


def fake_credentials(region: str = DEFAULT_REGION) -> dict[str, str]:
    """Keyword arguments for ``boto3.Session``/``boto3.client`` with the emulator's fake keys."""
    return {
        "aws_access_key_id": FAKE_ACCESS_KEY_ID,
        "aws_secret_access_key": FAKE_SECRET_ACCESS_KEY,
        "region_name": region,
    }


def aws_env(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Environment variables that point a subprocess's boto3 at the emulator.

    Merge into a copy of the parent environment (``{**os.environ, **aws_env(url)}``) and drop
    ``AWS_PROFILE`` from it if set, so a developer's real profile cannot win over the fake keys.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # botocore would otherwise probe the EC2 instance metadata endpoint for credentials/region
        # when something is missing, which costs seconds of timeouts off EC2.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def make_session(credentials: Mapping[str, str]) -> Any:
    """A ``boto3.Session`` from keyword credentials (as :func:`fake_credentials` or an assumed role).

    Typed ``Any`` on purpose: boto3's stubs type ``client()`` per literal service name, and the
    harness passes service names around as plain strings.
    """
    import boto3

    return boto3.Session(
        aws_access_key_id=credentials.get("aws_access_key_id"),
        aws_secret_access_key=credentials.get("aws_secret_access_key"),
        aws_session_token=credentials.get("aws_session_token"),
        region_name=credentials.get("region_name"),
    )


def post_moto_api(endpoint_url: str, path: str, body: bytes = b"", timeout: float = 30.0) -> bytes:
    """POST to one of moto's control endpoints (``/moto-api/reset``, ``/moto-api/seed?a=42``)."""
    request = urllib.request.Request(endpoint_url.rstrip("/") + path, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data: bytes = response.read()
        return data


class EmulatorServer:
    """moto's threaded server as a context manager.

    >>> with EmulatorServer() as emulator:            # doctest: +SKIP
    ...     s3 = emulator.client("s3")
    ...     s3.create_bucket(Bucket="demo")

    ``port=0`` (the default) lets the OS pick a free port; :attr:`endpoint_url` reports the one
    bound. ``quiet`` silences werkzeug's one-line-per-request access log, which would otherwise
    flood test output with thousands of lines.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        region: str = DEFAULT_REGION,
        quiet: bool = True,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._region = region
        self._quiet = quiet
        self._server: ThreadedMotoServer | None = None
        self._bound: tuple[str, int] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Start serving; returns self. Starting twice is an error, not a no-op."""
        if self._server is not None:
            raise RuntimeError("EmulatorServer already started")
        # Imported here, not at module import: moto pulls in hundreds of modules and nothing that
        # merely imports scanner.emulator should pay for that.
        from moto.server import ThreadedMotoServer

        disable_default_amis()
        if self._quiet:
            # werkzeug logs each request at INFO on the "werkzeug" logger and, when that logger has
            # no level, sets INFO itself; an explicit WARNING keeps the access log off.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self._host, port=self._requested_port, verbose=False)
        server.start()
        self._server = server
        # get_host_and_port() reads the socket actually bound, which is how port=0 becomes real.
        self._bound = server.get_host_and_port()
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and credentials -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server is bound to."""
        return self._require_bound()[1]

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``: pass as boto3's ``endpoint_url`` or ``AWS_ENDPOINT_URL``."""
        host, port = self._require_bound()
        return f"http://{host}:{port}"

    @property
    def region(self) -> str:
        """Default region for clients made by this helper."""
        return self._region

    @property
    def credentials(self) -> dict[str, str]:
        """Fake keys and region as boto3 keyword arguments
        (``aws_access_key_id``, ``aws_secret_access_key``, ``region_name``)."""
        return fake_credentials(self._region)

    def env(self) -> dict[str, str]:
        """:func:`aws_env` for this server."""
        return aws_env(self.endpoint_url, self._region)

    def session(self, region: str | None = None) -> Any:
        """A boto3 session with the fake keys (calls land in the management account)."""
        return make_session(fake_credentials(region or self._region))

    def client(self, service: str, region: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server."""
        return self.session(region).client(service, endpoint_url=self.endpoint_url, **kwargs)

    # -- control -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every resource in every account and region (moto's ``POST /moto-api/reset``).

        Note this also clears any other emulator in the same process: moto's state is global.
        """
        post_moto_api(self.endpoint_url, "/moto-api/reset")

    def _require_bound(self) -> tuple[str, int]:
        if self._server is None or self._bound is None:
            raise RuntimeError("EmulatorServer is not running; call start() or use it as a context manager")
        return self._bound


class EmulatorProcess:
    """The emulator in a child process (``python -m scanner.emulator``): isolated moto state.

    Same surface as :class:`EmulatorServer` (``endpoint_url``, ``credentials``, ``client()``,
    ``reset()``), for tests that must not share moto's process-global state with anything else, or
    that want the emulator's CPU off the test's own interpreter. ``seed`` ("demo" or "small") seeds
    inside the child; the estate summary it prints is kept in :attr:`estate_summary`. Seeding from
    the parent with ``seed_demo_organization(proc.endpoint_url)`` works too and returns the full
    ``DemoEstate``.
    """

    def __init__(
        self,
        *,
        seed: str | None = None,
        random_seed: int = 42,
        scale: float = 1.0,
        region: str = DEFAULT_REGION,
        startup_timeout: float = 120.0,
        python: str | None = None,
    ) -> None:
        self._args = ["--port", "0", "--random-seed", str(random_seed), "--scale", str(scale)]
        if seed:
            self._args += ["--seed", seed]
        self._region = region
        self._timeout = startup_timeout
        self._python = python
        self._process: Any = None
        self._endpoint: str | None = None
        self.estate_summary: dict[str, Any] | None = None

    def start(self) -> EmulatorProcess:
        """Start the child and wait until it prints its endpoint (and estate, when seeding)."""
        import json
        import os
        import subprocess
        import sys
        import threading
        from pathlib import Path

        if self._process is not None:
            raise RuntimeError("EmulatorProcess already started")
        # A developer's AWS_* / MOTO_* settings must not leak into the emulator (MOTO_ACCOUNT_ID
        # would move the management account, AWS_PROFILE is meaningless there).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"  # see disable_default_amis()
        # Make the project importable in the child whether it is installed or run from the tree.
        project_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH", "")) if p)
        process = subprocess.Popen(
            [self._python or sys.executable, "-m", "scanner.emulator", *self._args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._process = process
        seeding = "--seed" in self._args
        stdout_lines: list[str] = []
        stderr_lines: list[str] = []
        ready = threading.Event()

        def _drain(stream: Any, sink: list[str], watch: bool) -> None:
            # Both pipes are drained for the child's whole life: a full pipe would block it.
            for line in stream:
                sink.append(line)
                if watch and line.startswith("EMULATOR_ESTATE " if seeding else "EMULATOR_READY "):
                    ready.set()
            if watch:
                ready.set()  # EOF: the child exited before becoming ready

        threading.Thread(target=_drain, args=(process.stdout, stdout_lines, True), daemon=True).start()
        threading.Thread(target=_drain, args=(process.stderr, stderr_lines, False), daemon=True).start()
        ready.wait(self._timeout)
        for line in list(stdout_lines):
            if line.startswith("EMULATOR_READY "):
                self._endpoint = line.split(" ", 1)[1].strip()
            elif line.startswith("EMULATOR_ESTATE "):
                self.estate_summary = json.loads(line.split(" ", 1)[1])
        if self._endpoint is None or (seeding and self.estate_summary is None):
            self.stop()
            detail = "".join(stderr_lines[-20:]) or "(no output)"
            raise RuntimeError(
                f"emulator process did not become ready within {self._timeout:.0f} s: {detail}"
            )
        return self

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        import subprocess

        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is None:
            raise RuntimeError("EmulatorProcess is not running")
        pid: int = self._process.pid
        return pid

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the child's server."""
        if self._endpoint is None:
            raise RuntimeError("EmulatorProcess is not running")
        return self._endpoint

    @property
    def credentials(self) -> dict[str, str]:
        """Fake keys and region as boto3 keyword arguments."""
        return fake_credentials(self._region)

    def env(self) -> dict[str, str]:
        """:func:`aws_env` for this emulator."""
        return aws_env(self.endpoint_url, self._region)

    def client(self, service: str, region: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at the child's server."""
        session = make_session(fake_credentials(region or self._region))
        return session.client(service, endpoint_url=self.endpoint_url, **kwargs)

    def reset(self) -> None:
        """Forget every resource in the child (its state is its own)."""
        post_moto_api(self.endpoint_url, "/moto-api/reset")
