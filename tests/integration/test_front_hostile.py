"""The front against hostile and careless clients, through a real proxy process: requests whose
framing the parser ends early (Upgrade), so that no body is lost and no connection hangs, and
header values read as AWS reads them (so what the proxy classifies is what AWS executes)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.raw_http import RawHttpServer
from tests.integration.front_client import EC2, closed_by_peer, exchange, read_answer
from tests.servers import ProxyProcess, proxy_process

FORM = b"Action=DescribeVpcs&Version=2016-11-15"
DYNAMODB = "dynamodb.us-east-1.amazonaws.com"


def _echo_body(head: bytes) -> bytes:
    """Answers with the request line, so a test sees which request reached the upstream."""
    line = head.split(b"\r\n", 1)[0]
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(line), line)


@pytest.fixture
async def upstream() -> AsyncIterator[RawHttpServer]:
    raw = RawHttpServer(_echo_body)
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {"routes": [{"host": EC2, "upstream": upstream.url}], "retry": {"max_attempts": 1}}
    with proxy_process(tmp_path, config) as handle:
        yield handle


def _upgrade_head(method: str, target: str, extra: str = "") -> bytes:
    # What `curl --http2 http://…` sends: an h2c upgrade the proxy does not take up.
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {EC2}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n{extra}\r\n"
    ).encode()


async def test_an_upgrade_request_is_answered_and_its_connection_closed_not_left_hanging(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    # llhttp stops parsing after an Upgrade request's head: a request pipelined behind it is
    # never read, so the answer must be the connection's last (a client waiting for the next
    # answer on a kept-alive connection would wait for idle_timeout, 75 s).
    following = f"GET /?Action=DescribeSubnets HTTP/1.1\r\nHost: {EC2}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(_upgrade_head("GET", "/?Action=DescribeVpcs&Version=2016-11-15") + following)
        await writer.drain()
        answer = await read_answer(reader)
        assert answer.status == 200
        assert answer.header("Connection") == "close"
        assert await closed_by_peer(reader, 10.0)
    finally:
        writer.close()
    assert [head.split(b"\r\n", 1)[0] for head in upstream.heads] == [
        b"GET /?Action=DescribeVpcs&Version=2016-11-15 HTTP/1.1"
    ]
    assert b"upgrade" not in upstream.heads[0].lower()  # hop-by-hop: never forwarded


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (f"Content-Length: {len(FORM)}\r\n", FORM),
        ("Transfer-Encoding: chunked\r\n", b"%x\r\n%b\r\n0\r\n\r\n" % (len(FORM), FORM)),
    ],
    ids=["content-length", "chunked"],
)
async def test_an_upgrade_request_with_a_body_is_refused_never_sent_without_its_body(
    proxy: ProxyProcess, upstream: RawHttpServer, framing: str, body: bytes
) -> None:
    # The parser does not read the body of an Upgrade request (it belongs to the protocol
    # upgraded to): signing and sending the request would send it with an empty body.
    extra = f"Content-Type: application/x-www-form-urlencoded\r\n{framing}"
    answer = await exchange(proxy, _upgrade_head("POST", "/", extra) + body)
    assert answer.status == 400, (answer.head, answer.body)
    assert answer.header("x-throttle-proxy-error") == "bad-request"
    assert answer.header("Connection") == "close"
    assert b"<Response><Errors><Error><Code>BadRequest</Code>" in answer.body  # EC2's format
    assert b"Upgrade" in answer.body
    assert upstream.heads == []


@pytest.fixture
def limited_proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {
        "routes": [{"host": DYNAMODB, "upstream": upstream.url}],
        "retry": {"max_attempts": 1},
        "limits": [
            {
                "name": "ddb-put",
                "service": "dynamodb",
                "operations": ["PutItem"],
                "rate": 0.001,  # one token in 1000 s: the burst is all a test can spend
                "burst": 1,
            }
        ],
        "limit_policy": {"mode": "enforce"},
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


def _put_item(target: str, length: str = "2") -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: {DYNAMODB}\r\nX-Amz-Target: {target}\r\n"
        f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {length}\r\n\r\n{{}}"
    ).encode()


async def test_header_values_are_read_without_trailing_whitespace_as_aws_reads_them(
    limited_proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    # HTTP field values exclude trailing whitespace (RFC 9110 §5.5) and AWS reads them so: a
    # `PutItem ` the proxy took for an unknown operation passed the PutItem limit and was
    # executed as PutItem all the same.
    first = await exchange(limited_proxy, _put_item("DynamoDB_20120810.PutItem \t", "2 "))
    assert first.status == 200, (first.head, first.body)
    assert b"X-Amz-Target: DynamoDB_20120810.PutItem\r\n" in upstream.heads[0]
    second = await exchange(limited_proxy, _put_item("DynamoDB_20120810.PutItem "))
    assert second.status == 400, (second.head, second.body)
    assert second.header("x-throttle-proxy-error") == "rate-limited"
    assert b"ThrottlingException" in second.body
    assert len(upstream.heads) == 1


@pytest.fixture
def small_body_proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {
        "routes": [{"host": DYNAMODB, "upstream": upstream.url}],
        "max_buffered_body": "64KiB",
        "max_body": "64KiB",
        "spool_budget": "64KiB",
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


def _send_all_then_read(port: int, request: bytes, pace: float = 0.0) -> bytes:
    """What a plain client (http.client, urllib) does: the whole body first, then the answer;
    with `pace`, 1 MiB at a time that many seconds apart (an app producing its upload slowly)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if pace:
            for start in range(0, len(request), 1024 * 1024):
                sock.sendall(request[start : start + 1024 * 1024])
                time.sleep(pace)
        else:
            sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("host", "status", "reason"),
    [(DYNAMODB, b"413", b"body-too-large"), ("evil.example", b"403", b"host-not-allowed")],
)
def test_a_client_sending_its_whole_body_first_reads_the_refusal_not_a_reset(
    small_body_proxy: ProxyProcess, upstream: RawHttpServer, host: str, status: bytes, reason: bytes
) -> None:
    # Refused before its body is read: closing with the body still arriving resets the
    # connection (RST), and a client still writing never reads the answer (BrokenPipeError or
    # ConnectionResetError). The proxy reads and drops the rest before it closes, as nginx
    # does (lingering close).
    body = b"{" + b" " * (32 * 1024 * 1024) + b"}"
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"
        f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = _send_all_then_read(small_body_proxy.port, head + body)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"x-throttle-proxy-error: " + reason in answer
    assert b"Connection: close" in answer
    assert upstream.heads == []


