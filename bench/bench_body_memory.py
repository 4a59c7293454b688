"""Peak RSS growth of the proxy while 1 GiB S3 bodies and a 15 MB DynamoDB body go through it.

Transfers, one after another: a plain streamed PUT; the same size as the client's own
aws-chunked upload (`STREAMING-UNSIGNED-PAYLOAD-TRAILER` with a CRC32 trailer, as the JS SDK
sends a stream body), which the proxy decodes and frames again with its own signatures and a
signed trailer; a GET; and a 15 MB DynamoDB-style POST (over max_buffered_body: spooled to disk
while hashed). The upstream is bench/fake_s3.py in its own process: it decodes the aws-chunked
uploads as they arrive, checks every chunk signature, the trailer signature and CRC32, the chunk
sizes and the decoded length against `x-amz-decoded-content-length`, checks the POST's payload
hash, and serves the GET generated on the fly. Bodies are hashed on each side and compared.
Growth must stay under 64 MiB for the 1 GiB transfers and 32 MiB for the DynamoDB body; the
aws-chunked upload's throughput is printed against the plain PUT's from the same run.

Run: .venv/bin/python bench/bench_body_memory.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

# Run as a script from anywhere: the repository root holds the `bench` and `proxy` packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fake_s3 import BLOCK_SIZE, pattern_block
from bench.harness import (
    PYTHON,
    ChildProcess,
    ProxySettings,
    free_port,
    proxy_command,
    proxy_env,
    write_proxy_config,
)

S3_HOST = "bench-bucket.s3.us-east-1.amazonaws.com"
DYNAMODB_HOST = "dynamodb.us-east-1.amazonaws.com"
KEY_PATH = "/big/object.bin"
LIMIT_MIB = 64.0
DYNAMODB_LIMIT_MIB = 32.0
DYNAMODB_BODY = 15 * 1000 * 1000
CHUNK = 64 * 1024
MIB = 1024 * 1024
_SAMPLE_EVERY = 0.01


def status_kib(pid: int, field: str) -> int:
    """One `VmRSS`/`VmHWM`-style field of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRss:
    """Polls a process's VmRSS from a thread; `peak_kib` is the highest value seen."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_kib = status_kib(pid, "VmRSS")
        self.samples = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(_SAMPLE_EVERY):
            self.peak_kib = max(self.peak_kib, status_kib(self._pid, "VmRSS"))
            self.samples += 1

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_kib = max(self.peak_kib, status_kib(self._pid, "VmRSS"))


@dataclass(frozen=True)
class Transfer:
    name: str
    seconds: float
    before_kib: int
    peak_kib: int
    samples: int
    checks: list[str]
    size: int
    limit_mib: float

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.before_kib) / 1024


async def _upload_body(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    block = pattern_block()
    sent = 0
    while sent < size:
        piece = block[: min(BLOCK_SIZE, size - sent)]
        digest.update(piece)
        sent += len(piece)
        yield piece


async def _put(session: aiohttp.ClientSession, url: str, size: int) -> tuple[str, dict[str, str]]:
    digest = hashlib.sha256()
    headers = {"Host": S3_HOST, "Content-Length": str(size)}
    async with session.put(url, data=_upload_body(size, digest), headers=headers) as answer:
        text = (await answer.read())[:300].decode(errors="replace")
        if answer.status != 200:
            raise RuntimeError(f"PUT answered {answer.status}: {text}")
        return digest.hexdigest(), dict(answer.headers)


async def _client_chunked_body(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """The client's own aws-chunked framing: 64 KiB chunks, then a CRC32 trailer."""
    block = pattern_block()
    sent, crc = 0, 0
    while sent < size:
        offset = sent % BLOCK_SIZE
        piece = block[offset : offset + min(CHUNK, size - sent)]
        digest.update(piece)
        crc = zlib.crc32(piece, crc)
        sent += len(piece)
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    checksum = base64.b64encode(crc.to_bytes(4, "big"))
    yield b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % checksum


def client_chunked_length(size: int) -> int:
    full, last = divmod(size, CHUNK)
    length = full * (len(f"{CHUNK:x}") + 4 + CHUNK)
    if last:
        length += len(f"{last:x}") + 4 + last
    return length + len("0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n")


async def _put_chunked(
    session: aiohttp.ClientSession, url: str, size: int
) -> tuple[str, dict[str, str]]:
    digest = hashlib.sha256()
    headers = {
        "Host": S3_HOST,
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": str(size),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "Content-Length": str(client_chunked_length(size)),
    }
    body = _client_chunked_body(size, digest)
    async with session.put(url, data=body, headers=headers) as answer:
        text = (await answer.read())[:300].decode(errors="replace")
        if answer.status != 200:
            raise RuntimeError(f"aws-chunked PUT answered {answer.status}: {text}")
        return digest.hexdigest(), dict(answer.headers)


