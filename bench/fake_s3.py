"""A fake S3 for the body-memory benchmark, run as its own process.

PUT: a small body the proxy buffered must match its signed `x-amz-content-sha256`. A large one
must come aws-chunked (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`): the fake decodes it as it streams
in (never holding it), checks every chunk signature in the chain, that every chunk but the last
has the same size, and that the decoded length matches `x-amz-decoded-content-length`. It
hashes what it decoded and answers 200 with what it saw in `x-fake-s3-*` headers, or 400 with
an S3-style error naming the problem.
With `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` (a client's own aws-chunked upload re-framed
by the proxy) the zero-length chunk is followed by an `x-amz-checksum-crc32` trailer and its
signature: both are checked, the CRC32 against the decoded bytes.
POST (a DynamoDB-style JSON body): hashed and compared with its signed `x-amz-content-sha256`.
GET: streams `--object-size` bytes (or `?size=N`) generated on the fly: a fixed pseudo-random
block repeated.
`GET /_fake/last` (asked directly, not through the proxy) reports the last PUT and GET as JSON.

Run: .venv/bin/python bench/fake_s3.py --port N [--object-size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import random
import re
import zlib
from dataclasses import asdict, dataclass

from aiohttp import StreamReader, web

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS's documented example key
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
BLOCK_SIZE = 1024 * 1024
_MAX_CHUNK_HEADER = 4096
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<scope>[^,]+),\s*"
    r"SignedHeaders=[^,]+,\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_CHUNK_HEADER = re.compile(rb"^([0-9a-fA-F]+);chunk-signature=([0-9a-f]{64})\r\n$")


def pattern_block(seed: int = 2024) -> bytes:
    """The block GET bodies repeat; the client rebuilds it to hash what it sends."""
    return random.Random(seed).randbytes(BLOCK_SIZE)


class UploadRejected(Exception):
    """The aws-chunked body broke a rule; the message says which."""


@dataclass
class UploadReport:
    aws_chunked: bool = False
    decoded_length: int = 0
    declared_length: int = 0
    chunks: int = 0
    chunk_size: int = 0
    sha256: str = ""
    signatures_verified: bool = False
    crc32_verified: bool = False
    error: str | None = None


@dataclass
class DownloadReport:
    bytes_sent: int = 0
    sha256: str = ""


def _signing_key(scope: str) -> bytes:
    date, region, service, terminator = scope.split("/")
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class ChunkChain:
    """The expected signature of each chunk, chained from the request's seed signature."""

    def __init__(self, authorization: str, amz_date: str) -> None:
        match = _AUTHORIZATION.match(authorization)
        if match is None:
            raise UploadRejected(f"unreadable Authorization header {authorization[:80]!r}")
        self._scope = match.group("scope")
        self._key = _signing_key(self._scope)
        self._previous = match.group("signature")
        self._amz_date = amz_date

    def check(self, data: bytes, claimed: str) -> None:
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self._amz_date,
                self._scope,
                self._previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            )
        )
        expected = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, claimed):
            raise UploadRejected(f"chunk signature mismatch after {len(data)} bytes")
        self._previous = expected

    def check_trailer(self, canonical: str, claimed: str) -> None:
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self._amz_date,
                self._scope,
                self._previous,
                hashlib.sha256(canonical.encode()).hexdigest(),
            )
        )
        expected = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, claimed):
            raise UploadRejected("trailer signature mismatch")


async def decode_aws_chunked(
    source: StreamReader, chain: ChunkChain, report: UploadReport, trailer: bool = False
) -> None:
    """Read `hex;chunk-signature=…\\r\\n<data>\\r\\n` frames up to the zero-length one."""
    digest = hashlib.sha256()
    crc = 0
    short_seen = False
    while True:
        header = await source.readuntil(b"\r\n")
        if len(header) > _MAX_CHUNK_HEADER or not header.endswith(b"\r\n"):
            raise UploadRejected("chunk header missing or too long")
        match = _CHUNK_HEADER.match(header)
        if match is None:
            raise UploadRejected(f"bad chunk header {header[:80]!r}")
        size = int(match.group(1), 16)
        data = await source.readexactly(size) if size else b""
        if trailer and size == 0:
            chain.check(data, match.group(2).decode())
            await _check_trailer(source, chain, crc, report)
            break
        if await source.readexactly(2) != b"\r\n":
            raise UploadRejected("chunk data not followed by CRLF")
        chain.check(data, match.group(2).decode())
        if size == 0:
            break
        # Every data chunk but the last has the first chunk's size.
        if short_seen:
            raise UploadRejected(f"chunk {report.chunks} follows a short chunk")
        if report.chunk_size and size > report.chunk_size:
            raise UploadRejected(f"chunk {report.chunks} is larger than the first ({size})")
        short_seen = bool(report.chunk_size) and size < report.chunk_size
        report.chunk_size = report.chunk_size or size
        report.chunks += 1
        report.decoded_length += size
        digest.update(data)
        crc = zlib.crc32(data, crc)
    if not source.at_eof() and await source.read(1):
        raise UploadRejected("bytes after the final chunk")
    report.sha256 = digest.hexdigest()
    report.signatures_verified = True