@pytest.mark.parametrize("codings", ["gzip, chunked", "identity, chunked", "deflate,chunked"])
async def test_a_transfer_coding_besides_chunked_is_refused_not_forwarded_still_coded(
    proxy: ProxyProcess, upstream: RawHttpServer, codings: str
) -> None:
    # llhttp reads the chunked framing and hands the bytes over still gzip-coded; with the
    # (hop-by-hop) Transfer-Encoding dropped, the upstream took them for the body itself: an
    # S3 object stored compressed, a form AWS cannot read. RFC 9112 §6.1: refuse what is not
    # understood.
    coded = gzip.compress(FORM)
    answer = await exchange(
        proxy,
        f"POST / HTTP/1.1\r\nHost: {EC2}\r\nTransfer-Encoding: {codings}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        + b"%x\r\n%b\r\n0\r\n\r\n" % (len(coded), coded),
    )
    assert answer.status == 400, (answer.head, answer.body)
    assert answer.header("x-throttle-proxy-error") == "bad-request"
    assert b"<Response><Errors><Error><Code>BadRequest</Code>" in answer.body
    assert b"Transfer-Encoding" in answer.body
    assert upstream.heads == []


def test_a_slow_sender_of_a_refused_body_reads_the_refusal_too(
    small_body_proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    # The lingering close reads on while the client keeps sending (up to a cap), not for one
    # second in all: an app producing its upload over 4 s got a reset after the first second.
    body = b"{" + b" " * (16 * 1024 * 1024) + b"}"
    head = (
        f"POST / HTTP/1.1\r\nHost: {DYNAMODB}\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"
        f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = _send_all_then_read(small_body_proxy.port, head + body, pace=0.25)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"x-throttle-proxy-error: body-too-large" in answer
    assert upstream.heads == []
