"""The front's HTTP/1.1 through a real proxy process: pipelining in order, chunked bodies,
versions it does not speak (505), parser refusals (400) and header caps (431), each answer the
proxy makes itself marked with x-throttle-proxy-error and in the service's format when known."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from tests.fakes.raw_http import RawHttpServer
from tests.integration.front_client import EC2, describe, exchange, metric, read_answer
from tests.polling import eventually
from tests.servers import ProxyProcess, credential_env, proxy_process


def _echo_path(head: bytes) -> bytes:
    """Answers with the request line's target, so the order of answers can be checked."""
    target = head.split(b" ", 2)[1]
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(target), target)


@pytest.fixture
async def upstream() -> AsyncIterator[RawHttpServer]:
    raw = RawHttpServer(_echo_path)
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {
        "routes": [{"host": EC2, "upstream": upstream.url}],
        "connections": {"max_header_bytes": "4KiB", "max_headers": 20},
    }
    with proxy_process(tmp_path, config) as handle:
        yield handle


async def test_pipelined_requests_are_answered_in_order(proxy: ProxyProcess) -> None:
    actions = [f"Describe{name}" for name in ("Instances", "Vpcs", "Subnets", "Volumes")]
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"".join(describe(action) for action in actions))  # one write, four asks
        await writer.drain()
        answers = [await read_answer(reader) for _ in actions]
    finally:
        writer.close()
    assert [a.status for a in answers] == [200] * 4
    assert [a.body.decode().split("Action=")[1].split("&")[0] for a in answers] == actions


async def test_a_chunked_request_body_goes_upstream_with_its_length(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    form = b"Action=DescribeVpcs&Version=2016-11-15"
    chunked = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (form[:10], form[10:]))
    answer = await exchange(
        proxy,
        f"POST / HTTP/1.1\r\nHost: {EC2}\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        + chunked
        + b"0\r\n\r\n",
    )
    assert answer.status == 200
    assert upstream.bodies[-1] == form
    assert f"Content-Length: {len(form)}".encode() in upstream.heads[-1]


@pytest.mark.parametrize(
    "request_line",
    ["GET /?Action=DescribeVpcs HTTP/2.0", "GET /?Action=DescribeVpcs HTTP/0.9"],
)
async def test_versions_other_than_1_0_and_1_1_get_505_in_the_services_format(
    proxy: ProxyProcess, upstream: RawHttpServer, request_line: str
) -> None:
    answer = await exchange(proxy, f"{request_line}\r\nHost: {EC2}\r\n\r\n".encode())
    assert answer.head.startswith("HTTP/1.1 505 "), answer.head
    assert answer.header("x-throttle-proxy-error") == "http-version-not-supported"
    assert b"<Response><Errors><Error><Code>HttpVersionNotSupported</Code>" in answer.body
    assert upstream.heads == []


async def test_a_version_the_parser_rejects_is_505_too(proxy: ProxyProcess) -> None:
    answer = await exchange(proxy, f"GET / HTTP/1.7\r\nHost: {EC2}\r\n\r\n".encode())
    assert answer.status == 505
    assert answer.header("x-throttle-proxy-error") == "http-version-not-supported"


async def test_a_request_the_parser_refuses_is_a_marked_400(proxy: ProxyProcess) -> None:
    answer = await exchange(
        proxy, f"GET / HTTP/1.1\r\nHost: {EC2}\r\nno colon here\r\n\r\n".encode()
    )
    assert answer.status == 400
    assert answer.header("x-throttle-proxy-error") == "bad-request"
    assert answer.header("Connection") == "close"
    assert b"malformed request" in answer.body
    assert metric(proxy, "throttle_proxy_errors_total", reason="bad-request") >= 1


async def test_header_bytes_and_count_over_the_caps_are_431(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    big = await exchange(proxy, describe(extra=f"X-Filler: {'a' * 5000}\r\n"))
    assert big.status == 431
    assert big.header("x-throttle-proxy-error") == "header-too-large"
    many = await exchange(proxy, describe(extra="".join(f"X-H{i}: v\r\n" for i in range(25))))
    assert many.status == 431
    assert b"more than 20 request headers" in many.body
    within = await exchange(proxy, describe(extra="".join(f"X-H{i}: v\r\n" for i in range(15))))
    assert within.status == 200
    assert len(upstream.heads) == 1


async def test_connect_is_refused_with_a_message(proxy: ProxyProcess) -> None:
    answer = await exchange(proxy, b"CONNECT ec2.us-east-1.amazonaws.com:443 HTTP/1.1\r\n\r\n")
    assert answer.status == 405
    assert answer.header("x-throttle-proxy-error") == "connect-refused"
    assert b"cannot be signed" in answer.body


async def test_http_1_0_client_gets_its_answer_and_the_connection_ends(
    proxy: ProxyProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(f"GET /?Action=DescribeVpcs HTTP/1.0\r\nHost: {EC2}\r\n\r\n".encode())
        await writer.drain()
        answer = await read_answer(reader)
        assert answer.status == 200
        assert answer.header("Connection") == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_a_reload_applies_new_caps_to_the_next_request(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    ten = "".join(f"X-H{i}: v\r\n" for i in range(10))
    assert (await exchange(proxy, describe(extra=ten))).status == 200
    config = yaml.safe_load(proxy.config_path.read_text())
    config["connections"]["max_headers"] = 5
    proxy.config_path.write_text(yaml.safe_dump(config))
    proxy.signal(signal.SIGHUP)
    assert await eventually(lambda: '"event": "reloaded"' in proxy.log_text(), 5)
    assert "reload-ignores" not in proxy.log_text()
    refused = await exchange(proxy, describe(extra=ten))
    assert refused.status == 431
    assert b"more than 5 request headers" in refused.body


async def test_the_loop_is_uvloop_unless_ruled_out(proxy: ProxyProcess, tmp_path: Path) -> None:
    # Polled: the port accepts from listen() on, so the start-up line may follow a moment later.
    assert await eventually(lambda: '"loop": "uvloop"' in proxy.log_text(), 5)
    env = credential_env(tmp_path, {"THROTTLE_PROXY_LOOP": "asyncio"})
    with proxy_process(tmp_path, {}, env=env) as plain:
        assert await eventually(lambda: '"loop": "asyncio"' in plain.log_text(), 5)


async def test_pipelined_requests_with_bodies_keep_each_body_its_own(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    forms = [b"Action=DescribeVpcs&Version=2016-11-15&n=" + str(i).encode() * 3 for i in range(3)]
    raw = b"".join(
        f"POST /?i={i} HTTP/1.1\r\nHost: {EC2}\r\nContent-Length: {len(form)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        + form
        for i, form in enumerate(forms)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(raw)
        await writer.drain()
        answers = [await read_answer(reader) for _ in forms]
    finally:
        writer.close()
    assert [a.body for a in answers] == [f"/?i={i}".encode() for i in range(3)]
    assert upstream.bodies == forms


async def test_a_header_line_that_never_ends_is_431_not_held(proxy: ProxyProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {EC2}\r\nX-Endless: ".encode())
        for _ in range(4):  # 8 KiB of one header value, never its CRLF (the cap is 4 KiB)
            await asyncio.sleep(0.05)
            writer.write(b"a" * 2048)
            await writer.drain()
        answer = await read_answer(reader)
    finally:
        writer.close()
    assert answer.status == 431
    assert answer.header("x-throttle-proxy-error") == "header-too-large"
