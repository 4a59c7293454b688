"""The way back, framed strictly: a real proxy process in front of a raw upstream that answers
with smuggling-shaped framing, control bytes in headers, bad status lines and cut bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.raw_http import SettableReplyServer
from tests.polling import eventually
from tests.servers import ProxyProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"
GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# Answers no proxy may pass on: each is refused with 502 upstream-bad-response.
MALFORMED: dict[str, bytes] = {
    "Content-Length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "chunked then Content-Length": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "two different lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "length with a sign": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    "unknown transfer coding": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    ),
    "bare LF in a value": b"HTTP/1.1 200 OK\r\nx-amz-meta-a: one\ntwo\r\nContent-Length: 0\r\n\r\n",
    "bare CR in a value": b"HTTP/1.1 200 OK\r\nx-amz-meta-a: one\rtwo\r\nContent-Length: 0\r\n\r\n",
    "NUL in a value": b"HTTP/1.1 200 OK\r\nx-amz-meta-a: one\x00two\r\nContent-Length: 2\r\n\r\nok",
    "space in a name": b"HTTP/1.1 200 OK\r\nx amz: one\r\nContent-Length: 2\r\n\r\nok",
    "space before the colon": b"HTTP/1.1 200 OK\r\nx-amz : one\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold continuation": (
        b"HTTP/1.1 200 OK\r\nx-amz-meta-a: one\r\n two\r\nContent-Length: 2\r\n\r\nok"
    ),
    "four-digit status": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/2.0 status line": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "not HTTP": b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


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
        "retry": {"max_attempts": 3, "base_delay": "1ms"},
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


def request_lines(proxy: ProxyProcess) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in proxy.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


async def test_malformed_answers_get_502_upstream_bad_response_and_are_not_retried(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    async with aiohttp.ClientSession() as session:
        for name, reply in MALFORMED.items():
            upstream.reply = reply
            sent_before = len(upstream.heads)
            async with session.get(
                f"{proxy.url}/?Action=DescribeInstances", headers={"Host": EC2}
            ) as answer:
                body = await answer.read()
                assert answer.status == 502, name
                assert answer.headers["x-throttle-proxy-error"] == "upstream-bad-response", name
                assert answer.headers["x-throttle-proxy-attempts"] == "1", name
                # EC2's own error format, so the SDK reads it.
                assert b"<Code>UpstreamBadResponse</Code>" in body, name
            assert len(upstream.heads) == sent_before + 1, f"{name}: retried"
            # The proxy keeps serving: the next good answer goes through whole.
            upstream.reply = GOOD
            async with session.get(
                f"{proxy.url}/?Action=DescribeInstances", headers={"Host": EC2}
            ) as answer:
                assert (answer.status, await answer.read()) == (200, b"ok"), name
    assert await eventually(lambda: len(request_lines(proxy)) == 2 * len(MALFORMED), 3)
    refused = [line for line in request_lines(proxy) if line["error"]]
    assert [(line["status"], line["error"]) for line in refused] == [
        (502, "upstream-bad-response")
    ] * len(MALFORMED)
    assert "Traceback" not in proxy.log_text()


async def test_a_bare_lf_header_never_reaches_the_client_even_on_a_streamed_answer(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    # A large (streamed, not preloaded) answer takes the other path back: same refusal.
    upstream.reply = (
        b"HTTP/1.1 200 OK\r\nx-amz-meta-a: one\ntwo\r\nContent-Length: 100000\r\n\r\n"
        + b"x" * 100_000
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(f"GET /bucket/key HTTP/1.1\r\nHost: {S3}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 502 "), head[:80]
    assert b"x-throttle-proxy-error: upstream-bad-response" in head
    assert b"one" not in head


async def test_an_upstream_cut_after_the_head_is_a_cut_client_and_a_recorded_failure(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    upstream.reply = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n" + b"x" * 70_000
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(f"GET /bucket/key HTTP/1.1\r\nHost: {S3}\r\n\r\n".encode())
        await writer.drain()
        received = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
    finally:
        writer.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 200000" in head
    assert len(body) < 200_000  # cut: the client can tell the answer is not whole
    assert await eventually(lambda: len(request_lines(proxy)) == 1, 3)
    line = request_lines(proxy)[0]
    assert (line["status"], line["error"]) == (502, "upstream-unavailable")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.admin_url}/metrics") as answer,
    ):
        metrics = await answer.text()
    assert 'throttle_proxy_errors_total{reason="upstream-unavailable"} 1.0' in metrics
    assert 'status_class="5xx"} 1.0' in metrics
    assert 'status_class="2xx"' not in metrics


async def test_a_chunked_answer_goes_back_with_no_stale_length(
    proxy: ProxyProcess, upstream: SettableReplyServer
) -> None:
    upstream.reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (50_000, b"y" * 50_000) for _ in range(3))
        + b"0\r\n\r\n"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/bucket/key", headers={"Host": S3}) as answer,
    ):
        body = await answer.read()
        length = answer.headers.get("Content-Length")
    assert body == b"y" * 150_000
    assert length in (None, "150000")
