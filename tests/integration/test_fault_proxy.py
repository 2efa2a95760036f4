"""The fault/latency proxy in front of a real moto server, checked through boto3.

One proxy process serves the module (starting it costs ~0.3 s); each test sets the options it needs and
zeroes the counters first. Access keys are random per test so token buckets and per-key counters never
carry over between tests.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

from scanner.emulator.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

# One attempt only: the test looks at the proxy's answer itself, not at botocore's retries of it.
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30)


@pytest.fixture(scope="module")
def proxy(emulator: Any) -> Iterator[FaultProxy]:
    with FaultProxy(emulator.endpoint_url) as running:
        yield running


@pytest.fixture()
def fresh_proxy(proxy: FaultProxy) -> FaultProxy:
    proxy.configure(
        latency_ms=0, rate_per_key=0, burst=10, throttle_fraction=0, hang_services=[], hang_access_keys=[],
        fail_services=[],
    )
    proxy.reset()
    return proxy


def new_access_key() -> str:
    return "AKIA" + secrets.token_hex(8).upper()


def client_factory(proxy: FaultProxy, access_key: str | None = None) -> Callable[..., Any]:
    key = access_key or new_access_key()

    def make(service: str, region: str = "us-east-1", config: Config = NO_RETRIES) -> Any:
        return boto3.client(
            service, endpoint_url=proxy.url, region_name=region, aws_access_key_id=key,
            aws_secret_access_key="testing", config=config,
        )

    make.access_key = key  # type: ignore[attr-defined]
    return make


def error_of(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def test_latency_is_added_to_every_call(fresh_proxy: FaultProxy) -> None:
    sts = client_factory(fresh_proxy)("sts")
    sts.get_caller_identity()  # connection set up outside the timing

    def median_call_s() -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            sts.get_caller_identity()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    base = median_call_s()
    fresh_proxy.configure(latency_ms=150)
    slowed = median_call_s()
    added_ms = (slowed - base) * 1000
    assert 140 <= added_ms <= 260, f"proxy added {added_ms:.0f} ms, configured 150 ms (base call {base * 1000:.1f} ms)"
    assert fresh_proxy.stats()["config"]["latency_ms"] == 150


@pytest.mark.parametrize(
    ("service", "region", "call", "code", "status"),
    [
        ("ec2", "eu-west-1", lambda c: c.describe_instances(), "RequestLimitExceeded", 503),
        ("sts", "us-east-1", lambda c: c.get_caller_identity(), "Throttling", 400),
        ("autoscaling", "us-east-1", lambda c: c.describe_auto_scaling_groups(), "Throttling", 400),
        ("dynamodb", "us-east-1", lambda c: c.list_tables(), "ThrottlingException", 400),  # JSON 1.0
        ("logs", "us-east-1", lambda c: c.describe_log_groups(), "ThrottlingException", 400),  # JSON 1.1
        ("lambda", "us-east-1", lambda c: c.list_functions(), "TooManyRequestsException", 429),  # REST-JSON
        ("s3", "us-east-1", lambda c: c.list_buckets(), "SlowDown", 503),  # REST-XML
    ],
)
def test_throttling_speaks_each_protocol(
    fresh_proxy: FaultProxy, service: str, region: str, call: Callable[[Any], Any], code: str, status: int
) -> None:
    client = client_factory(fresh_proxy)(service, region)
    call(client)  # answered by moto while nothing is throttled
    fresh_proxy.configure(throttle_fraction=1.0)

    error = error_of(lambda: call(client))

    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    # botocore's own retry logic classifies it as throttling (so the scanner's retries will see it as such).
    assert ThrottledRetryableChecker().is_retryable(RetryContext(attempt_number=1, parsed_response=error.response))
    stats = fresh_proxy.stats()
    assert stats["throttled"] == 1 and stats["forwarded"] == 1 and stats["requests"] == 2


def test_rate_limit_is_per_access_key_region_and_service(fresh_proxy: FaultProxy) -> None:
    # 0.5/s: a token every 2 s, far apart from the calls' own pace even on a loaded machine.
    fresh_proxy.configure(rate_per_key=0.5, burst=3)
    first = client_factory(fresh_proxy)
    second = client_factory(fresh_proxy)
    ec2_first = first("ec2", "eu-west-1")

    outcomes = []
    for _ in range(5):
        try:
            ec2_first.describe_vpcs()
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    # The burst passes, then the bucket (0.5/s refill, calls ~10 ms apart) is empty.
    assert outcomes[:3] == ["ok", "ok", "ok"]
    assert outcomes[3:] == ["RequestLimitExceeded", "RequestLimitExceeded"]

    # Another account, another region of the same account, another service: each has its own full bucket.
    second("ec2", "eu-west-1").describe_vpcs()
    first("ec2", "us-east-2").describe_vpcs()
    first("sts", "eu-west-1").get_caller_identity()

    time.sleep(2.2)  # refills at least one token at 0.5/s (more if the calls above were slow: a loaded machine)
    after = []
    for _ in range(4):  # the burst (3) caps what refilled, so four quick calls always meet an empty bucket
        try:
            ec2_first.describe_vpcs()
            after.append("ok")
        except ClientError as exc:
            after.append(exc.response["Error"]["Code"])
    assert after[0] == "ok" and after[-1] == "RequestLimitExceeded", after

    by_key = fresh_proxy.stats()["by_key"]
    assert by_key[f"{first.access_key}/eu-west-1/ec2"] == {  # type: ignore[attr-defined]
        "requests": 9, "throttled": 2 + after.count("RequestLimitExceeded")}
    assert by_key[f"{second.access_key}/eu-west-1/ec2"] == {"requests": 1, "throttled": 0}  # type: ignore[attr-defined]
    assert by_key[f"{first.access_key}/us-east-2/ec2"] == {"requests": 1, "throttled": 0}  # type: ignore[attr-defined]
    assert by_key[f"{first.access_key}/eu-west-1/sts"] == {"requests": 1, "throttled": 0}  # type: ignore[attr-defined]


def test_sessions_assumed_into_one_account_share_its_bucket(fresh_proxy: FaultProxy) -> None:
    account = "2" + secrets.choice("123456789") + "".join(secrets.choice("0123456789") for _ in range(10))
    sts = client_factory(fresh_proxy)("sts")
    role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
    sessions = [sts.assume_role(RoleArn=role, RoleSessionName=f"worker-{i}")["Credentials"] for i in range(2)]
    assert sessions[0]["AccessKeyId"] != sessions[1]["AccessKeyId"]  # moto: one key per session
    first, second = (client_factory(fresh_proxy, c["AccessKeyId"]) for c in sessions)
    fresh_proxy.configure(rate_per_key=1, burst=3)

    for _ in range(3):
        first("ec2", "eu-west-1").describe_vpcs()
    # The account's bucket is empty now, whichever session asks (the proxy read AssumeRole's answers).
    assert error_of(second("ec2", "eu-west-1").describe_vpcs).response["Error"]["Code"] == "RequestLimitExceeded"
    second("ec2", "us-east-2").describe_vpcs()  # another region of that account: its own bucket
    stats = fresh_proxy.stats()
    assert stats["by_key"][f"{sessions[1]['AccessKeyId']}/eu-west-1/ec2"] == {"requests": 1, "throttled": 1}
    assert stats["by_bucket"][f"{account}/eu-west-1/ec2"] == {"requests": 4, "throttled": 1}
    assert stats["accounts_learned"] >= 2


def test_stats_count_requests_and_reset_zeroes_them(fresh_proxy: FaultProxy) -> None:
    make = client_factory(fresh_proxy)
    sqs = make("sqs", "eu-west-1")
    queue_url = sqs.create_queue(QueueName="proxy-" + secrets.token_hex(4))["QueueUrl"]
    assert queue_url.startswith(fresh_proxy.url), "moto builds queue URLs from the Host header the proxy keeps"
    sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    make("ec2", "eu-west-1").describe_regions()

    stats = fresh_proxy.stats()
    assert stats["requests"] == 3 and stats["forwarded"] == 3 and stats["throttled"] == 0
    assert stats["by_key"][f"{make.access_key}/eu-west-1/sqs"]["requests"] == 2  # type: ignore[attr-defined]
    assert stats["by_operation"]["ec2:DescribeRegions"] == 1
    assert stats["by_operation"]["sqs:AmazonSQS.CreateQueue"] == 1
    assert stats["pid"] == fresh_proxy.pid
    assert stats["cpu_seconds"] > 0

    fresh_proxy.reset()
    zeroed = fresh_proxy.stats()
    assert (zeroed["requests"], zeroed["forwarded"], zeroed["throttled"], zeroed["by_key"]) == (0, 0, 0, {})


def test_hang_holds_requests_until_configure_releases_them(fresh_proxy: FaultProxy) -> None:
    make = client_factory(fresh_proxy)
    hold_all = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=60)
    ec2 = make("ec2", "eu-west-1", hold_all)
    ec2.describe_regions()
    fresh_proxy.configure(hang_services=["ec2"])
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.append(ec2.describe_regions()), daemon=True)
    caller.start()

    caller.join(1.0)
    assert caller.is_alive(), "the ec2 call was answered while ec2 hangs"
    assert fresh_proxy.stats()["hung_now"] == 1
    make("sts").get_caller_identity()  # other services keep flowing

    released_at = time.monotonic()
    fresh_proxy.configure(hang_services=[])
    caller.join(10)
    assert not caller.is_alive() and answers and answers[0]["Regions"]
    assert time.monotonic() - released_at < 5

    # Holding by access key: only that account's calls wait.
    stuck = client_factory(fresh_proxy)
    fresh_proxy.configure(hang_access_keys=[stuck.access_key])  # type: ignore[attr-defined]
    caller = threading.Thread(target=lambda: stuck("sts", config=hold_all).get_caller_identity(), daemon=True)
    caller.start()
    caller.join(0.5)
    assert caller.is_alive()
    make("sts").get_caller_identity()
    fresh_proxy.configure(hang_access_keys=[])
    caller.join(10)
    assert not caller.is_alive()


def test_fail_services_answer_internal_error(fresh_proxy: FaultProxy) -> None:
    make = client_factory(fresh_proxy)
    fresh_proxy.configure(fail_services=["ec2", "dynamodb"])
    for call in (make("ec2", "eu-west-1").describe_instances, make("dynamodb").list_tables):
        error = error_of(call)
        assert error.response["Error"]["Code"] == "InternalError"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    make("sts").get_caller_identity()
    assert fresh_proxy.stats()["failed"] == 2


def test_bad_options_name_the_field(fresh_proxy: FaultProxy, emulator: Any) -> None:
    with pytest.raises(ValueError, match="throttle_fraction: must be between 0 and 1"):
        fresh_proxy.configure(throttle_fraction=1.5)
    with pytest.raises(ValueError, match="hang_services: expected a list of strings"):
        fresh_proxy.configure(hang_services="ec2")
    with pytest.raises(ValueError, match="latency: unknown option"):
        fresh_proxy.configure(latency=5)
    with pytest.raises(ValueError, match="latecy_ms: unknown FaultProxy option"):
        FaultProxy(emulator.endpoint_url, latecy_ms=5)
    assert fresh_proxy.stats()["config"]["throttle_fraction"] == 0

    command = [sys.executable, "-m", "scanner.emulator.fault_proxy", "--upstream", emulator.endpoint_url]
    for extra, message in (
        (["--burst", "0"], "--burst: must be >= 1"),
        (["--host", "0.0.0.0"], "--host: must be a loopback address"),
    ):
        done = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_peak_of_calls_in_flight_is_counted(fresh_proxy: FaultProxy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fresh_proxy.configure(latency_ms=300)
    make = client_factory(fresh_proxy)
    clients = [make("sts", region) for region in ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2")]
    assert fresh_proxy.stats()["peak_in_flight"] == 0
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: c.get_caller_identity(), clients))
    stats = fresh_proxy.stats()
    # Four calls of 300 ms each, started together: they overlapped (one after another would peak at 1).
    assert stats["requests"] == 4 and 2 <= stats["peak_in_flight"] <= 4
    for client in clients:
        client.get_caller_identity()
    assert fresh_proxy.stats()["peak_in_flight"] == stats["peak_in_flight"]  # sequential calls add nothing


def test_head_answers_and_the_connection_carries_on(fresh_proxy: FaultProxy) -> None:
    s3 = client_factory(fresh_proxy)("s3")
    bucket = "proxy-head-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=bucket)
    etag = s3.put_object(Bucket=bucket, Key="object", Body=b"0123456789")["ETag"]

    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    # moto answers HEAD with the object's Content-Length and no body: the proxy must not wait for one.
    assert s3.head_object(Bucket=bucket, Key="object")["ETag"] == etag
    # The next call on the same (client-side pooled) connection reads its own answer, not leftovers.
    assert s3.get_object(Bucket=bucket, Key="object")["Body"].read() == b"0123456789"
    assert error_of(lambda: s3.head_bucket(Bucket=bucket + "-missing")).response["Error"]["Code"] == "404"
    stats = fresh_proxy.stats()
    assert stats["forwarded"] == 6 and stats["upstream_errors"] == 0


class KeepAliveUpstream:
    """A tiny HTTP/1.1 upstream on 127.0.0.1 that keeps connections open (moto closes every one after its
    answer, so only this exercises the proxy's pooled upstream connections). Stops with its context."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        # (connection number, method, target, headers, body) per request answered.
        self.seen: list[tuple[int, str, str, dict[str, str], bytes]] = []
        # Close the connection on the next request without a byte of answer: a server whose idle timeout hit
        # just as the proxy reused the connection.
        self.drop_next_request = threading.Event()
        self._connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> KeepAliveUpstream:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._connections += 1
            threading.Thread(target=self._serve, args=(connection, self._connections), daemon=True).start()

    def _serve(self, connection: socket.socket, number: int) -> None:
        connection.settimeout(30)
        buffer = b""
        with connection:
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        chunk = connection.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    request_line, *lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = request_line.split(" ")
                    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
                    length = int(headers.get("content-length", "0"))
                    while len(buffer) < length:
                        buffer += connection.recv(65536)
                except (TimeoutError, OSError):
                    return
                body, buffer = buffer[:length], buffer[length:]
                if self.drop_next_request.is_set():
                    self.drop_next_request.clear()
                    return
                self.seen.append((number, method, target, headers, body))
                connection.sendall(self._answer(method, target, body))
                if target in ("/broken", "/then-close"):  # /then-close: an idle timeout right after the answer
                    return

    @staticmethod
    def _answer(method: str, target: str, body: bytes) -> bytes:
        if target == "/chunked":
            return b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n" \
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        if target == "/broken":  # promises 100 bytes, sends 7, closes
            return b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"
        payload = body or b"hello world"
        head = (
            f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\netag: \"v1\"\r\nx-upstream: yes\r\n"
            f"content-length: {len(payload)}\r\n\r\n"
        ).encode()
        # A HEAD answer carries the length a GET would have, and no body.
        return head if method == "HEAD" else head + payload


def test_upstream_connections_are_reused_and_stale_ones_retried() -> None:
    with KeepAliveUpstream() as upstream, FaultProxy(upstream.url) as proxy:
        address = urllib.parse.urlsplit(proxy.url)
        client = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)

        def call(
            method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str], bytes]:
            client.request(method, target, body=body, headers=headers or {})
            response = client.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()

        status, headers, body = call("HEAD", "/object")
        assert (status, body, headers["etag"], headers["x-upstream"]) == (200, b"", '"v1"', "yes")
        status, headers, body = call("GET", "/object")
        assert (status, body, headers["content-length"]) == (200, b"hello world", "11")
        status, headers, body = call("GET", "/chunked?x=1")
        assert (status, body, headers["content-length"]) == (200, b"hello world", "11")
        assert "transfer-encoding" not in headers
        status, _, body = call("POST", "/echo", b"payload", {"Expect": "100-continue", "Connection": "keep-alive"})
        assert (status, body) == (200, b"payload")
        # One upstream connection carried all four: the HEAD answer ended with its headers.
        assert [(n, m, t) for n, m, t, _, _ in upstream.seen] == [
            (1, "HEAD", "/object"), (1, "GET", "/object"), (1, "GET", "/chunked?x=1"), (1, "POST", "/echo")]
        forwarded_get, forwarded_post = upstream.seen[1][3], upstream.seen[3][3]
        assert forwarded_get["host"] == f"{address.hostname}:{address.port}"  # the client's Host, unchanged
        assert forwarded_get["content-length"] == "0" and forwarded_post["content-length"] == "7"
        assert "expect" not in forwarded_post and "connection" not in forwarded_post

        # The upstream drops the idle connection as the proxy reuses it: sent again on a fresh one, unseen.
        upstream.drop_next_request.set()
        status, _, body = call("GET", "/object")
        assert (status, body) == (200, b"hello world")
        assert upstream.seen[-1][0] == 2
        # Closed while idle, without a word (no Connection: close): the next call goes out on a new connection.
        assert call("GET", "/then-close")[0] == 200
        status, _, body = call("GET", "/object")
        assert (status, body) == (200, b"hello world")
        assert upstream.seen[-1][0] == 3
        assert proxy.stats()["upstream_errors"] == 0

        # Any other failure is the client's 502 and an upstream error, and the broken connection is dropped.
        status, headers, body = call("GET", "/broken")
        assert status == 502
        assert json.loads(body) == {"error": f"upstream {upstream.url} unreachable: UpstreamClosedError"}
        status, _, body = call("GET", "/object")
        assert (status, body) == (200, b"hello world")
        assert upstream.seen[-1][0] == 4  # not /broken's connection (3)
        stats = proxy.stats()
        assert stats["upstream_errors"] == 1 and stats["forwarded"] == 8
        client.close()
