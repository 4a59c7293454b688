"""aws-chunked bodies as the SDKs frame them, for tests that play the client.

The client's chunk and trailer signatures are made with the app's own (here: random) key: the
proxy cannot check them and must drop them, re-signing with its own.
"""

from __future__ import annotations

import os

from tests.fakes.checksums import checksum

UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
ECDSA = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
ECDSA_TRAILER = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"
MODES = (UNSIGNED_TRAILER, SIGNED, SIGNED_TRAILER, ECDSA, ECDSA_TRAILER)


def _signature(mode: str) -> str:
    if "ECDSA" in mode:
        # SigV4a chunk signatures are DER ECDSA in hex, padded with '*' to 144 characters.
        return os.urandom(70).hex().ljust(144, "*")
    return os.urandom(32).hex()


def encode(data: bytes, mode: str, algorithm: str | None, chunk_size: int = 64 * 1024) -> bytes:
    """`data` framed for `mode`, ending with a checksum trailer for `algorithm` when the mode
    has one."""
    signed = mode != UNSIGNED_TRAILER
    out = bytearray()
    for start in range(0, len(data), chunk_size):
        piece = data[start : start + chunk_size]
        extension = f";chunk-signature={_signature(mode)}" if signed else ""
        out += f"{len(piece):x}{extension}\r\n".encode() + piece + b"\r\n"
    out += f"0;chunk-signature={_signature(mode)}\r\n".encode() if signed else b"0\r\n"
    if not mode.endswith("TRAILER"):
        return bytes(out + b"\r\n")
    assert algorithm is not None
    out += f"x-amz-checksum-{algorithm}:{checksum(algorithm, data)}\r\n".encode()
    if signed:
        out += f"x-amz-trailer-signature:{_signature(mode)}\r\n".encode()
    return bytes(out + b"\r\n")


def headers(data: bytes, mode: str, algorithm: str | None, encoded: bytes) -> dict[str, str]:
    """The headers an SDK sends with `encoded` (its own Authorization is left out: the app sends
    unsigned through the proxy, or the proxy strips it)."""
    sent = {
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": mode,
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(len(encoded)),
    }
    if mode.endswith("TRAILER"):
        assert algorithm is not None
        sent["x-amz-trailer"] = f"x-amz-checksum-{algorithm}"
        sent["x-amz-sdk-checksum-algorithm"] = algorithm.upper()
    return sent
