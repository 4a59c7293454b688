"""A client's own aws-chunked body, decoded: the plain bytes it carries and its trailer.

SDKs frame S3 uploads as `Content-Encoding: aws-chunked` under one of the `STREAMING-*` values
of `x-amz-content-sha256`: `hex-size[;chunk-signature=...]\\r\\n data \\r\\n`, a zero-size chunk,
then trailer lines (`x-amz-checksum-crc32:...`, `x-amz-trailer-signature:...`) and an empty line.
The proxy re-signs every request with its own keys, so the client's chunk and trailer signatures
are dropped (they were made with the app's keys, or none) and the checksum trailer is kept for S3
to verify. The decoder is a streaming filter over any async iterator of byte pieces, so it does
not care which HTTP front read them; a malformed stream raises `MalformedChunkedBody`, which
aborts whatever was being sent upstream.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from proxy.errors import BadRequest

# Checksum trailers S3 accepts, with the length of their base64 value (fixed per algorithm: the
# proxy must know its own Content-Length before the client's trailer arrives).
CHECKSUM_VALUE_LENGTHS = {
    "x-amz-checksum-crc32": 8,
    "x-amz-checksum-crc32c": 8,
    "x-amz-checksum-crc64nvme": 12,
    "x-amz-checksum-sha1": 28,
    "x-amz-checksum-sha256": 44,
}
_STREAMING_PREFIX = "STREAMING-"
# A chunk header is a hex size plus extensions (a 64- or 144-hex-digit signature); anything
# longer is not aws-chunked, and waiting for its end would let a client fill our memory.
_MAX_LINE = 4096
_MAX_TRAILER_LINES = 16
# Leading zeros are still hex (HTTP/1.1 chunk sizes allow them); past them, 16 digits at most.
_HEX_SIZE = re.compile(rb"0*[0-9a-fA-F]{1,16}")
_CRLF = b"\r\n"


class MalformedChunkedBody(BadRequest):
    """The client's aws-chunked framing is broken: S3's own answer is a 400 too."""

    code = "IncompleteBody"


def is_aws_chunked(content_encoding: str | None, content_sha256: str | None) -> bool:
    """Whether the client framed its body as aws-chunked (either header says so)."""
    if content_sha256 is not None and content_sha256.startswith(_STREAMING_PREFIX):
        return True
    return content_encoding is not None and "aws-chunked" in encoding_tokens(content_encoding)


def encoding_tokens(content_encoding: str) -> list[str]:
    return [token.strip().lower() for token in content_encoding.split(",") if token.strip()]


def decoded_length(value: str | None) -> int | None:
    """x-amz-decoded-content-length, or None when the client did not send one."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise MalformedChunkedBody(f"invalid x-amz-decoded-content-length {value[:40]!r}")
    return int(value)


def announced_checksum(trailer: str | None) -> str | None:
    """The checksum trailer named by x-amz-trailer (lower case), None when none was announced.

    Anything else there is refused: S3 takes only checksum trailers."""
    if trailer is None or not trailer.strip():
        return None
    names = [name.strip().lower() for name in trailer.split(",") if name.strip()]
    if len(names) != 1 or names[0] not in CHECKSUM_VALUE_LENGTHS:
        raise MalformedChunkedBody(
            f"x-amz-trailer must name one checksum header, not {trailer[:80]!r}"
        )
    return names[0]


@dataclass
class Trailer:
    """Filled in by the decoder once the client's stream has ended."""

    fields: dict[str, str] = field(default_factory=dict)
    complete: bool = False