async def _post_dynamodb(session: aiohttp.ClientSession, url: str) -> str:
    """A BatchWriteItem-shaped JSON body of 15 MB, sent in pieces as an SDK streams it."""
    item = b'{"PutRequest":{"Item":{"k":{"S":"%06d"},"v":{"B":"' + b"A" * 500_000 + b'"}}}},'
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        head = b'{"RequestItems":{"t":['
        digest.update(head)
        yield head
        sent = len(head)
        index = 0
        while sent < DYNAMODB_BODY - 10:
            piece = item.replace(b"%06d", b"%06d" % index)[: DYNAMODB_BODY - 10 - sent]
            digest.update(piece)
            sent += len(piece)
            index += 1
            yield piece
        tail = b"x" * (DYNAMODB_BODY - sent)
        digest.update(tail)
        yield tail

    headers = {
        "Host": DYNAMODB_HOST,
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(DYNAMODB_BODY),
    }
    async with session.post(url, data=body(), headers=headers) as answer:
        text = (await answer.read())[:300].decode(errors="replace")
        if answer.status != 200:
            raise RuntimeError(f"DynamoDB POST answered {answer.status}: {text}")
    return digest.hexdigest()


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    received = 0
    async with session.get(url, headers={"Host": S3_HOST}) as answer:
        if answer.status != 200:
            raise RuntimeError(f"GET answered {answer.status}")
        async for chunk in answer.content.iter_any():
            digest.update(chunk)
            received += len(chunk)
    return received, digest.hexdigest()


async def _fake_report(
    session: aiohttp.ClientSession, fake_port: int
) -> dict[str, dict[str, object]]:
    async with session.get(f"http://127.0.0.1:{fake_port}/_fake/last") as answer:
        report: dict[str, dict[str, object]] = json.loads(await answer.read())
        return report


async def _negative_control(session: aiohttp.ClientSession, fake_port: int) -> str:
    """A tampered aws-chunked upload sent straight to the fake must be refused: the checks
    below are only worth something if the fake can say no."""
    bogus = "0" * 64
    body = f"5;chunk-signature={bogus}\r\nhello\r\n0;chunk-signature={bogus}\r\n\r\n".encode()
    headers = {
        "Host": S3_HOST,
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/"
        f"aws4_request, SignedHeaders=host, Signature={bogus}",
        "x-amz-date": "20150830T123600Z",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": "5",
        "Content-Encoding": "aws-chunked",
    }
    url = f"http://127.0.0.1:{fake_port}{KEY_PATH}"
    async with session.put(url, data=body, headers=headers) as answer:
        reason = answer.headers.get("x-fake-s3-error", "")
        if answer.status != 400 or "signature mismatch" not in reason:
            raise RuntimeError(f"fake S3 accepted a tampered upload ({answer.status})")
        return reason


def _check(condition: bool, label: str, checks: list[str]) -> None:
    if not condition:
        raise RuntimeError(f"check failed: {label}")
    checks.append(label)


