"""S3's relatives are S3 everywhere: an s3-outposts upload over max_buffered_body streams with
aws-chunked signing through a real proxy (it once got 413: one copy of the S3 names forgot it)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.raw_http import RawHttpServer, fixed
from tests.servers import ProxyProcess, proxy_process

OUTPOSTS = "ap-123456789012.op-01234567890123456.s3-outposts.us-east-1.amazonaws.com"
_CHUNK = re.compile(rb"([0-9a-f]+);chunk-signature=[0-9a-f]{64}\r\n")


def aws_chunked_payload(framed: bytes) -> bytes:
    """The data inside an aws-chunked body (signatures are checked by the unit tests)."""
    data, at = b"", 0
    while True:
        match = _CHUNK.match(framed, at)
        assert match is not None, framed[at : at + 80]
        size, at = int(match.group(1), 16), match.end()
        if size == 0:
            assert framed[at:] == b"\r\n"
            return data
        data += framed[at : at + size]
        assert framed[at + size : at + size + 2] == b"\r\n"
        at += size + 2


@pytest.fixture
async def upstream() -> AsyncIterator[RawHttpServer]:
    raw = RawHttpServer(fixed(b""))
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: RawHttpServer) -> Iterator[ProxyProcess]:
    config = {"routes": [{"host": OUTPOSTS, "upstream": upstream.url}], "max_buffered_body": "1KiB"}
    with proxy_process(tmp_path, config) as handle:
        yield handle


async def test_an_s3_outposts_upload_over_the_buffer_streams_as_s3(
    proxy: ProxyProcess, upstream: RawHttpServer
) -> None:
    body = os.urandom(200_000)
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{proxy.url}/key.bin", data=body, headers={"Host": OUTPOSTS}) as answer,
    ):
        assert answer.status == 200, await answer.text()
    head = upstream.heads[0].decode().lower()
    assert "x-amz-content-sha256: streaming-aws4-hmac-sha256-payload" in head
    assert "x-amz-decoded-content-length: 200000" in head
    assert "/us-east-1/s3-outposts/aws4_request" in head
    assert aws_chunked_payload(upstream.bodies[0]) == body
