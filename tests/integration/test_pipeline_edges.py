"""Edges of the request path through a real proxy process: 100-continue, deadlines, broken
bodies either way, retries that wait for a token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.raw_http import SettableReplyServer
from tests.polling import eventually
from tests.servers import ProxyProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"


@pytest.fixture
async def upstream() -> AsyncIterator[SettableReplyServer]:
    raw = SettableReplyServer()
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: SettableReplyServer) -> Iterator[ProxyProcess]:
    config = {
        "routes": [
            {"host": EC2, "upstream": upstream.url},
            {"host": S3, "upstream": upstream.url},
        ],
        "retry": {"max_attempts": 3, "base_delay": "1ms", "max_total_time": "1s"},
        "limits": [
            {
                "name": "one-per-200ms",
                "service": "ec2",
                "operations": ["DescribeVpcs"],
                "rate": 5,
                "burst": 1,
            }
        ],
        "upstream": {"read_timeout": "5s"},
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


async def test_expect_100_continue_is_answered_before_the_body(proxy: ProxyProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(
            f"PUT /bucket/key HTTP/1.1\r\nHost: {S3}\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert final.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_max_total_time_bounds_an_attempt_in_flight(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    upstream.delay = 3.0
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/?Action=DescribeInstances", headers={"Host": EC2}) as answer,
    ):
        assert answer.status == 504
        assert answer.headers["x-throttle-proxy-error"] == "upstream-timeout"
    assert time.monotonic() - started < 2.5


async def test_retries_wait_for_a_rate_limit_token(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    upstream.reply = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/?Action=DescribeVpcs", headers={"Host": EC2}) as answer,
    ):
        assert answer.status == 500
        assert answer.headers["x-throttle-proxy-attempts"] == "3"
    # Rate 5/s, burst 1, backoff 1 ms: every retry waited for its token, so attempt n went
    # (n - 1) x 200 ms after the first token at the earliest, and that token was taken after
    # `started`. Measured from `started` (the cause), not between arrivals: a loaded machine
    # that delays one arrival would shorten the gap after it (the 10 ms allow for rounding).
    since_start = [arrived - started for arrived in upstream.arrivals]
    assert len(since_start) == 3
    assert all(since >= 0.2 * n - 0.01 for n, since in enumerate(since_start)), since_start


async def test_client_short_body_is_a_400_of_its_own_and_others_are_served(
    proxy: ProxyProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {EC2}\r\nContent-Length: 100\r\n\r\nAction=X".encode()
        )
        await writer.drain()
        writer.write_eof()  # 8 of 100 bytes, then no more: the client's fault, not upstream's
        answer = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 400 "), head
    assert "x-throttle-proxy-error: client-body-incomplete" in head
    assert await eventually(lambda: '"error": "client-body-incomplete"' in proxy.log_text(), 3)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/?Action=DescribeInstances", headers={"Host": EC2}) as answer2,
    ):
        assert answer2.status == 200


async def test_client_gone_mid_body_is_counted_as_the_client(proxy: ProxyProcess) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"POST / HTTP/1.1\r\nHost: {EC2}\r\nContent-Length: 100\r\n\r\nAc".encode())
    await writer.drain()
    writer.transport.abort()  # gone for good: nobody to answer
    # Whether the reset reads as a close (499) or as the end of a short body (400) depends on
    # the loop; either way it is the client's, never an upstream failure.
    assert await eventually(lambda: '"event": "request"' in proxy.log_text(), 3)
    line = next(json.loads(x) for x in proxy.log_text().splitlines() if '"request"' in x)
    assert (line["status"], line["error"]) in {
        (499, "client-closed"),
        (400, "client-body-incomplete"),
    }, line


async def test_upstream_dying_mid_body_cuts_the_client_and_is_logged(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    body_start = b"x" * 70_000
    upstream.reply = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n" + body_start
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/b/k", headers={"Host": S3}) as answer:
            assert answer.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await answer.read()
        # The proxy keeps serving others.
        upstream.reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with session.get(f"{proxy.url}/b/k", headers={"Host": S3}) as answer:
            assert (answer.status, await answer.read()) == (200, b"ok")
    assert await eventually(lambda: "upstream-body-failed" in proxy.log_text(), 3)
    assert "Traceback" not in proxy.log_text()


async def test_an_oversized_body_is_refused_before_100_continue(proxy: ProxyProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {EC2}\r\nContent-Length: 100000000\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert first.startswith(b"HTTP/1.1 413"), first[:60]


async def test_broken_chunked_framing_mid_answer_cuts_without_a_second_response(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    upstream.reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n5;" + b"e" * 70_000 + b"\r\nworld\r\n0\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(f"GET /b/k HTTP/1.1\r\nHost: {S3}\r\n\r\n".encode())
        await writer.drain()
        received = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
    finally:
        writer.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert received.count(b"HTTP/1.1 ") == 1, received[-300:]
    assert await eventually(lambda: "upstream-body-failed" in proxy.log_text(), 3)
