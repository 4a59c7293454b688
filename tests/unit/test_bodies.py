"""Client bodies: buffered under the limit, streamed over it (S3), refused otherwise; hashing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

from proxy.bodies.client import (
    STREAM_CHUNK,
    ClientBody,
    declared_length,
    read_client_body,
    sha256_hex,
    stream_exactly,
)
from proxy.errors import BadRequest, PayloadTooLarge
from proxy.signing.sigv4 import EMPTY_SHA256

T = TypeVar("T")


class UnpausableProtocol(BaseProtocol):
    """No connection behind the reader: flow control has nothing to pause."""

    def pause_reading(self) -> None:
        self._reading_paused = False

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False


def reader(*pieces: bytes, eof: bool = True) -> StreamReader:
    """A StreamReader fed by hand, as aiohttp's parser feeds a request's body."""
    loop = asyncio.get_running_loop()
    stream = StreamReader(UnpausableProtocol(loop), 2**16, loop=loop)
    for piece in pieces:
        stream.feed_data(piece)
    if eof:
        stream.feed_eof()
    return stream


async def test_body_under_the_limit_is_buffered() -> None:
    source = reader(b"Action=Describe", b"Instances&Version=2016-11-15")
    body = await read_client_body(source, 43, max_buffered=100, streamable=False)
    assert body == ClientBody(b"Action=DescribeInstances&Version=2016-11-15", 43)
    assert body.replayable
    assert body.source is None


async def test_body_exactly_at_the_limit_is_buffered() -> None:
    body = await read_client_body(reader(b"x" * 10), 10, max_buffered=10, streamable=False)
    assert (body.data, body.length) == (b"x" * 10, 10)


async def test_buffered_read_takes_only_the_declared_length() -> None:
    source = reader(b"0123456789NEXT")
    body = await read_client_body(source, 10, max_buffered=100, streamable=False)
    assert body.data == b"0123456789"
    assert await source.read() == b"NEXT"


async def test_zero_length_body_reads_nothing() -> None:
    source = reader(b"unrelated")
    body = await read_client_body(source, 0, max_buffered=100, streamable=False)
    assert (body.data, body.length) == (b"", 0)
    assert await source.read() == b"unrelated"


async def test_short_body_is_an_incomplete_read() -> None:
    source = reader(b"only five")
    with pytest.raises(asyncio.IncompleteReadError):
        await read_client_body(source, 50, max_buffered=100, streamable=False)


async def test_streamable_body_over_the_limit_is_not_read() -> None:
    data = bytes(range(256)) * 1000
    source = reader(data)
    body = await read_client_body(source, len(data), max_buffered=1000, streamable=True)
    assert body == ClientBody(None, len(data), source)
    assert not body.replayable
    assert await source.read() == data  # untouched: the streamer reads it


async def test_non_streamable_body_over_the_limit_is_413_naming_the_setting() -> None:
    source = reader(b"x" * 11)
    with pytest.raises(PayloadTooLarge) as caught:
        await read_client_body(source, 11, max_buffered=10, streamable=False)
    assert caught.value.message == (
        "body of 11 bytes is over max_buffered_body (10 bytes); only S3 uploads are streamed, "
        "raise max_buffered_body for larger bodies"
    )
    assert (caught.value.status, caught.value.reason) == (413, "body-too-large")


async def test_chunked_body_under_the_limit_is_buffered() -> None:
    source = reader(b"abc", b"defg", b"h")
    body = await read_client_body(source, None, max_buffered=8, streamable=True)
    assert (body.data, body.length, body.source) == (b"abcdefgh", 8, None)


@pytest.mark.parametrize("streamable", [True, False])
async def test_chunked_body_over_the_limit_is_413(streamable: bool) -> None:
    source = reader(b"abcd", b"efgh", b"i")
    with pytest.raises(PayloadTooLarge) as caught:
        await read_client_body(source, None, max_buffered=8, streamable=streamable)
    assert caught.value.message == (
        "chunked body is over max_buffered_body (8 bytes); send a Content-Length so the proxy "
        "can stream it (S3), or raise max_buffered_body"
    )
    assert caught.value.status == 413


async def test_chunked_body_stops_reading_at_the_limit() -> None:
    # The producer never ends: the 413 must come from the limit, not from EOF.
    source = reader(b"a" * 6, b"b" * 6, eof=False)
    with pytest.raises(PayloadTooLarge):
        await asyncio.wait_for(
            read_client_body(source, None, max_buffered=8, streamable=False), timeout=2
        )


async def test_empty_chunked_body() -> None:
    body = await read_client_body(reader(), None, max_buffered=8, streamable=False)
    assert (body.data, body.length) == (b"", 0)


@pytest.mark.parametrize("content_length", [None, 0])
async def test_no_body_skips_reading(content_length: int | None) -> None:
    # The stream is never fed EOF: reading it would hang.
    source = reader(b"pipelined next request", eof=False)
    body = await asyncio.wait_for(
        read_client_body(source, content_length, max_buffered=8, streamable=False, has_body=False),
        timeout=2,
    )
    assert (body.data, body.length, body.source) == (b"", 0, None)
    assert source.read_nowait() == b"pipelined next request"


@pytest.mark.parametrize(("text", "length"), [(None, None), ("0", 0), ("42", 42), ("007", 7)])
def test_declared_length(text: str | None, length: int | None) -> None:
    assert declared_length(text) == length


@pytest.mark.parametrize("text", ["", "-1", "+5", " 5", "5 ", "1e3", "0x10", "12a", "1,2", "4.0"])
def test_malformed_content_length_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        declared_length(text)
    assert caught.value.message == f"invalid Content-Length {text!r}"
    assert caught.value.status == 400


def test_long_malformed_content_length_is_cut_in_the_message() -> None:
    text = "9" * 39 + "x" * 100
    with pytest.raises(BadRequest) as caught:
        declared_length(text)
    assert caught.value.message == f"invalid Content-Length {text[:40]!r}"


@pytest.mark.parametrize("text", ["²", "٣"])
def test_non_ascii_digits_are_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest):
        declared_length(text)


async def test_sha256_of_empty_body() -> None:
    assert await sha256_hex(b"") == EMPTY_SHA256 == hashlib.sha256(b"").hexdigest()


async def test_sha256_of_small_body() -> None:
    assert await sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def spy_on_to_thread(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record what is handed to asyncio.to_thread; the real to_thread still runs it."""
    calls: list[object] = []
    real = asyncio.to_thread

    async def recording(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", recording)
    return calls


async def test_sha256_of_large_body_runs_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_to_thread(monkeypatch)
    data = bytes(range(256)) * (4 * 1024 * 4)  # 4 MiB
    assert await sha256_hex(data) == hashlib.sha256(data).hexdigest()
    assert calls == [hashlib.sha256]


async def test_sha256_of_small_body_stays_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_to_thread(monkeypatch)
    data = b"y" * (256 * 1024 - 1)
    assert await sha256_hex(data) == hashlib.sha256(data).hexdigest()
    assert calls == []


async def test_stream_exactly_yields_chunks_of_the_declared_length() -> None:
    length = 2 * STREAM_CHUNK + 123
    data = bytes(i % 251 for i in range(length)) + b"TRAILING"
    source = reader(*(data[i : i + 1000] for i in range(0, len(data), 1000)))
    pieces = [piece async for piece in stream_exactly(source, length)]
    assert [len(piece) for piece in pieces] == [STREAM_CHUNK, STREAM_CHUNK, 123]
    assert b"".join(pieces) == data[:length]
    assert await source.read() == b"TRAILING"


async def test_stream_exactly_of_nothing_yields_nothing() -> None:
    assert [piece async for piece in stream_exactly(reader(b"x"), 0)] == []


async def test_stream_exactly_fails_when_the_client_stops_short() -> None:
    source = reader(b"z" * (STREAM_CHUNK + 10))
    pieces = stream_exactly(source, 2 * STREAM_CHUNK)
    assert len(await anext(pieces)) == STREAM_CHUNK
    with pytest.raises(asyncio.IncompleteReadError):
        await anext(pieces)
