"""Chunk signatures for STREAMING-AWS4-HMAC-SHA256-PAYLOAD uploads (S3 aws-chunked bodies).

Each chunk is framed as `hex(len);chunk-signature=<sig>\\r\\n<data>\\r\\n` and its signature
chains from the previous one, starting at the request's seed signature; a zero-length chunk
ends the body. The caller signs the request with payload_hash=STREAMING_PAYLOAD and the final
headers `Content-Encoding: aws-chunked`, `x-amz-decoded-content-length: <n>` and
`Content-Length: encoded_length(n, chunk_size)`, then frames the body with one ChunkSigner.
"""

from __future__ import annotations

import hashlib
import hmac

from proxy.signing.sigv4 import EMPTY_SHA256, SignedRequest

_PAYLOAD_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
_SIGNATURE_FIELD = b";chunk-signature="
_CRLF = b"\r\n"
# ";chunk-signature=" + 64 hex digits + CRLF after the header + CRLF after the data.
_FRAME_OVERHEAD = len(_SIGNATURE_FIELD) + 64 + 2 * len(_CRLF)


class ChunkSigner:
    """Frames one upload's chunks in order; not reusable, not shared between requests."""

    def __init__(self, seed: SignedRequest) -> None:
        self._key = seed.signing_key
        self._previous = seed.signature
        self._prefix = f"{_PAYLOAD_ALGORITHM}\n{seed.amz_date}\n{seed.scope}\n"
        self._finished = False

    def signature_for(self, data: bytes) -> str:
        """The next chunk's signature; advances the chain."""
        if self._finished:
            raise RuntimeError("the final chunk was already framed")
        string_to_sign = (
            f"{self._prefix}{self._previous}\n{EMPTY_SHA256}\n{hashlib.sha256(data).hexdigest()}"
        )
        self._previous = hmac.new(
            self._key, string_to_sign.encode("ascii"), hashlib.sha256
        ).hexdigest()
        return self._previous

    def frame(self, data: bytes) -> bytes:
        """One data chunk, framed and signed. Every chunk but the last must be the same size."""
        if not data:
            raise ValueError("an empty chunk ends the body: call final()")
        return self._framed(data)

    def final(self) -> bytes:
        """The zero-length chunk that ends the body."""
        framed = self._framed(b"")
        self._finished = True
        return framed

    def _framed(self, data: bytes) -> bytes:
        signature = self.signature_for(data)
        header = b"%x%s%s\r\n" % (len(data), _SIGNATURE_FIELD, signature.encode("ascii"))
        return b"".join((header, data, _CRLF))


def _framed_length(data_length: int) -> int:
    return len(f"{data_length:x}") + _FRAME_OVERHEAD + data_length


def encoded_length(decoded_length: int, chunk_size: int) -> int:
    """Content-Length of the aws-chunked body for `decoded_length` bytes in `chunk_size` chunks."""
    if decoded_length < 0 or chunk_size < 1:
        raise ValueError("decoded_length must be >= 0 and chunk_size >= 1")
    full_chunks, last = divmod(decoded_length, chunk_size)
    total = full_chunks * _framed_length(chunk_size) + _framed_length(0)
    if last:
        total += _framed_length(last)
    return total
