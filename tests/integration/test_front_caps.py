"""The front's caps through a real proxy process: the buffered-body memory budget (503 with
Retry-After in the service's format, released when requests end), the connection cap (refused
politely, logged once), and running out of file descriptors (no traceback storm, serving again
once they are back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.fakes.raw_http import RawHttpServer, fixed
from tests.integration.front_client import (
    EC2,
    describe,
    exchange,
    metric,
    read_answer,
)
from tests.polling import eventually
from tests.servers import ProxyProcess, credential_env, proxy_process

KIB = 1024


@pytest.fixture
async def upstream() -> AsyncIterator[RawHttpServer]:
    raw = RawHttpServer(fixed(b"ok"))
    await raw.start()
    yield raw
    await raw.close()


def _post_head(length: int) -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: {EC2}\r\nContent-Length: {length}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()


async def test_stalled_bodies_fill_the_budget_then_503_while_small_requests_pass(
    tmp_path: Path, upstream: RawHttpServer
) -> None:
    config = {
        "routes": [{"host": EC2, "upstream": upstream.url}],
        "max_buffered_body": "512KiB",
        "buffered_body_budget": "1MiB",
        "connections": {"body_timeout": "1500ms"},
    }
    with proxy_process(tmp_path, config) as proxy:
        stalled = []
        for _ in range(2):  # 2 x 400 KiB reserved of 1 MiB, bodies never finished
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(_post_head(400 * KIB) + b"Action=DescribeVpcs&x=aaaa")
            await writer.drain()
            stalled.append((reader, writer))
        try:
            assert await eventually(
                lambda: metric(proxy, "throttle_proxy_buffered_body_bytes") == 800 * KIB, 3
            )
            refused = await exchange(proxy, _post_head(400 * KIB))
            assert refused.status == 503
            assert refused.header("x-throttle-proxy-error") == "body-budget-exceeded"
            assert refused.header("Retry-After") == "1"
            assert b"<Code>BodyBudgetExceeded</Code>" in refused.body  # EC2's error format
            # Requests without a body to hold are not refused.
            assert (await exchange(proxy, describe())).status == 200
            # The stalled ones end (408) and give their bytes back.
            for reader, _ in stalled:
                assert (await read_answer(reader, 5)).status == 408
        finally:
            for _, writer in stalled:
                writer.close()
        assert metric(proxy, "throttle_proxy_buffered_body_bytes") == 0
        body = b"Action=DescribeVpcs&x=" + b"a" * (400 * KIB - 22)
        assert (await exchange(proxy, _post_head(len(body)) + body)).status == 200
        assert metric(proxy, "throttle_proxy_errors_total", reason="body-budget-exceeded") == 1


async def test_connections_over_the_cap_are_refused_and_logged_once(
    tmp_path: Path, upstream: RawHttpServer
) -> None:
    config = {
        "routes": [{"host": EC2, "upstream": upstream.url}],
        "connections": {"max_connections": 5},
    }
    with proxy_process(tmp_path, config) as proxy:
        held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(5)]
        try:
            # Every held connection is admitted: it gets its answer.
            for reader, writer in held:
                writer.write(describe())
                assert (await read_answer(reader)).status == 200
            for _ in range(20):
                answer = await exchange(proxy, describe())
                assert answer.status == 503
                assert answer.header("x-throttle-proxy-error") == "too-many-connections"
                assert answer.header("Retry-After") == "1"
            assert (
                metric(proxy, "throttle_proxy_connections_refused_total", reason="max-connections")
                == 20
            )
            assert metric(proxy, "throttle_proxy_connections_open") == 5
        finally:
            for _, writer in held:
                writer.close()
        assert await eventually(lambda: metric(proxy, "throttle_proxy_connections_open") == 0, 3)
        assert (await exchange(proxy, describe())).status == 200
        assert await eventually(lambda: '"event": "connections-refused"' in proxy.log_text(), 3)
        assert proxy.log_text().count('"event": "connections-refused"') == 1


def _refused_call(proxy: ProxyProcess, service: str) -> dict[str, Any]:
    """One call of an app's unsigned boto3 client (2 attempts), by the forward-proxy way: the
    error response botocore parsed."""
    client = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=f"http://{service}.us-east-1.amazonaws.com",
        config=BotoConfig(
            signature_version=UNSIGNED,
            proxies={"http": proxy.url},
            retries={"total_max_attempts": 2},
        ),
    )
    calls = {"sts": "get_caller_identity", "ec2": "describe_vpcs", "dynamodb": "list_tables"}
    try:
        getattr(client, calls[service])()
    except ClientError as error:
        return dict(error.response)
    raise AssertionError("answered")


async def _admitted_connection(proxy: ProxyProcess) -> asyncio.StreamWriter:
    """A keep-alive connection the proxy answered, so it holds the only place under
    max_connections: 1 (a port probe's connection may still be closing: then try again)."""
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(describe())
        if (await read_answer(reader)).status == 200:
            return writer
        writer.close()
        await eventually(lambda: metric(proxy, "throttle_proxy_connections_open") == 0, 3)
    raise AssertionError("no connection admitted")


@pytest.mark.parametrize("service", ["sts", "ec2", "dynamodb"])
async def test_connection_cap_refusal_is_a_503_every_sdk_retries(
    tmp_path: Path, upstream: RawHttpServer, service: str
) -> None:
    # Refused at accept, before any request is read, so no service's format can be known:
    # botocore takes a bodiless 5xx as a generic error of any protocol (and retries it); a
    # plain-text body made its query and EC2 parsers raise ResponseParserError.
    config = {
        "routes": [{"host": "*.amazonaws.com", "upstream": upstream.url}],
        "connections": {"max_connections": 1},
    }
    with proxy_process(tmp_path, config) as proxy:
        held = await _admitted_connection(proxy)
        try:
            error = await asyncio.to_thread(_refused_call, proxy, service)
        finally:
            held.close()
    assert error["Error"]["Code"] == "503"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error["ResponseMetadata"]["RetryAttempts"] == 1
    headers = error["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-throttle-proxy-error"] == "too-many-connections"


# The proxy started with 64 file descriptors at most (soft and hard), then the unchanged CLI.
_FEW_FDS = (
    "-c",
    "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
    "from proxy.cli.main import main; sys.exit(main(sys.argv[1:]))",
    "run",
)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_out_of_file_descriptors_is_no_traceback_storm_and_serving_resumes(
    tmp_path: Path, upstream: RawHttpServer, loop: str
) -> None:
    config = {"routes": [{"host": EC2, "upstream": upstream.url}]}
    env = credential_env(tmp_path, {"THROTTLE_PROXY_LOOP": loop})
    with proxy_process(tmp_path, config, env=env, command=_FEW_FDS) as proxy:
        # Polled: the port accepts from listen() on, so the start-up line may follow it.
        assert await eventually(lambda: '"event": "fd-limit-low"' in proxy.log_text(), 5)
        opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(120):  # far past 64 descriptors
                with contextlib.suppress(OSError):
                    opened.append(await asyncio.open_connection("127.0.0.1", proxy.port))
            await asyncio.sleep(1.2)  # the proxy keeps trying to accept meanwhile
        finally:
            for _, writer in opened:
                writer.close()
        assert await eventually(lambda: _open_connections(proxy) == 0, 10)
        answer = await exchange(proxy, describe(), within=8)
        assert answer.status == 200
        log = proxy.log_text()
        assert "Traceback" not in log
        assert log.count('"event": "accept-failed"') <= 1
        if loop == "asyncio":
            # asyncio reports each failed accept (uvloop's libuv closes them itself).
            refused = metric(proxy, "throttle_proxy_connections_refused_total", reason="out-of-fds")
            assert refused >= 1
            assert log.count('"event": "accept-failed"') == 1
        assert proxy.proc.poll() is None


def _open_connections(proxy: ProxyProcess) -> float:
    """The gauge, or -1 while the admin listener cannot accept either."""
    try:
        return metric(proxy, "throttle_proxy_connections_open")
    except OSError:
        return -1
