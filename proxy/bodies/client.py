"""Client request bodies: small ones buffered, hashed and replayable; large S3 uploads streamed.

A body up to `max_buffered_body` is read whole so it can be hashed for the signature and sent
again on a retry. A larger S3 upload is streamed through without being held in memory
(aws-chunked signing or UNSIGNED-PAYLOAD); a larger non-S3 body up to `max_body` is spooled to
disk (proxy/bodies/spool.py); anything larger gets 413.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from proxy.bodies.awschunked import Trailer
from proxy.errors import BadRequest, PayloadTooLarge
from proxy.requestvalue import request_value
from proxy.signing.sigv4 import EMPTY_SHA256

if TYPE_CHECKING:
    from proxy.bodies.spool import SpooledBody

STREAM_CHUNK = 64 * 1024
# Hashing a few MiB takes milliseconds; past this size it runs in a thread (hashlib releases
# the GIL) so the event loop keeps serving other requests.
_HASH_IN_THREAD = 256 * 1024


class BodySource(Protocol):
    """Where a client body is read from (proxy.front.body.RequestBody): reads raise a
    ProxyError (ClientBodyIncomplete, ClientBodyTimeout) when the client does not deliver."""

    async def readexactly(self, size: int, /) -> bytes: ...

    def iter_any(self) -> AsyncIterator[bytes]: ...

    def iter_chunked(self, size: int, /) -> AsyncIterator[bytes]: ...


@request_value
class ClientBody:
    """Buffered `data` (replayable), a `source` to stream `length` bytes from, a client's
    aws-chunked body decoded as it streams (`chunked`), or a body spooled to disk (`spool`,
    replayable). `headers` replaces the client's headers when the body changed their meaning
    (a decoded aws-chunked body: its framing headers go, its trailing checksum becomes one)."""

    data: bytes | None
    length: int
    source: BodySource | None = None
    chunked: DecodedStream | None = None
    spool: SpooledBody | None = None
    headers: list[tuple[str, str]] | None = None

    @property
    def replayable(self) -> bool:
        return self.data is not None or self.spool is not None

    def upstream_headers(self, forwardable: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The client's forwardable headers, as this body needs them sent."""
        return forwardable if self.headers is None else self.headers

    def discard(self) -> None:
        """Free what the body holds outside memory (its spool file); the request is over."""
        if self.spool is not None:
            self.spool.close()


@dataclass(frozen=True, slots=True)
class DecodedStream:
    """A client's aws-chunked body: `pieces` yields its plain bytes (any sizes) once; `trailer`
    holds the checksum trailer when `pieces` is exhausted, under the announced `checksum` name."""

    pieces: AsyncIterator[bytes]
    trailer: Trailer
    checksum: str | None


_EMPTY = ClientBody(b"", 0)


def declared_length(value: str | None) -> int | None:
    """The Content-Length, or None when absent; malformed values are a 400."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(f"invalid Content-Length {value[:40]!r}")
    return int(value)


def over_max_body(max_body: int, size: int | None = None) -> PayloadTooLarge:
    """The 413 for a non-S3 body over `max_body`."""
    what = f"body of {size} bytes" if size is not None else "body"
    return PayloadTooLarge(
        f"{what} is over max_body ({max_body} bytes); only S3 uploads are streamed, "
        "raise max_body for larger bodies"
    )


def refuse_oversized(content_length: int | None, max_body: int, streamable: bool) -> None:
    """413 for a declared body over max_body that cannot be streamed (before 100 Continue)."""
    if content_length is not None and content_length > max_body and not streamable:
        raise over_max_body(max_body, content_length)


async def read_client_body(
    source: BodySource,
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
        if not streamable:
            raise PayloadTooLarge(
                f"body of {content_length} bytes is over max_buffered_body ({max_buffered} "
                "bytes); only S3 uploads are streamed, raise max_buffered_body for larger bodies"
            )
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


async def stream_exactly(source: BodySource, length: int) -> AsyncIterator[bytes]:
    """Yield `length` bytes from `source` in STREAM_CHUNK pieces."""
    remaining = length
    while remaining > 0:
        piece = await source.readexactly(min(STREAM_CHUNK, remaining))
        remaining -= len(piece)
        yield piece
