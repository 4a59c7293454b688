"""The lean HTTP/1.1 client against raw loopback servers that frame answers every legal way."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.upstream.http1 import Http1Error, Http1Pool, Origin
from tests.fakes.raw_http import Answer, fixed
from tests.fakes.raw_http import RawHttpServer as RawServer


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(answer: Answer) -> RawServer:
        raw = await RawServer(answer).start()
        servers.append(raw)
        return raw

    yield start
    for raw in servers:
        await raw.close()


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    made = Http1Pool(
        size=8, connect_timeout=1.0, read_timeout=0.5, ssl_context=ssl.create_default_context()
    )
    yield made
    await made.close()


async def get(pool: Http1Pool, raw: RawServer, method: str = "GET") -> tuple[int, bytes]:
    answer = await pool.request(raw.origin, method, "/p?q=1", [("Host", "h")], None)
    body = await answer.read(1 << 20)
    answer.release()
    return answer.status, body


async def test_content_length_answers_reuse_one_connection(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(fixed(b"hello"))
    for _ in range(5):
        assert await get(pool, raw) == (200, b"hello")
    assert raw.connections == 1
    assert raw.heads[0].startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\n")


async def test_chunked_answers_are_decoded(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n"
    )
    raw = await serve(lambda _h: chunked)
    assert await get(pool, raw) == (200, b"hello world")
    assert await get(pool, raw) == (200, b"hello world")
    assert raw.connections == 1


async def test_body_until_close_is_read_and_not_reused(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(lambda _h: b"HTTP/1.0 200 OK\r\n\r\nuntil-close")
    raw.close_after_each = True
    assert await get(pool, raw) == (200, b"until-close")
    assert await get(pool, raw) == (200, b"until-close")
    assert raw.connections == 2


async def test_head_and_204_have_no_body(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(
        lambda head: (
            b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"
            if head.startswith(b"HEAD")
            else b"HTTP/1.1 204 No Content\r\n\r\n"
        )
    )
    assert await get(pool, raw, "HEAD") == (200, b"")
    assert await get(pool, raw, "DELETE") == (204, b"")
    assert raw.connections == 1


async def test_interim_100_continue_is_skipped(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(
        lambda _h: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    assert await get(pool, raw) == (200, b"ok")


async def test_a_pooled_connection_the_server_closed_is_not_reused(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(fixed(b"x", extra=""))
    raw.close_after_each = True  # the server drops each connection after answering
    assert await get(pool, raw) == (200, b"x")
    await asyncio.sleep(0.05)  # the close reaches the pooled connection
    assert await get(pool, raw) == (200, b"x")
    # Each request reached the server exactly once, on its own connection.
    assert (raw.connections, len(raw.heads)) == (2, 2)


async def test_bytes_body_gets_a_content_length(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(fixed(b""))
    answer = await pool.request(raw.origin, "POST", "/", [("Host", "h")], b"Action=X")
    answer.release()
    assert b"Content-Length: 8\r\n" in raw.heads[0]
    assert raw.bodies == [b"Action=X"]


async def test_streamed_body_is_sent_with_its_declared_length(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(fixed(b""))

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"def"):
            yield piece

    answer = await pool.request(
        raw.origin, "PUT", "/", [("Host", "h"), ("Content-Length", "6")], pieces()
    )
    answer.release()
    assert raw.bodies == [b"abcdef"]


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad\r\n\r\n"],
)
async def test_garbage_answers_raise_http1_error(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool, garbage: bytes
) -> None:
    raw = await serve(lambda _h: garbage)
    with pytest.raises(Http1Error):
        await get(pool, raw)


async def test_a_closed_connection_before_any_answer_raises(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(lambda _h: None)
    with pytest.raises(Http1Error, match="closed before a response"):
        await get(pool, raw)


async def test_truncated_body_raises_and_the_connection_is_dropped(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(lambda _h: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    raw.close_after_each = True
    answer = await pool.request(raw.origin, "GET", "/", [("Host", "h")], None)
    with pytest.raises(Http1Error, match="missing"):
        await answer.read(100)
    answer.release()


async def test_a_silent_server_times_out(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    with pytest.raises(TimeoutError):
        await pool.request(origin, "GET", "/", [("Host", "h")], None)
    server.close()
    await server.wait_closed()


async def test_body_over_the_limit_raises(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(fixed(b"x" * 1000))
    answer = await pool.request(raw.origin, "GET", "/", [("Host", "h")], None)
    with pytest.raises(Http1Error, match="larger than 100"):
        await answer.read(100)
    answer.release()


async def test_in_flight_requests_are_capped_by_the_pool_size(
    serve: Callable[[Answer], Awaitable[RawServer]],
) -> None:
    raw = await serve(fixed(b"ok"))
    small = Http1Pool(
        size=2, connect_timeout=1.0, read_timeout=1.0, ssl_context=ssl.create_default_context()
    )
    held = [await small.request(raw.origin, "GET", "/", [("Host", "h")], None) for _ in range(2)]
    third = asyncio.create_task(small.request(raw.origin, "GET", "/", [("Host", "h")], None))
    await asyncio.sleep(0.05)
    assert not third.done()
    await held[0].read(10)
    held[0].release()
    answer = await asyncio.wait_for(third, 1)
    for each in (held[1], answer):
        await each.read(10)
        each.release()
    await small.close()


@pytest.mark.parametrize(
    "framing",
    [
        b"-1\r\nx\r\n0\r\n\r\n",  # negative size
        b"0x5\r\nhello\r\n0\r\n\r\n",  # not plain hex
        b"5;" + b"e" * 70_000 + b"\r\nhello\r\n0\r\n\r\n",  # framing line over the limit
    ],
)
async def test_bad_chunk_framing_raises_http1_error(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool, framing: bytes
) -> None:
    raw = await serve(lambda _h: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framing)
    answer = await pool.request(raw.origin, "GET", "/", [("Host", "h")], None)
    with pytest.raises(Http1Error):
        await answer.read(1 << 20)
    answer.release()


async def test_non_ascii_status_digits_raise_http1_error(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(lambda _h: "HTTP/1.1 2²0 OK\r\nContent-Length: 0\r\n\r\n".encode())
    with pytest.raises(Http1Error):
        await get(pool, raw)


async def test_bytes_arriving_on_an_idle_connection_retire_it(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    # The answer carries a stray late answer after the body, as a server's idle-timeout 408.
    late = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    raw = await serve(lambda _h: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + late)
    assert await get(pool, raw) == (200, b"ok")
    await asyncio.sleep(0.05)
    # The stray bytes are never read as the next answer: a fresh connection is used.
    assert await get(pool, raw) == (200, b"ok")
    assert raw.connections == 2


async def test_sending_to_an_upstream_that_never_reads_times_out(pool: Http1Pool) -> None:
    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(5)
        finally:
            writer.close()

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await pool.request(origin, "PUT", "/", [("Host", "h")], b"x" * (64 << 20))
    # The send waits read_timeout (0.5 s) once the socket is full; the fake closes only at
    # 5 s (which would end the wait with a reset, not a timeout). Before the wait, the 64 MiB
    # are copied into the socket and its buffer, which took a loaded machine 2.47 s: the
    # bound keeps a second from the fake's close instead of 1.5 s from the timeout.
    assert asyncio.get_running_loop().time() - started < 4
    server.close()
    await server.wait_closed()


async def test_waiting_for_a_pool_slot_ends_at_the_deadline(
    serve: Callable[[Answer], Awaitable[RawServer]],
) -> None:
    raw = await serve(fixed(b"ok"))
    one = Http1Pool(
        size=1, connect_timeout=5.0, read_timeout=5.0, ssl_context=ssl.create_default_context()
    )
    held = await one.request(raw.origin, "GET", "/", [("Host", "h")], None)
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await one.request(raw.origin, "GET", "/", [("Host", "h")], None, loop.time() + 0.2)
    held.release()
    await one.close()


async def test_a_request_past_its_deadline_is_not_sent(
    serve: Callable[[Answer], Awaitable[RawServer]], pool: Http1Pool
) -> None:
    raw = await serve(fixed(b"ok"))
    past = asyncio.get_running_loop().time() - 1
    with pytest.raises(TimeoutError):
        await pool.request(raw.origin, "POST", "/", [("Host", "h")], b"x", past)
    await asyncio.sleep(0.05)
    assert raw.heads == []


@pytest.mark.parametrize(
    ("target", "headers"),
    [("/a\r\nX-Evil: 1", [("Host", "h")]), ("/", [("Host", "h"), ("X-A", "v\r\nX-Evil: 1")])],
)
async def test_cr_lf_never_reaches_the_wire(
    serve: Callable[[Answer], Awaitable[RawServer]],
    pool: Http1Pool,
    target: str,
    headers: list[tuple[str, str]],
) -> None:
    raw = await serve(fixed(b"ok"))
    with pytest.raises(Http1Error, match="CR, LF"):
        await pool.request(raw.origin, "GET", target, headers, None)
    assert raw.heads == []
