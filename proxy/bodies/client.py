"""Client request bodies: small ones buffered, hashed and replayable; large S3 uploads streamed.

A body up to `max_buffered_body` is read whole so it can be hashed for the signature and sent
again on a retry. A larger body with a Content-Length is streamed through without being held in
memory (S3 only: aws-chunked signing or UNSIGNED-PAYLOAD); anything else gets 413.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import StreamReader

from proxy.errors import BadRequest, PayloadTooLarge

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAM_CHUNK = 64 * 1024
# Hashing a few MiB takes milliseconds; past this size it runs in a thread (hashlib releases
# the GIL) so the event loop keeps serving other requests.
_HASH_IN_THREAD = 256 * 1024


@dataclass(frozen=True, slots=True)
class ClientBody:
    """Either buffered `data` (replayable) or a `source` to stream `length` bytes from."""

    data: bytes | None
    length: int
    source: StreamReader | None = None

    @property
    def replayable(self) -> bool:
        return self.data is not None


_EMPTY = ClientBody(b"", 0)


def declared_length(value: str | None) -> int | None:
    """The Content-Length, or None when absent; malformed values are a 400."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(f"invalid Content-Length {value[:40]!r}")
    return int(value)


def refuse_oversized(content_length: int | None, max_buffered: int, streamable: bool) -> None:
    """413 for a declared body over max_buffered_body that cannot be streamed."""
    if content_length is not None and content_length > max_buffered and not streamable:
        raise PayloadTooLarge(
            f"body of {content_length} bytes is over max_buffered_body ({max_buffered} bytes); "
            "only S3 uploads are streamed, raise max_buffered_body for larger bodies"
        )


async def read_client_body(
    source: StreamReader,
    content_length: int | None,
    max_buffered: int,
    streamable: bool,
    has_body: bool = True,
) -> ClientBody:
    """Buffer the body when it fits; hand back a stream when it may be streamed; else 413.

    `has_body` False (no Content-Length, no chunked framing: a plain GET) skips reading."""
    if not has_body and not content_length:
        return _EMPTY
    if content_length is not None and content_length <= max_buffered:
        data = await source.readexactly(content_length) if content_length else b""
        return ClientBody(data, len(data))
    if content_length is not None:
        refuse_oversized(content_length, max_buffered, streamable)
        return ClientBody(None, content_length, source)
    # No Content-Length: chunked transfer. Read up to the limit; past it we cannot sign
    # without knowing the length.
    chunks: list[bytes] = []
    size = 0
    async for chunk in source.iter_any():
        size += len(chunk)
        if size > max_buffered:
            raise PayloadTooLarge(
                f"chunked body is over max_buffered_body ({max_buffered} bytes); send a "
                "Content-Length so the proxy can stream it (S3), or raise max_buffered_body"
            )
        chunks.append(chunk)
    data = b"".join(chunks)
    return ClientBody(data, len(data))


async def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of the body, off the event loop for large bodies."""
    if not data:
        return EMPTY_SHA256
    if len(data) < _HASH_IN_THREAD:
        return hashlib.sha256(data).hexdigest()
    digest = await asyncio.to_thread(hashlib.sha256, data)
    return digest.hexdigest()


async def stream_exactly(source: StreamReader, length: int) -> AsyncIterator[bytes]:
    """Yield `length` bytes from `source` in STREAM_CHUNK pieces."""
    remaining = length
    while remaining > 0:
        piece = await source.readexactly(min(STREAM_CHUNK, remaining))
        remaining -= len(piece)
        yield piece
