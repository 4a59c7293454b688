"""Large S3 uploads streamed through without holding the body in memory.

Over HTTPS with `unsigned_payload: true` the body goes as it is under `UNSIGNED-PAYLOAD`;
otherwise every 64 KiB piece is framed and signed with aws-chunked streaming signatures
(`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), which works over plain HTTP too.

A client's own aws-chunked body arrives here decoded (proxy/bodies/awschunked.py). When it
carried a checksum trailer, the trailer goes on to S3 so S3 verifies the object: signed
(`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`, the trailer signed too) or, under
`unsigned_payload` over HTTPS, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`. The value is only known
once the client's stream has ended, but its length is fixed by the algorithm, so the
Content-Length is known up front.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from proxy.aws.routing import Target
from proxy.bodies.awschunked import CHECKSUM_VALUE_LENGTHS, MalformedChunkedBody
from proxy.bodies.client import STREAM_CHUNK, ClientBody, DecodedStream, stream_exactly
from proxy.credentials.base import Credentials
from proxy.signing.chunked import (
    ChunkSigner,
    UnsignedChunks,
    encoded_length,
    unsigned_encoded_length,
)
from proxy.signing.sigv4 import (
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    SigningKeyCache,
    sign,
)


@dataclass(frozen=True, slots=True)
class StreamingUpload:
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]


def streaming_upload(
    *,
    method: str,
    target: Target,
    headers: Sequence[tuple[str, str]],
    body: ClientBody,
    creds: Credentials,
    now: float,
    keys: SigningKeyCache,
    unsigned_over_https: bool,
) -> StreamingUpload:
    """Sign a streamed upload; the returned body yields what goes on the wire."""
    if body.chunked is not None:
        plain = _even_pieces(body.chunked.pieces, STREAM_CHUNK)
        checksum = body.chunked.checksum
    else:
        assert body.source is not None, "only streamed bodies come here"
        plain = stream_exactly(body.source, body.length)
        checksum = None
    unsigned = unsigned_over_https and target.scheme == "https"
    if unsigned and checksum is None:
        with_length = [*headers, ("Content-Length", str(body.length))]
        signed = sign(target.to_sign(method, with_length, UNSIGNED_PAYLOAD), creds, now, keys)
        return StreamingUpload(signed.path, signed.query, signed.headers, plain)
    trailer = [(checksum, CHECKSUM_VALUE_LENGTHS[checksum])] if checksum is not None else None
    if unsigned:
        assert trailer is not None
        length = unsigned_encoded_length(body.length, STREAM_CHUNK, trailer)
        payload_hash = STREAMING_UNSIGNED_TRAILER
    else:
        length = encoded_length(body.length, STREAM_CHUNK, trailer)
        payload_hash = STREAMING_PAYLOAD if trailer is None else STREAMING_PAYLOAD_TRAILER
    encodings = [v for k, v in headers if k.lower() == "content-encoding"]
    chunked_headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
    chunked_headers += [
        ("Content-Encoding", ",".join(["aws-chunked", *encodings])),
        ("x-amz-decoded-content-length", str(body.length)),
        ("Content-Length", str(length)),
    ]
    if checksum is not None:
        chunked_headers.append(("x-amz-trailer", checksum))
    signed = sign(target.to_sign(method, chunked_headers, payload_hash), creds, now, keys)
    if unsigned:
        wire = _unsigned_framed(plain, body.chunked)
    else:
        wire = _framed(plain, ChunkSigner(signed), body.chunked)
    return StreamingUpload(signed.path, signed.query, signed.headers, wire)


def _trailer_of(decoded: DecodedStream) -> list[tuple[str, str]]:
    """The client's checksum trailer, once its stream has ended, checked against the length
    our Content-Length promised."""
    name = decoded.checksum
    assert name is not None
    assert decoded.trailer.complete
    value = decoded.trailer.fields[name]
    if len(value) != CHECKSUM_VALUE_LENGTHS[name]:
        raise MalformedChunkedBody(f"{name} trailer value {value[:60]!r} is not a valid checksum")
    return [(name, value)]


async def _framed(
    plain: AsyncIterator[bytes], signer: ChunkSigner, decoded: DecodedStream | None
) -> AsyncIterator[bytes]:
    async for piece in plain:
        yield signer.frame(piece)
    if decoded is not None and decoded.checksum is not None:
        yield signer.final_with_trailer(_trailer_of(decoded))
    else:
        yield signer.final()


async def _unsigned_framed(
    plain: AsyncIterator[bytes], decoded: DecodedStream | None
) -> AsyncIterator[bytes]:
    assert decoded is not None
    async for piece in plain:
        yield UnsignedChunks.frame(piece)
    yield UnsignedChunks.final_with_trailer(_trailer_of(decoded))


async def _even_pieces(pieces: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Re-cut pieces of any size into `size`-byte ones (the last may be shorter): signed
    aws-chunked framing needs equal chunks for its Content-Length to be known up front."""
    pending = bytearray()
    async for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)
