"""Chunked upload signing against the S3 developer guide's worked example, plus framing rules."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from proxy.credentials.base import Credentials
from proxy.signing.chunked import ChunkSigner, encoded_length
from proxy.signing.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    SignedRequest,
    SigningInput,
    SigningKeyCache,
    sign,
)

# docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html, "Example: PUT Object":
# 66560 bytes of 'a' in 64 KiB chunks, REDUCED_REDUNDANCY, 2013-05-24T00:00:00Z.
DOC_CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DOC_TIME = 1_369_353_600.0
DOC_DECODED_LENGTH = 66560
DOC_CHUNK_SIZE = 65536
DOC_ENCODED_LENGTH = 66824
DOC_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
FRAME = re.compile(rb"([0-9a-f]+);chunk-signature=([0-9a-f]{64})\r\n")


def doc_seed_request() -> SignedRequest:
    request = SigningInput(
        method="PUT",
        host="s3.amazonaws.com",
        path="/examplebucket/chunkObject.txt",
        query="",
        headers=[
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", str(DOC_DECODED_LENGTH)),
            ("Content-Length", str(encoded_length(DOC_DECODED_LENGTH, DOC_CHUNK_SIZE))),
        ],
        payload_hash=STREAMING_PAYLOAD,
        service="s3",
        region="us-east-1",
    )
    return sign(request, DOC_CREDS, DOC_TIME, SigningKeyCache())


def test_seed_signature_matches_the_documented_example() -> None:
    seed = doc_seed_request()
    assert seed.canonical_request == (
        "PUT\n/examplebucket/chunkObject.txt\n\n"
        "content-encoding:aws-chunked\ncontent-length:66824\nhost:s3.amazonaws.com\n"
        "x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD\nx-amz-date:20130524T000000Z\n"
        "x-amz-decoded-content-length:66560\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class\nSTREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    )
    assert seed.signature == DOC_SEED


def test_chunk_signatures_match_the_documented_example() -> None:
    body = b"a" * DOC_DECODED_LENGTH
    signer = ChunkSigner(doc_seed_request())
    framed = [
        signer.frame(body[start : start + DOC_CHUNK_SIZE])
        for start in range(0, len(body), DOC_CHUNK_SIZE)
    ]
    framed.append(signer.final())
    assert [chunk_signature(f) for f in framed] == DOC_CHUNK_SIGNATURES
    assert framed[0].startswith(b"10000;chunk-signature=" + DOC_CHUNK_SIGNATURES[0].encode())
    assert framed[1].startswith(b"400;chunk-signature=")
    assert framed[2] == b"0;chunk-signature=" + DOC_CHUNK_SIGNATURES[2].encode() + b"\r\n\r\n"
    assert sum(len(f) for f in framed) == DOC_ENCODED_LENGTH


def chunk_signature(framed: bytes) -> str:
    match = FRAME.match(framed)
    assert match is not None
    return match.group(2).decode()


def decode_and_verify(seed: SignedRequest, encoded: bytes) -> bytes:
    """An independent reader: parse the framing and recompute every signature from scratch."""
    previous, position, data = seed.signature, 0, bytearray()
    while True:
        match = FRAME.match(encoded, position)
        assert match is not None, f"bad frame header at {position}"
        length = int(match.group(1), 16)
        chunk = encoded[match.end() : match.end() + length]
        assert encoded[match.end() + length : match.end() + length + 2] == b"\r\n"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                seed.amz_date,
                seed.scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        expected = hmac.new(seed.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        assert match.group(2).decode() == expected
        previous, position = expected, match.end() + length + 2
        data += chunk
        if length == 0:
            assert position == len(encoded)
            return bytes(data)


@pytest.mark.parametrize(
    ("decoded_length", "chunk_size"), [(0, 8192), (1, 8192), (8192, 8192), (20000, 8192), (5, 1)]
)
def test_frames_verify_independently_and_length_is_predicted(
    decoded_length: int, chunk_size: int
) -> None:
    body = bytes(range(256)) * (decoded_length // 256 + 1)
    body = body[:decoded_length]
    seed = doc_seed_request()
    signer = ChunkSigner(seed)
    parts = [signer.frame(body[i : i + chunk_size]) for i in range(0, len(body), chunk_size)]
    encoded = b"".join([*parts, signer.final()])
    assert len(encoded) == encoded_length(decoded_length, chunk_size)
    assert decode_and_verify(seed, encoded) == body


@pytest.mark.parametrize(
    ("decoded_length", "chunk_size", "expected"),
    [
        (0, 65536, 86),  # just the final chunk: "0;chunk-signature=<64>\r\n\r\n"
        (65536, 65536, 65626 + 86),
        (66560, 65536, 66824),
        (1, 65536, 1 + 1 + 17 + 64 + 4 + 86),
        (3 * 16, 16, 3 * (2 + 17 + 64 + 4 + 16) + 86),
    ],
)
def test_encoded_length_arithmetic(decoded_length: int, chunk_size: int, expected: int) -> None:
    assert encoded_length(decoded_length, chunk_size) == expected


def test_encoded_length_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        encoded_length(10, 0)
    with pytest.raises(ValueError, match="decoded_length"):
        encoded_length(-1, 10)


def test_empty_data_chunk_and_framing_after_final_are_refused() -> None:
    signer = ChunkSigner(doc_seed_request())
    with pytest.raises(ValueError, match="final"):
        signer.frame(b"")
    signer.final()
    with pytest.raises(RuntimeError, match="final chunk"):
        signer.frame(b"late")
