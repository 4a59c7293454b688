"""A client's own aws-chunked uploads through a real proxy process to a fake S3 that checks the
proxy's payload hash, seed, chunk and trailer signatures and the client's checksum: every
`x-amz-content-sha256` an SDK sends, small (sent whole) and large (framed again), and every
way a chunk stream can be malformed (a 400 in S3's XML, nothing stored)."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes import sdk_chunked
from tests.fakes.checksums import checksum
from tests.fakes.threaded import serve_in_thread
from tests.fakes.verifying_s3 import VerifyingS3
from tests.servers import EXAMPLE_SECRET, ProxyProcess, credential_env, proxy_process

BUFFERED = 256 * 1024
LARGE = 3 * BUFFERED + 12_345  # over max_buffered_body: streamed, framed by the proxy
HOST = "s3.us-east-1.amazonaws.com"


@dataclass
class Stack:
    s3: VerifyingS3
    proxy: ProxyProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("aws-chunked")
    s3 = VerifyingS3(EXAMPLE_SECRET)
    with serve_in_thread(s3.app()) as url:
        config = {
            "routes": [{"host": "*.amazonaws.com", "upstream": url}],
            "max_buffered_body": BUFFERED,
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp, config, env=credential_env(tmp)) as proxy:
            yield Stack(s3, proxy)


def put(
    proxy: ProxyProcess, key: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/bucket/{key}", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def _upload(stack: Stack, key: str, data: bytes, mode: str, algorithm: str | None) -> None:
    encoded = sdk_chunked.encode(data, mode, algorithm)
    status, _, body = put(
        stack.proxy, key, encoded, sdk_chunked.headers(data, mode, algorithm, encoded)
    )
    assert status == 200, (body, stack.s3.rejections[-1:])


@pytest.mark.parametrize("mode", sdk_chunked.MODES)
@pytest.mark.parametrize("size", [1000, LARGE], ids=["small", "large"])
def test_every_sdk_framing_is_decoded_and_resigned(stack: Stack, mode: str, size: int) -> None:
    data = os.urandom(size)
    algorithm = "crc32" if mode.endswith("TRAILER") else None
    key = f"{mode}-{size}"
    _upload(stack, key, data, mode, algorithm)
    stored = stack.s3.objects[f"/bucket/{key}"]
    assert stored.data == data  # byte for byte: no framing, no trailer inside the object
    assert stored.content_encoding is None  # the aws-chunked token is gone
    if algorithm is not None:
        assert stored.checksum == (algorithm, checksum(algorithm, data))  # S3 verified it
    if size <= BUFFERED:
        assert stored.payload_mode == hashlib.sha256(data).hexdigest()
    elif algorithm is not None:
        assert stored.payload_mode == sdk_chunked.SIGNED_TRAILER
    else:
        assert stored.payload_mode == sdk_chunked.SIGNED


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
@pytest.mark.parametrize("size", [5000, BUFFERED + 1], ids=["header", "trailer"])
def test_every_checksum_reaches_s3(stack: Stack, algorithm: str, size: int) -> None:
    data = os.urandom(size)
    key = f"sum-{algorithm}-{size}"
    _upload(stack, key, data, sdk_chunked.UNSIGNED_TRAILER, algorithm)
    stored = stack.s3.objects[f"/bucket/{key}"]
    assert stored.data == data
    assert stored.checksum == (algorithm, checksum(algorithm, data))


@pytest.mark.parametrize("size", [100, LARGE], ids=["small", "large"])
def test_other_content_codings_stay(stack: Stack, size: int) -> None:
    data = os.urandom(size)
    mode = sdk_chunked.UNSIGNED_TRAILER
    encoded = sdk_chunked.encode(data, mode, "sha256")
    headers = sdk_chunked.headers(data, mode, "sha256", encoded)
    headers["Content-Encoding"] = "gzip, aws-chunked"
    status, _, body = put(stack.proxy, f"gz-{size}", encoded, headers)
    assert status == 200, body
    stored = stack.s3.objects[f"/bucket/gz-{size}"]
    assert (stored.data, stored.content_encoding) == (data, "gzip")


@pytest.mark.parametrize("size", [1000, LARGE], ids=["small", "large"])
def test_a_checksum_sent_as_header_and_trailer_reaches_s3_once(stack: Stack, size: int) -> None:
    data = os.urandom(size)
    mode = sdk_chunked.UNSIGNED_TRAILER
    encoded = sdk_chunked.encode(data, mode, "crc32")
    headers = sdk_chunked.headers(data, mode, "crc32", encoded)
    headers["x-amz-checksum-crc32"] = checksum("crc32", data)
    status, _, body = put(stack.proxy, f"twice-{size}", encoded, headers)
    assert status == 200, (body, stack.s3.rejections[-1:])
    assert stack.s3.objects[f"/bucket/twice-{size}"].checksum == ("crc32", checksum("crc32", data))


@pytest.mark.parametrize("digits", ["0000", "0" * 40], ids=["four", "forty"])
def test_chunk_sizes_with_leading_zeros_and_uppercase_hex_are_decoded(
    stack: Stack, digits: str
) -> None:
    data = os.urandom(LARGE)
    mode = sdk_chunked.UNSIGNED_TRAILER
    framed = sdk_chunked.encode(data, mode, "crc32")
    # Every chunk header line (`10000\r\n`, ..., `0\r\n`) padded and in upper case.
    encoded = framed.replace(b"10000\r\n", digits.encode() + b"10000\r\n")
    tail = f"{len(data) % 65536:x}\r\n".encode()
    encoded = encoded.replace(tail, digits.encode() + tail.upper(), 1)
    assert len(encoded) > len(framed) + 4 * len(digits)  # several chunk headers padded
    headers = sdk_chunked.headers(data, mode, "crc32", encoded)
    status, _, body = put(stack.proxy, f"zeros-{len(digits)}", encoded, headers)
    assert status == 200, (body, stack.s3.rejections[-1:])
    assert stack.s3.objects[f"/bucket/zeros-{len(digits)}"].data == data


def test_a_wrong_client_checksum_is_left_for_s3_to_refuse(stack: Stack) -> None:
    data = os.urandom(2000)
    mode = sdk_chunked.UNSIGNED_TRAILER
    encoded = sdk_chunked.encode(data, mode, "crc32").replace(
        checksum("crc32", data).encode(), checksum("crc32", b"other").encode()
    )
    status, _, body = put(
        stack.proxy, "bad-sum", encoded, sdk_chunked.headers(data, mode, "crc32", encoded)
    )
    assert status == 400
    assert ET.fromstring(body).findtext("Code") == "BadDigest"
    assert "/bucket/bad-sum" not in stack.s3.objects


def _malformed(data: bytes) -> dict[str, bytes]:
    good = sdk_chunked.encode(data, sdk_chunked.UNSIGNED_TRAILER, "crc32")
    first = good.index(b"\r\n")
    return {
        "bad-hex": b"zz" + good[first:],
        "missing-crlf": good.replace(b"\r\n0\r\n", b"XX0\r\n", 1),
        "beyond-decoded-length": b"%x\r\n" % (len(data) + 1) + data + b"!\r\n" + good[-40:],
        "no-final-chunk": good[: good.index(b"\r\n0\r\n") + 2],
        "no-trailer-end": good[:-2],
    }


@pytest.mark.parametrize("size", [3000, LARGE], ids=["small", "large"])
@pytest.mark.parametrize(
    "case", ["bad-hex", "missing-crlf", "beyond-decoded-length", "no-final-chunk", "no-trailer-end"]
)
def test_malformed_chunk_streams_are_400_and_never_stored(
    stack: Stack, case: str, size: int
) -> None:
    data = os.urandom(size)
    body = _malformed(data)[case]
    headers = sdk_chunked.headers(data, sdk_chunked.UNSIGNED_TRAILER, "crc32", body)
    incomplete_before = stack.s3.incomplete
    status, answer_headers, answer = put(stack.proxy, f"bad-{case}-{size}", body, headers)
    assert status == 400, answer
    assert answer_headers["x-throttle-proxy-error"] == "bad-request"
    assert ET.fromstring(answer).findtext("Code") == "IncompleteBody"
    assert f"/bucket/bad-{case}-{size}" not in stack.s3.objects
    if size > BUFFERED and case not in ("bad-hex",):
        # The proxy had started streaming: it cut the upload off before its final chunk.
        deadline = time.monotonic() + 5
        while stack.s3.incomplete == incomplete_before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stack.s3.incomplete > incomplete_before


def test_a_client_that_goes_away_mid_upload_leaves_nothing_stored(stack: Stack) -> None:
    data = os.urandom(LARGE)
    mode = sdk_chunked.UNSIGNED_TRAILER
    encoded = sdk_chunked.encode(data, mode, "crc32")
    headers = sdk_chunked.headers(data, mode, "crc32", encoded)
    incomplete_before, started_before = stack.s3.incomplete, stack.s3.started
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"PUT /bucket/gone HTTP/1.1\r\nHost: {HOST}\r\n{head}\r\n".encode())
        sock.sendall(encoded[: len(encoded) // 2])
        deadline = time.monotonic() + 5
        while stack.s3.started == started_before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stack.s3.started > started_before  # the upload is under way upstream
    # The proxy must cut that upload off, not finish it.
    deadline = time.monotonic() + 5
    while stack.s3.incomplete == incomplete_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stack.s3.incomplete > incomplete_before
    assert "/bucket/gone" not in stack.s3.objects
