"""Failures put where they happened, through a real proxy: a wait for a pool slot is no upstream
attempt (not counted, not retried, no quota spent, but measured), and a client whose streamed
upload stalls or falls short is the client's failure, not the upstream's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.raw_http import RawHttpServer, fixed
from tests.servers import ProxyProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"
DESCRIBE = "/?Action=DescribeInstances"


@pytest.fixture
async def upstream() -> AsyncIterator[RawHttpServer]:
    raw = RawHttpServer(fixed(b"ok"))
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {
        "routes": [
            {"host": EC2, "upstream": upstream.url},
            {"host": S3, "upstream": upstream.url},
        ],
        "upstream": {"pool_size": 1, "connect_timeout": "1s", "read_timeout": "2s"},
        "retry": {"max_attempts": 3, "base_delay": "1ms"},
        "max_buffered_body": "1KiB",
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


async def metric_lines(session: aiohttp.ClientSession, proxy: ProxyProcess, name: str) -> str:
    async with session.get(f"{proxy.admin_url}/metrics") as answer:
        text = await answer.text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


def value(lines: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", lines, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def get(session: aiohttp.ClientSession, proxy: ProxyProcess) -> aiohttp.ClientResponse:
    async with session.get(proxy.url + DESCRIBE, headers={"Host": EC2}) as answer:
        await answer.read()
        return answer


async def test_a_pool_slot_wait_is_measured_and_is_not_an_attempt(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    async with aiohttp.ClientSession() as session:
        # One slot, a 0.3 s upstream: the second request waits for the first one's slot.
        upstream.delay = 0.3
        first, second = await asyncio.gather(get(session, proxy), get(session, proxy))
        assert (first.status, second.status) == (200, 200)
        waits = await metric_lines(session, proxy, "throttle_proxy_upstream_pool_wait_seconds")
        assert value(waits, "throttle_proxy_upstream_pool_wait_seconds_count") == 1
        assert value(waits, "throttle_proxy_upstream_pool_wait_seconds_sum") >= 0.2

        # Now the slot stays busy longer than connect_timeout (1 s): the waiter gets 503.
        upstream.delay = 1.6
        held, refused = await asyncio.gather(get(session, proxy), get(session, proxy))
        assert held.status == 200
        assert refused.status == 503
        assert refused.headers["x-throttle-proxy-error"] == "upstream-pool-exhausted"
        assert "x-throttle-proxy-attempts" not in refused.headers
        assert len(upstream.heads) == 3  # the refused request never went out, nor again

        attempts = await metric_lines(session, proxy, "throttle_proxy_upstream_attempts_total")
        series = 'throttle_proxy_upstream_attempts_total{operation="DescribeInstances",'
        assert value(attempts, series + 'outcome="success",service="ec2"}') == 3
        assert "timeout" not in attempts
        assert "connection" not in attempts
        assert await metric_lines(session, proxy, "throttle_proxy_retries_total{") == ""
        quota = await metric_lines(session, proxy, "throttle_proxy_retry_quota_available{")
        assert quota in ("", 'throttle_proxy_retry_quota_available{service="ec2"} 500.0')
        waits = await metric_lines(session, proxy, "throttle_proxy_upstream_pool_wait_seconds")
        assert value(waits, "throttle_proxy_upstream_pool_wait_seconds_count") == 2
        errors = await metric_lines(session, proxy, "throttle_proxy_errors_total{")
        assert value(errors, 'throttle_proxy_errors_total{reason="upstream-pool-exhausted"}') == 1


async def test_a_stalled_streamed_upload_is_the_clients_408_not_an_upstream_504(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        # Over max_buffered_body (1 KiB), so it streams upstream as it arrives; then it stalls.
        writer.write(
            f"PUT /bucket/key HTTP/1.1\r\nHost: {S3}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"x" * 5000
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 6)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 "), head[:80]
    assert b"x-throttle-proxy-error: client-body-timeout" in head
    assert b"x-throttle-proxy-attempts" not in head
    async with aiohttp.ClientSession() as session:
        attempts = await metric_lines(session, proxy, "throttle_proxy_upstream_attempts_total{")
    assert "timeout" not in attempts