async def _check_trailer(
    source: StreamReader, chain: ChunkChain, crc: int, report: UploadReport
) -> None:
    """`x-amz-checksum-crc32:<b64>\\r\\n x-amz-trailer-signature:<sig>\\r\\n \\r\\n`."""
    checksum_line = (await source.readuntil(b"\r\n"))[:-2].decode()
    signature_line = (await source.readuntil(b"\r\n"))[:-2].decode()
    if await source.readexactly(2) != b"\r\n":
        raise UploadRejected("trailer not ended by an empty line")
    name, _, value = checksum_line.partition(":")
    label, _, claimed = signature_line.partition(":")
    if name != "x-amz-checksum-crc32" or label != "x-amz-trailer-signature":
        raise UploadRejected(f"unexpected trailer {checksum_line!r} {label!r}")
    chain.check_trailer(f"{name}:{value}\n", claimed)
    if base64.b64decode(value) != crc.to_bytes(4, "big"):
        raise UploadRejected("x-amz-checksum-crc32 does not match the decoded bytes")
    report.crc32_verified = True


class FakeS3:
    """The aiohttp handlers and the reports of the last upload and download."""

    def __init__(self, object_size: int) -> None:
        self.object_size = object_size
        self.block = pattern_block()
        self.last_upload = UploadReport()
        self.last_download = DownloadReport()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/_fake/last":
            report = {"upload": asdict(self.last_upload), "download": asdict(self.last_download)}
            return web.json_response(report)
        if request.method == "PUT":
            return await self._put(request)
        if request.method == "GET":
            return await self._get(request)
        if request.method == "POST":
            posted = UploadReport()
            self.last_upload = posted
            try:
                await _check_plain_body(
                    request.content, request.headers.get("x-amz-content-sha256", ""), posted
                )
            except UploadRejected as rejected:
                posted.error = str(rejected)
                return _error(400, "InvalidSignatureException", str(rejected))
            return web.json_response({}, content_type="application/x-amz-json-1.0")
        return _error(405, "MethodNotAllowed", f"{request.method} is not faked")

    async def _put(self, request: web.BaseRequest) -> web.StreamResponse:
        report = UploadReport()
        self.last_upload = report
        headers = request.headers
        payload_hash = headers.get("x-amz-content-sha256", "")
        try:
            if payload_hash not in (STREAMING, STREAMING_TRAILER):
                await _check_plain_body(request.content, payload_hash, report)
                return _accepted(report)
            report.aws_chunked = True
            if "aws-chunked" not in headers.get("Content-Encoding", ""):
                raise UploadRejected("Content-Encoding does not name aws-chunked")
            declared = headers.get("x-amz-decoded-content-length", "")
            if not declared.isdigit():
                raise UploadRejected("x-amz-decoded-content-length missing")
            report.declared_length = int(declared)
            chain = ChunkChain(headers.get("Authorization", ""), headers.get("x-amz-date", ""))
            trailer = payload_hash == STREAMING_TRAILER
            await decode_aws_chunked(request.content, chain, report, trailer)
            if report.decoded_length != report.declared_length:
                raise UploadRejected(
                    f"decoded {report.decoded_length} bytes, header says {report.declared_length}"
                )
        except UploadRejected as rejected:
            report.error = str(rejected)
            return _error(400, "IncompleteBody", str(rejected))
        return _accepted(report)

    async def _get(self, request: web.BaseRequest) -> web.StreamResponse:
        report = DownloadReport()
        self.last_download = report
        asked = request.query.get("size", "")
        size = int(asked) if asked.isdigit() else self.object_size
        response = web.StreamResponse(status=200)
        response.content_length = size
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        digest = hashlib.sha256()
        block = memoryview(self.block)
        while report.bytes_sent < size:
            piece = block[: min(BLOCK_SIZE, size - report.bytes_sent)]
            digest.update(piece)
            await response.write(piece)
            report.bytes_sent += len(piece)
        await response.write_eof()
        report.sha256 = digest.hexdigest()
        return response


async def _check_plain_body(source: StreamReader, payload_hash: str, report: UploadReport) -> None:
    """A small upload the proxy buffered and signed with its SHA-256: hash and compare."""
    digest = hashlib.sha256()
    async for piece in source.iter_any():
        digest.update(piece)
        report.decoded_length += len(piece)
    report.declared_length = report.decoded_length
    report.sha256 = digest.hexdigest()
    if report.sha256 != payload_hash:
        raise UploadRejected(f"body sha256 {report.sha256} != x-amz-content-sha256")


def _accepted(report: UploadReport) -> web.Response:
    response = web.Response(status=200)
    response.headers["ETag"] = f'"{report.sha256[:32]}"'
    response.headers["x-fake-s3-aws-chunked"] = str(report.aws_chunked).lower()
    response.headers["x-fake-s3-decoded-length"] = str(report.decoded_length)
    response.headers["x-fake-s3-chunks"] = str(report.chunks)
    response.headers["x-fake-s3-sha256"] = report.sha256
    return response


def _error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        headers={"Content-Type": "application/xml", "x-fake-s3-error": message[:200]},
    )


async def _serve(port: int, object_size: int) -> None:
    fake = FakeS3(object_size)
    server = web.Server(fake.handle, auto_decompress=False)
    runner = web.ServerRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake S3 for bench_body_memory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--object-size", type=int, default=1024**3)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.object_size))


if __name__ == "__main__":
    main()
