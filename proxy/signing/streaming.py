"""Large S3 uploads streamed through without holding the body in memory.

Over HTTPS with `unsigned_payload: true` the body goes as it is under `UNSIGNED-PAYLOAD`;
otherwise every 64 KiB piece is framed and signed with aws-chunked streaming signatures
(`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), which works over plain HTTP too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from proxy.aws.routing import Target
from proxy.bodies.client import STREAM_CHUNK, ClientBody, stream_exactly
from proxy.credentials.base import Credentials
from proxy.signing.chunked import ChunkSigner, encoded_length
from proxy.signing.sigv4 import STREAMING_PAYLOAD, UNSIGNED_PAYLOAD, SigningKeyCache, sign


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
    assert body.source is not None, "only streamed bodies come here"
    if unsigned_over_https and target.scheme == "https":
        with_length = [*headers, ("Content-Length", str(body.length))]
        signed = sign(target.to_sign(method, with_length, UNSIGNED_PAYLOAD), creds, now, keys)
        return StreamingUpload(
            signed.path, signed.query, signed.headers, stream_exactly(body.source, body.length)
        )
    encodings = [v for k, v in headers if k.lower() == "content-encoding"]
    chunked_headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
    chunked_headers += [
        ("Content-Encoding", ",".join(["aws-chunked", *encodings])),
        ("x-amz-decoded-content-length", str(body.length)),
        ("Content-Length", str(encoded_length(body.length, STREAM_CHUNK))),
    ]
    signed = sign(target.to_sign(method, chunked_headers, STREAMING_PAYLOAD), creds, now, keys)
    return StreamingUpload(
        signed.path, signed.query, signed.headers, _framed(body, ChunkSigner(signed))
    )


async def _framed(body: ClientBody, signer: ChunkSigner) -> AsyncIterator[bytes]:
    assert body.source is not None
    async for piece in stream_exactly(body.source, body.length):
        yield signer.frame(piece)
    yield signer.final()
