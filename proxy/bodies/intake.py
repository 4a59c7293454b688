"""Which way a client's body goes: buffered, streamed (S3), decoded (aws-chunked) or spooled.

- S3 uploads framed as aws-chunked by the client's SDK are decoded: small ones buffered (their
  trailing checksum becomes a header), large ones streamed and framed again by the proxy.
- Other S3 uploads: buffered up to `max_buffered_body`, streamed past it.
- Other services: buffered up to `max_buffered_body`, spooled to disk up to `max_body`, 413
  past it (refused before 100 Continue when the Content-Length says so).

Every function here reads the body through the `source` reader and the headers it is given,
so the HTTP front that produced them does not matter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from proxy.bodies.awschunked import (
    MalformedChunkedBody,
    Trailer,
    announced_checksum,
    checksum_headers,
    decode_aws_chunked,
    decoded_length,
    is_aws_chunked,
    plain_headers,
)
from proxy.bodies.client import (
    STREAM_CHUNK,
    BodySource,
    ClientBody,
    DecodedStream,
    read_client_body,
    refuse_oversized,
    stream_exactly,
)
from proxy.bodies.spool import SpoolArea, spool_body
from proxy.errors import PayloadTooLarge


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_buffered: int  # the most one body holds in memory
    max_body: int  # the largest non-S3 body accepted at all
    spool: SpoolArea


def refuse_before_continue(length: int | None, limits: BodyLimits, s3_upload: bool) -> None:
    """413 for a declared body that will be refused anyway, before the client is told to send."""
    refuse_oversized(length, limits.max_body, s3_upload)


async def read_body(
    source: BodySource,
    headers: Mapping[str, str],
    forwardable: list[tuple[str, str]],
    length: int | None,
    limits: BodyLimits,
    *,
    s3_upload: bool,
    has_body: bool,
    resigned: bool = True,
) -> ClientBody:
    """The client's body, read the way its size and service call for.

    `headers` are the client's (case-insensitive), `forwardable` the ones that go upstream.
    `resigned` False (a presigned request, sent as the client signed it): an aws-chunked body
    stays as it is, its framing is part of what the client signed."""
    if (
        s3_upload
        and resigned
        and is_aws_chunked(headers.get("Content-Encoding"), headers.get("x-amz-content-sha256"))
    ):
        return await read_aws_chunked(source, length, headers, forwardable, limits.max_buffered)
    small = length is not None and length <= limits.max_buffered
    if s3_upload or small or (not has_body and not length):
        return await read_client_body(source, length, limits.max_buffered, s3_upload, has_body)
    return await _read_spooled(source, length, limits)


async def read_aws_chunked(
    source: BodySource,
    length: int | None,
    headers: Mapping[str, str],
    forwardable: list[tuple[str, str]],
    max_buffered: int,
) -> ClientBody:
    """A client's aws-chunked upload, decoded: buffered when its decoded length fits in memory,
    else a stream the signer frames again (its trailer read at the end)."""
    checksum = announced_checksum(headers.get("x-amz-trailer"))
    expected = decoded_length(headers.get("x-amz-decoded-content-length"))
    trailer = Trailer()
    decoded = decode_aws_chunked(_raw(source, length), expected, trailer, checksum)
    upstream = plain_headers(forwardable, checksum)
    if expected is not None and expected > max_buffered:
        return ClientBody(
            None, expected, chunked=DecodedStream(decoded, trailer, checksum), headers=upstream
        )
    pieces: list[bytes] = []
    size = 0
    async for piece in decoded:
        size += len(piece)
        if size > max_buffered:
            raise PayloadTooLarge(
                f"aws-chunked body without x-amz-decoded-content-length is over "
                f"max_buffered_body ({max_buffered} bytes); send the decoded length so the "
                "proxy can stream it"
            )
        pieces.append(piece)
    data = b"".join(pieces)
    return ClientBody(data, len(data), headers=upstream + checksum_headers(trailer))


async def _raw(source: BodySource, length: int | None) -> AsyncIterator[bytes]:
    """The client's encoded bytes; a body shorter than its Content-Length is malformed too."""
    try:
        if length is not None:
            async for piece in stream_exactly(source, length):
                yield piece
        else:
            async for piece in source.iter_chunked(STREAM_CHUNK):
                yield piece
    except asyncio.IncompleteReadError as exc:
        raise MalformedChunkedBody(
            f"the client sent {len(exc.partial)} bytes short of its Content-Length"
        ) from exc


async def _read_spooled(source: BodySource, length: int | None, limits: BodyLimits) -> ClientBody:
    """A non-S3 body past max_buffered_body: on disk, hashed, replayable."""
    if length is not None:
        spooled = await spool_body(
            limits.spool, b"", stream_exactly(source, length), length, limits.max_body
        )
        return ClientBody(None, spooled.length, spool=spooled)
    # Chunked transfer, length unknown: memory while it fits, disk from there on.
    pieces = source.iter_chunked(STREAM_CHUNK)
    buffered: list[bytes] = []
    size = 0
    async for piece in pieces:
        buffered.append(piece)
        size += len(piece)
        if size > limits.max_buffered:
            spooled = await spool_body(
                limits.spool, b"".join(buffered), aiter(pieces), None, limits.max_body
            )
            return ClientBody(None, spooled.length, spool=spooled)
    data = b"".join(buffered)
    return ClientBody(data, len(data))