async def _transfers(proxy_pid: int, proxy_port: int, fake_port: int, size: int) -> list[Transfer]:
    url = f"http://127.0.0.1:{proxy_port}{KEY_PATH}"
    timeout = aiohttp.ClientTimeout(total=110)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        refused = await _negative_control(session, fake_port)
        print(f"negative control: fake S3 refused a tampered aws-chunked upload ({refused})")
        # Warm-up: a buffered PUT, a streamed PUT just over the buffer limit, and a GET, so
        # pools, imports and caches exist before the baseline is read.
        await _put(session, url, 1024)
        await _put(session, url, 9 * MIB)
        async with session.get(f"{url}?size=1024", headers={"Host": S3_HOST}) as small:
            await small.read()
        results: list[Transfer] = []

        before = status_kib(proxy_pid, "VmRSS")
        started = time.monotonic()
        with PeakRss(proxy_pid) as peak:
            sent_sha, headers = await _put(session, url, size)
        seconds = time.monotonic() - started
        fake = (await _fake_report(session, fake_port))["upload"]
        checks: list[str] = []
        _check(fake["aws_chunked"] is True, "sent aws-chunked (streamed, not buffered)", checks)
        _check(fake["error"] is None, "fake S3 accepted the aws-chunked framing", checks)
        _check(fake["signatures_verified"] is True, "every chunk signature verified", checks)
        _check(
            fake["decoded_length"] == fake["declared_length"] == size,
            f"decoded length {size} == x-amz-decoded-content-length",
            checks,
        )
        _check(fake["sha256"] == sent_sha, "decoded sha256 == sent sha256", checks)
        _check(headers.get("x-fake-s3-sha256") == sent_sha, "answer headers passed back", checks)
        checks.append(f"{fake['chunks']} chunks of {fake['chunk_size']} bytes")
        results.append(
            Transfer("PUT", seconds, before, peak.peak_kib, peak.samples, checks, size, LIMIT_MIB)
        )

        before = status_kib(proxy_pid, "VmRSS")
        started = time.monotonic()
        with PeakRss(proxy_pid) as peak:
            sent_sha, headers = await _put_chunked(session, url, size)
        seconds = time.monotonic() - started
        fake = (await _fake_report(session, fake_port))["upload"]
        checks = []
        _check(fake["aws_chunked"] is True, "re-framed aws-chunked (streamed)", checks)
        _check(fake["error"] is None, "fake S3 accepted the proxy's framing", checks)
        _check(fake["signatures_verified"] is True, "every chunk signature verified", checks)
        _check(fake["crc32_verified"] is True, "trailer signature and client's CRC32", checks)
        _check(fake["decoded_length"] == size, f"decoded length {size}", checks)
        _check(fake["sha256"] == sent_sha, "decoded sha256 == client's plain sha256", checks)
        results.append(
            Transfer(
                "chunkPUT", seconds, before, peak.peak_kib, peak.samples, checks, size, LIMIT_MIB
            )
        )

        before = status_kib(proxy_pid, "VmRSS")
        started = time.monotonic()
        with PeakRss(proxy_pid) as peak:
            received, received_sha = await _get(session, url)
        seconds = time.monotonic() - started
        fake = (await _fake_report(session, fake_port))["download"]
        checks = []
        _check(received == size, f"received {size} bytes", checks)
        _check(fake["sha256"] == received_sha, "received sha256 == sent sha256", checks)
        results.append(
            Transfer("GET", seconds, before, peak.peak_kib, peak.samples, checks, size, LIMIT_MIB)
        )

        before = status_kib(proxy_pid, "VmRSS")
        started = time.monotonic()
        with PeakRss(proxy_pid) as peak:
            sent_sha = await _post_dynamodb(session, f"http://127.0.0.1:{proxy_port}/")
        seconds = time.monotonic() - started
        fake = (await _fake_report(session, fake_port))["upload"]
        checks = []
        _check(fake["error"] is None, "payload hash of the spooled body verified", checks)
        _check(fake["sha256"] == sent_sha, "received sha256 == sent sha256", checks)
        results.append(
            Transfer(
                "ddb15MB",
                seconds,
                before,
                peak.peak_kib,
                peak.samples,
                checks,
                DYNAMODB_BODY,
                DYNAMODB_LIMIT_MIB,
            )
        )
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="body size (16-4096)")
    args = parser.parse_args()
    size = min(max(args.size_mib, 16), 4096) * MIB
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        fake_port = free_port()
        fake_command = [
            str(PYTHON),
            str(Path(__file__).with_name("fake_s3.py")),
            "--port",
            str(fake_port),
            "--object-size",
            str(size),
        ]
        config, proxy_port = write_proxy_config(
            workdir,
            ProxySettings("*.amazonaws.com", fake_port, max_buffered_body="8MiB"),
            "proxy-s3",
        )
        fake = ChildProcess(fake_command, ready_port=fake_port, log_path=workdir / "fake.log")
        proxy = ChildProcess(
            proxy_command(config),
            ready_port=proxy_port,
            env=proxy_env(workdir),
            log_path=workdir / "proxy.log",
        )
        with fake, proxy:
            results = asyncio.run(_transfers(proxy.pid, proxy_port, fake_port, size))
            hwm_mib = status_kib(proxy.pid, "VmHWM") / 1024
    print(f"{size // MIB} MiB S3 bodies and a 15 MB DynamoDB body through the proxy")
    print(
        f"{'transfer':<9}{'seconds':>9}{'MiB/s':>9}{'RSS before':>12}{'peak':>9}{'growth':>9}"
        f"{'limit':>8}{'samples':>9}"
    )
    over = False
    for t in results:
        over = over or t.growth_mib >= t.limit_mib
        print(
            f"{t.name:<9}{t.seconds:>9.1f}{t.size / MIB / t.seconds:>9.0f}"
            f"{t.before_kib / 1024:>10.1f}Mi{t.peak_kib / 1024:>7.1f}Mi{t.growth_mib:>7.1f}Mi"
            f"{t.limit_mib:>6.0f}Mi{t.samples:>9}"
        )
        for check in t.checks:
            print(f"    ok: {check}")
    plain, chunked = results[0], results[1]
    print(
        f"client aws-chunked PUT / plain streamed PUT throughput = "
        f"{plain.seconds / chunked.seconds:.2f}x (same run)"
    )
    print(f"proxy VmHWM (lifetime peak RSS) {hwm_mib:.1f} MiB")
    print("every transfer under its limit" if not over else "a transfer went OVER its limit")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
