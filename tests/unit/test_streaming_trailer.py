"""A client's decoded aws-chunked body streamed on with its checksum trailer: signed trailer
(checked by the verifying fake S3's own parser), or unsigned over HTTPS when configured, with
a Content-Length known before the trailer arrives."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from proxy.bodies.awschunked import MalformedChunkedBody, Trailer
from proxy.bodies.client import STREAM_CHUNK, ClientBody, DecodedStream
from proxy.signing.streaming import StreamingUpload
from tests.fakes.checksums import checksum
from tests.fakes.verifying_s3 import decode_chunked
from tests.unit.test_streaming import CREDS, http_target, https_target, one, seed_of, upload

ALGORITHMS = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]


def decoded_body(data: bytes, algorithm: str | None, value: str | None = None) -> ClientBody:
    """What the decoder hands on: uneven pieces, and the trailer filled in once they end."""
    trailer = Trailer()
    name = f"x-amz-checksum-{algorithm}" if algorithm else None

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 10_007):
            yield data[start : start + 10_007]
        if name is not None:
            trailer.fields[name] = value if value is not None else checksum(algorithm or "", data)
        trailer.complete = True

    return ClientBody(None, len(data), chunked=DecodedStream(pieces(), trailer, name))


async def wire_of(streamed: StreamingUpload) -> bytes:
    return b"".join([piece async for piece in streamed.body])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, STREAM_CHUNK, 3 * STREAM_CHUNK + 17])
async def test_signed_trailer_verifies_and_the_length_is_exact(algorithm: str, size: int) -> None:
    data = os.urandom(size)
    streamed = upload(http_target(), decoded_body(data, algorithm))
    wire = await wire_of(streamed)
    assert int(one(streamed.headers, "content-length")) == len(wire)
    assert one(streamed.headers, "x-amz-content-sha256") == (
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    )
    assert one(streamed.headers, "x-amz-trailer") == f"x-amz-checksum-{algorithm}"
    assert one(streamed.headers, "x-amz-decoded-content-length") == str(size)
    seed = seed_of(streamed)
    context = (seed.signing_key, f"{seed.amz_date}\n{seed.scope}\n", seed.signature)
    decoded, trailer = decode_chunked(wire, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", context)
    assert decoded == data
    assert trailer == {f"x-amz-checksum-{algorithm}": checksum(algorithm, data)}


@pytest.mark.parametrize("size", [0, 5, 2 * STREAM_CHUNK + 1])
async def test_unsigned_trailer_over_https_when_configured(size: int) -> None:
    data = os.urandom(size)
    streamed = upload(https_target(), decoded_body(data, "sha256"), unsigned_over_https=True)
    wire = await wire_of(streamed)
    assert int(one(streamed.headers, "content-length")) == len(wire)
    assert one(streamed.headers, "x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    decoded, trailer = decode_chunked(wire, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", (b"", "", ""))
    assert decoded == data
    assert trailer == {"x-amz-checksum-sha256": checksum("sha256", data)}


async def test_unsigned_over_plain_http_is_still_signed() -> None:
    streamed = upload(http_target(), decoded_body(b"abc", "crc32"), unsigned_over_https=True)
    assert one(streamed.headers, "x-amz-content-sha256").startswith("STREAMING-AWS4-HMAC")


async def test_without_a_trailer_the_plain_streaming_signature_is_used() -> None:
    data = os.urandom(STREAM_CHUNK + 3)
    streamed = upload(http_target(), decoded_body(data, None))
    wire = await wire_of(streamed)
    assert one(streamed.headers, "x-amz-content-sha256") == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert int(one(streamed.headers, "content-length")) == len(wire)
    assert not [k for k, _ in streamed.headers if k.lower() == "x-amz-trailer"]
    unsigned = upload(https_target(), decoded_body(data, None), unsigned_over_https=True)
    assert one(unsigned.headers, "x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert await wire_of(unsigned) == data


async def test_a_trailer_value_of_the_wrong_length_aborts_the_upload() -> None:
    streamed = upload(http_target(), decoded_body(b"abc", "crc32", value="AAAAAAAAAAAA"))
    with pytest.raises(MalformedChunkedBody) as caught:
        await wire_of(streamed)
    assert caught.value.message == (
        "x-amz-checksum-crc32 trailer value 'AAAAAAAAAAAA' is not a valid checksum"
    )
    assert CREDS.secret_access_key not in caught.value.message
