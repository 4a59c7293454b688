"""The front's timeouts through a real proxy process (short ones, so the tests stay fast):
slowloris, idle keep-alive, a stalled body (408, its budget back), a client that never reads
its answer (its upstream pool slot back). Other clients are served all along."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.raw_http import RawHttpServer
from tests.integration.front_client import (
    EC2,
    S3,
    closed_by_peer,
    describe,
    exchange,
    metric,
    read_answer,
)
from tests.polling import eventually
from tests.servers import ProxyProcess, proxy_process

BIG = 16 * 1024 * 1024  # more than any socket buffers between proxy and a client that stalls


def _answer(head: bytes) -> bytes:
    if b"Action=GetBig" in head:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG + b"x" * BIG
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def upstream() -> AsyncIterator[RawHttpServer]:
    raw = RawHttpServer(_answer)
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {
        "routes": [{"host": EC2, "upstream": upstream.url}, {"host": S3, "upstream": upstream.url}],
        "connections": {
            "header_timeout": "600ms",
            "idle_timeout": "600ms",
            "body_timeout": "600ms",
            "send_timeout": "600ms",
        },
        # Two requests in flight upstream at most; a slot wait gives up after 4 s.
        "upstream": {"pool_size": 2, "connect_timeout": "4s"},
        "max_buffered_body": "1MiB",
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


async def test_slowloris_connections_are_closed_and_others_served(proxy: ProxyProcess) -> None:
    trickling = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(20)]
    head = describe()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for byte in head[:-4]:  # never the blank line that ends the head
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(trickle(writer)) for _, writer in trickling]
    try:
        # Meanwhile a well-behaved client is served.
        assert (await exchange(proxy, describe())).status == 200
        closed = await asyncio.gather(*(closed_by_peer(r, 3.0) for r, _ in trickling))
        assert all(closed)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, writer in trickling:
            writer.close()
    assert metric(proxy, "throttle_proxy_client_timeouts_total", phase="header") >= 20
    assert (await exchange(proxy, describe())).status == 200


async def test_idle_keepalive_connection_is_closed_after_idle_timeout(
    proxy: ProxyProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(describe())
        assert (await read_answer(reader)).status == 200
        assert await closed_by_peer(reader, 3.0)
    finally:
        writer.close()
    assert metric(proxy, "throttle_proxy_client_timeouts_total", phase="idle") >= 1


async def test_stalled_body_gets_408_and_its_budget_back(proxy: ProxyProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {EC2}\r\nContent-Length: 500000\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
            + b"Action=DescribeVpcs&x="
            + b"a" * 1000
        )
        await writer.drain()
        assert await eventually(
            lambda: metric(proxy, "throttle_proxy_buffered_body_bytes") == 500000, 3
        )
        answer = await read_answer(reader, 5)  # then nothing more is sent
    finally:
        writer.close()
    assert answer.status == 408
    assert answer.header("x-throttle-proxy-error") == "client-body-timeout"
    assert b"<Code>ClientBodyTimeout</Code>" in answer.body  # EC2's own error format
    assert metric(proxy, "throttle_proxy_buffered_body_bytes") == 0
    assert metric(proxy, "throttle_proxy_client_timeouts_total", phase="body") == 1
    assert (await exchange(proxy, describe())).status == 200


def _stuck_reader(port: int) -> socket.socket:
    """A client that asks for a big answer and never reads it (tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(describe("GetBig"))
    return sock


async def test_a_client_that_never_reads_frees_its_upstream_slot(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    stuck = [_stuck_reader(proxy.port) for _ in range(2)]  # both pool slots
    try:
        assert await eventually(lambda: len(upstream.heads) == 2, 5)
        # Within send_timeout (and well inside the 4 s slot wait) the slots come back.
        answer = await exchange(proxy, describe(), within=8)
        assert answer.status == 200
        assert answer.body == b"ok"
        # Both stuck readers are cut by the proxy itself, not by this test closing them.
        assert await eventually(
            lambda: metric(proxy, "throttle_proxy_client_timeouts_total", phase="send") == 2, 5
        )
    finally:
        for sock in stuck:
            sock.close()
    log = proxy.log_text()
    assert '"error": "client-send-timeout"' in log


async def test_a_streamed_upload_cut_short_is_the_clients_400_not_a_502(
    proxy: ProxyProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        # Over max_buffered_body (1 MiB): it streams upstream as it comes, then the client stops.
        writer.write(
            f"PUT /bucket/key HTTP/1.1\r\nHost: {S3}\r\nContent-Length: 2000000\r\n\r\n".encode()
            + b"x" * 5000
        )
        await writer.drain()
        writer.write_eof()
        answer = await read_answer(reader, 5)
    finally:
        writer.close()
    assert answer.status == 400
    assert answer.header("x-throttle-proxy-error") == "client-body-incomplete"
    assert b"<Code>ClientBodyIncomplete</Code>" in answer.body  # S3's own error format
    assert metric(proxy, "throttle_proxy_errors_total", reason="upstream-unavailable") == 0
