"""The aws-chunked decoder: every SDK framing in pieces of any size, every malformation a 400."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from proxy.bodies.awschunked import (
    MalformedChunkedBody,
    Trailer,
    announced_checksum,
    decode_aws_chunked,
    decoded_length,
    is_aws_chunked,
    plain_headers,
)
from tests.fakes import sdk_chunked
from tests.fakes.checksums import checksum


async def pieces_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def decode(
    encoded: bytes, expected: int | None, name: str | None, piece: int = 7
) -> tuple[bytes, Trailer]:
    trailer = Trailer()
    out = b"".join(
        [p async for p in decode_aws_chunked(pieces_of(encoded, piece), expected, trailer, name)]
    )
    return out, trailer


@pytest.mark.parametrize("mode", sdk_chunked.MODES)
@pytest.mark.parametrize("piece", [1, 13, 65536])
async def test_every_framing_decodes_in_pieces_of_any_size(mode: str, piece: int) -> None:
    data = os.urandom(3 * 1024 + 5)
    algorithm = "crc32c" if mode.endswith("TRAILER") else None
    encoded = sdk_chunked.encode(data, mode, algorithm, chunk_size=1024)
    name = f"x-amz-checksum-{algorithm}" if algorithm else None
    out, trailer = await decode(encoded, len(data), name, piece)
    assert out == data
    assert trailer.complete
    expected = {name: checksum("crc32c", data)} if name else {}
    assert trailer.fields == expected  # the client's trailer signature is dropped


async def test_an_empty_body_decodes() -> None:
    encoded = sdk_chunked.encode(b"", sdk_chunked.UNSIGNED_TRAILER, "sha256")
    out, trailer = await decode(encoded, 0, "x-amz-checksum-sha256")
    assert out == b""
    assert trailer.fields == {"x-amz-checksum-sha256": checksum("sha256", b"")}


GOOD = sdk_chunked.encode(b"hello world", sdk_chunked.UNSIGNED_TRAILER, "crc32")
CRC = "x-amz-checksum-crc32"


@pytest.mark.parametrize(
    ("encoded", "expected", "message"),
    [
        (b"zz\r\n" + GOOD[4:], 11, "aws-chunked chunk size b'zz' is not hex"),
        (b"-1\r\n" + GOOD[4:], 11, "aws-chunked chunk size b'-1' is not hex"),
        (GOOD.replace(b"world\r\n", b"worldXX"), 11, "aws-chunked chunk is not followed by CRLF"),
        (GOOD, 10, "aws-chunked chunks exceed x-amz-decoded-content-length (10)"),
        (GOOD, 12, "aws-chunked body carries 11 bytes, x-amz-decoded-content-length says 12"),
        (GOOD[:8], 11, "aws-chunked body ended inside a chunk"),
        (GOOD[:14], 11, "aws-chunked body ended before a chunk's CRLF"),
        (GOOD[:17], 11, "aws-chunked body ended inside a chunk header line"),
        (b"b\r\nhello world\r\n0\r\n", 11, "aws-chunked body ended without its final CRLF"),
        (GOOD[:-2], 11, "aws-chunked body ended inside a trailer line"),
        (GOOD + b"extra", 11, "bytes after the end of the aws-chunked body"),
        (
            b"b\r\nhello world\r\n0\r\n\r\n",
            11,
            "aws-chunked body lacks its announced x-amz-checksum-crc32 trailer",
        ),
        (
            b"b\r\nhello world\r\n0\r\nnocolon\r\n\r\n",
            11,
            "aws-chunked trailer line b'nocolon' is malformed",
        ),
        (b"1" * 5000, 11, "aws-chunked chunk header line is too long or lacks CRLF"),
    ],
)
async def test_malformed_streams_name_what_is_wrong(
    encoded: bytes, expected: int, message: str
) -> None:
    with pytest.raises(MalformedChunkedBody) as caught:
        await decode(encoded, expected, CRC)
    assert caught.value.message == message
    assert (caught.value.status, caught.value.code) == (400, "IncompleteBody")


async def test_a_chunk_past_the_decoded_length_is_refused_before_it_is_read() -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield b"ffffffff\r\n"
        while True:
            yield b"x" * 65536

    with pytest.raises(MalformedChunkedBody):
        async for _ in decode_aws_chunked(endless(), 100, Trailer(), None):
            pass


def test_aws_chunked_is_recognised_by_either_header() -> None:
    assert is_aws_chunked("aws-chunked", None)
    assert is_aws_chunked("gzip, AWS-Chunked", None)
    assert is_aws_chunked(None, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert not is_aws_chunked("gzip", "UNSIGNED-PAYLOAD")
    assert not is_aws_chunked(None, None)


def test_only_the_aws_chunked_token_and_framing_headers_go() -> None:
    headers = [
        ("Content-Encoding", "gzip, aws-chunked"),
        ("x-amz-decoded-content-length", "5"),
        ("X-Amz-Trailer", "x-amz-checksum-crc32"),
        ("x-amz-meta-a", "b"),
        ("Content-Type", "text/plain"),
    ]
    assert plain_headers(headers) == [
        ("Content-Encoding", "gzip"),
        ("x-amz-meta-a", "b"),
        ("Content-Type", "text/plain"),
    ]
    assert plain_headers([("content-encoding", "aws-chunked")]) == []


def test_announced_trailer_must_be_one_checksum() -> None:
    assert announced_checksum(None) is None
    assert announced_checksum("X-Amz-Checksum-CRC64NVME") == "x-amz-checksum-crc64nvme"
    with pytest.raises(MalformedChunkedBody) as caught:
        announced_checksum("x-amz-meta-evil")
    assert caught.value.message == (
        "x-amz-trailer must name one checksum header, not 'x-amz-meta-evil'"
    )


def test_decoded_length_must_be_digits() -> None:
    assert decoded_length("12") == 12
    assert decoded_length(None) is None
    with pytest.raises(MalformedChunkedBody):
        decoded_length("-3")


def test_a_header_copy_of_the_trailer_checksum_goes() -> None:
    headers = [("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-sha1", "x")]
    assert plain_headers(headers, "x-amz-checksum-crc32") == [("x-amz-checksum-sha1", "x")]


async def test_leading_zeros_are_hex_but_seventeen_digits_are_not() -> None:
    out, trailer = await decode(b"0" * 30 + GOOD, 11, CRC)
    assert out == b"hello world"
    assert CRC in trailer.fields
    with pytest.raises(MalformedChunkedBody, match="is not hex"):
        await decode(b"1" + b"0" * 16 + b"\r\n", None, None)