class _Pieces:
    """Reads lines and runs of bytes out of an async iterator of arbitrary pieces."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._buffer = bytearray()
        self._ended = False

    async def _more(self) -> bool:
        if self._ended:
            return False
        try:
            piece = await anext(self._source)
        except StopAsyncIteration:
            self._ended = True
            return False
        self._buffer += piece
        return True

    async def line(self, what: str) -> bytes:
        """One CRLF-terminated line, without the CRLF."""
        while True:
            end = self._buffer.find(_CRLF)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > _MAX_LINE:
                raise MalformedChunkedBody(f"aws-chunked {what} line is too long or lacks CRLF")
            if not await self._more():
                raise MalformedChunkedBody(f"aws-chunked body ended inside a {what} line")

    async def take(self, size: int) -> AsyncIterator[bytes]:
        """Exactly `size` bytes, yielded as they arrive (no copy of the whole chunk)."""
        remaining = size
        while remaining:
            if not self._buffer and not await self._more():
                raise MalformedChunkedBody("aws-chunked body ended inside a chunk")
            if len(self._buffer) <= remaining:
                piece = bytes(self._buffer)
                self._buffer.clear()
            else:
                piece = bytes(self._buffer[:remaining])
                del self._buffer[:remaining]
            remaining -= len(piece)
            yield piece

    async def expect_crlf(self) -> None:
        while len(self._buffer) < 2:
            if not await self._more():
                raise MalformedChunkedBody("aws-chunked body ended before a chunk's CRLF")
        if self._buffer[:2] != _CRLF:
            raise MalformedChunkedBody("aws-chunked chunk is not followed by CRLF")
        del self._buffer[:2]

    async def at_end(self) -> bool:
        while not self._buffer:
            if not await self._more():
                return True
        return False


def _chunk_size(header: bytes) -> int:
    size, _, _extensions = header.partition(b";")
    if not _HEX_SIZE.fullmatch(size):
        raise MalformedChunkedBody(f"aws-chunked chunk size {size[:20]!r} is not hex")
    return int(size, 16)


async def decode_aws_chunked(
    source: AsyncIterator[bytes],
    expected_length: int | None,
    trailer: Trailer,
    checksum_name: str | None,
) -> AsyncIterator[bytes]:
    """Yield the plain bytes of an aws-chunked stream; fill `trailer` at its end.

    `expected_length` (x-amz-decoded-content-length) bounds the chunks and must be met exactly.
    Only the announced `checksum_name` trailer is kept; the client's trailer signature goes."""
    pieces = _Pieces(source)
    total = 0
    while True:
        size = _chunk_size(await pieces.line("chunk header"))
        if expected_length is not None and total + size > expected_length:
            raise MalformedChunkedBody(
                f"aws-chunked chunks exceed x-amz-decoded-content-length ({expected_length})"
            )
        if size == 0:
            break
        async for piece in pieces.take(size):
            yield piece
        total += size
        await pieces.expect_crlf()
    if expected_length is not None and total != expected_length:
        raise MalformedChunkedBody(
            f"aws-chunked body carries {total} bytes, x-amz-decoded-content-length says "
            f"{expected_length}"
        )
    await _read_trailer(pieces, trailer, checksum_name)
    if not await pieces.at_end():
        raise MalformedChunkedBody("bytes after the end of the aws-chunked body")
    trailer.complete = True


async def _read_trailer(pieces: _Pieces, trailer: Trailer, checksum_name: str | None) -> None:
    if await pieces.at_end():
        # `0;chunk-signature=...\r\n` and nothing after: the CRLF of the empty final chunk is
        # missing. Refused: S3 would wait for it and time out.
        raise MalformedChunkedBody("aws-chunked body ended without its final CRLF")
    for _ in range(_MAX_TRAILER_LINES):
        line = await pieces.line("trailer")
        if not line:
            break
        name, sep, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if not sep or not name:
            raise MalformedChunkedBody(f"aws-chunked trailer line {line[:60]!r} is malformed")
        if name == checksum_name:
            trailer.fields[name] = value.strip()
    else:
        raise MalformedChunkedBody("aws-chunked trailer has too many lines")
    if checksum_name is not None and checksum_name not in trailer.fields:
        raise MalformedChunkedBody(f"aws-chunked body lacks its announced {checksum_name} trailer")


# Headers that describe the client's framing, not the object: gone once the body is decoded.
_FRAMING_HEADERS = frozenset({"x-amz-decoded-content-length", "x-amz-trailer", "content-length"})


def plain_headers(
    headers: Sequence[tuple[str, str]], checksum_name: str | None = None
) -> list[tuple[str, str]]:
    """The client's headers for its decoded body: the aws-chunked token leaves Content-Encoding
    (any other coding, e.g. gzip, is part of the object and stays), framing headers go, and so
    does a header copy of the announced trailer checksum (the trailer's value is the one sent:
    S3 refuses a checksum given twice)."""
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING_HEADERS or lower == checksum_name:
            continue
        if lower == "content-encoding":
            others = [t for t in encoding_tokens(value) if t != "aws-chunked"]
            if others:
                kept.append((name, ",".join(others)))
            continue
        kept.append((name, value))
    return kept


def checksum_headers(trailer: Trailer) -> list[tuple[str, str]]:
    """The client's trailing checksum as a header, for a body the proxy sends whole."""
    return list(trailer.fields.items())
