"""Chunk signatures for STREAMING-AWS4-HMAC-SHA256-PAYLOAD uploads (S3 aws-chunked bodies).

Each chunk is framed as `hex(len);chunk-signature=<sig>\\r\\n<data>\\r\\n` and its signature
chains from the previous one, starting at the request's seed signature; a zero-length chunk
ends the body. The caller signs the request with payload_hash=STREAMING_PAYLOAD and the final
headers `Content-Encoding: aws-chunked`, `x-amz-decoded-content-length: <n>` and
`Content-Length: encoded_length(n, chunk_size)`, then frames the body with one ChunkSigner.

With a checksum trailer (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`, AWS's "sigv4-streaming
trailers") the zero-length chunk is followed by the trailer lines and
`x-amz-trailer-signature:<sig>`, chained from the final chunk's signature over the trailer's
canonical form (`name:value\\n` per line). `UnsignedChunks` frames the same body without any
signature (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, for HTTPS with `unsigned_payload`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from proxy.signing.sigv4 import EMPTY_SHA256, SignedRequest

_PAYLOAD_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
_TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
_TRAILER_SIGNATURE_FIELD = b"x-amz-trailer-signature:"
_SIGNATURE_FIELD = b";chunk-signature="
_CRLF = b"\r\n"
# ";chunk-signature=" + 64 hex digits + CRLF after the header + CRLF after the data.
_FRAME_OVERHEAD = len(_SIGNATURE_FIELD) + 64 + 2 * len(_CRLF)


class ChunkSigner:
    """Frames one upload's chunks in order; not reusable, not shared between requests."""

    def __init__(self, seed: SignedRequest) -> None:
        self._key = seed.signing_key
        self._previous = seed.signature
        self._date_scope = f"{seed.amz_date}\n{seed.scope}\n"
        self._prefix = f"{_PAYLOAD_ALGORITHM}\n{self._date_scope}"
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

    def final_with_trailer(self, trailer: Sequence[tuple[str, str]]) -> bytes:
        """The zero-length chunk, the trailer lines and their signature: the body's end."""
        last = self.signature_for(b"")
        self._finished = True
        canonical = "".join(f"{name.lower()}:{value.strip()}\n" for name, value in trailer)
        string_to_sign = (
            f"{_TRAILER_ALGORITHM}\n{self._date_scope}{last}\n"
            f"{hashlib.sha256(canonical.encode('ascii')).hexdigest()}"
        )
        signature = hmac.new(self._key, string_to_sign.encode("ascii"), hashlib.sha256).digest()
        return b"".join(
            (
                b"0%s%s\r\n" % (_SIGNATURE_FIELD, last.encode("ascii")),
                _trailer_lines(trailer),
                b"%s%s\r\n\r\n" % (_TRAILER_SIGNATURE_FIELD, signature.hex().encode("ascii")),
            )
        )

    def _framed(self, data: bytes) -> bytes:
        signature = self.signature_for(data)
        header = b"%x%s%s\r\n" % (len(data), _SIGNATURE_FIELD, signature.encode("ascii"))
        return b"".join((header, data, _CRLF))


class UnsignedChunks:
    """aws-chunked framing without signatures: `hex(len)\\r\\n<data>\\r\\n`, then `0\\r\\n`, the
    trailer lines and an empty line."""

    @staticmethod
    def frame(data: bytes) -> bytes:
        if not data:
            raise ValueError("an empty chunk ends the body: call final_with_trailer()")
        return b"".join((b"%x\r\n" % len(data), data, _CRLF))

    @staticmethod
    def final_with_trailer(trailer: Sequence[tuple[str, str]]) -> bytes:
        return b"".join((b"0\r\n", _trailer_lines(trailer), _CRLF))


def _trailer_lines(trailer: Sequence[tuple[str, str]]) -> bytes:
    return b"".join(b"%s:%s\r\n" % (n.encode("ascii"), v.encode("ascii")) for n, v in trailer)


def _framed_length(data_length: int) -> int:
    return len(f"{data_length:x}") + _FRAME_OVERHEAD + data_length


def _trailer_length(trailer: Sequence[tuple[str, int]]) -> int:
    """Bytes of the trailer lines, from each name and the length of its value."""
    return sum(len(name) + 1 + value_length + 2 for name, value_length in trailer)


def encoded_length(
    decoded_length: int, chunk_size: int, trailer: Sequence[tuple[str, int]] | None = None
) -> int:
    """Content-Length of the signed aws-chunked body for `decoded_length` bytes in `chunk_size`
    chunks; `trailer` (name, value length) pairs when the body ends with a signed trailer."""
    if decoded_length < 0 or chunk_size < 1:
        raise ValueError("decoded_length must be >= 0 and chunk_size >= 1")
    full_chunks, last = divmod(decoded_length, chunk_size)
    total = full_chunks * _framed_length(chunk_size) + _framed_length(0)
    if last:
        total += _framed_length(last)
    if trailer is not None:
        # The final chunk loses its empty data's CRLF; the trailer and its signature follow.
        total += _trailer_length(trailer) - len(_CRLF)
        total += len(_TRAILER_SIGNATURE_FIELD) + 64 + 2 * len(_CRLF)
    return total


def unsigned_encoded_length(
    decoded_length: int, chunk_size: int, trailer: Sequence[tuple[str, int]]
) -> int:
    """Content-Length of the unsigned aws-chunked body (see UnsignedChunks)."""
    if decoded_length < 0 or chunk_size < 1:
        raise ValueError("decoded_length must be >= 0 and chunk_size >= 1")
    full_chunks, last = divmod(decoded_length, chunk_size)
    total = full_chunks * (len(f"{chunk_size:x}") + 4 + chunk_size)
    if last:
        total += len(f"{last:x}") + 4 + last
    return total + len(b"0\r\n") + _trailer_length(trailer) + len(_CRLF)
