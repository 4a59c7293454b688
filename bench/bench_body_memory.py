"""Peak RSS growth of the proxy while a 1 GiB S3 PUT and a 1 GiB GET stream through it.

The upstream is bench/fake_s3.py in its own process: it decodes the aws-chunked upload as it
arrives, checks every chunk signature, the chunk sizes and the decoded length against
`x-amz-decoded-content-length`, and serves the GET generated on the fly. The proxy runs with
`max_buffered_body: 8MiB`, so the upload must stream with chunked signing. Both bodies are
hashed on each side and compared. Growth must stay under 64 MiB.

Run: .venv/bin/python bench/bench_body_memory.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import threading
import time
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
KEY_PATH = "/big/object.bin"
LIMIT_MIB = 64.0
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
        results.append(Transfer("PUT", seconds, before, peak.peak_kib, peak.samples, checks))

        before = status_kib(proxy_pid, "VmRSS")
        started = time.monotonic()
        with PeakRss(proxy_pid) as peak:
            received, received_sha = await _get(session, url)
        seconds = time.monotonic() - started
        fake = (await _fake_report(session, fake_port))["download"]
        checks = []
        _check(received == size, f"received {size} bytes", checks)
        _check(fake["sha256"] == received_sha, "received sha256 == sent sha256", checks)
        results.append(Transfer("GET", seconds, before, peak.peak_kib, peak.samples, checks))
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
            workdir, ProxySettings(S3_HOST, fake_port, max_buffered_body="8MiB"), "proxy-s3"
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
    print(f"{size // MIB} MiB bodies through the proxy (max_buffered_body 8MiB, aws-chunked PUT)")
    print(
        f"{'transfer':<9}{'seconds':>9}{'MiB/s':>9}{'RSS before':>12}{'peak':>9}{'growth':>9}"
        f"{'samples':>9}"
    )
    worst = 0.0
    for t in results:
        worst = max(worst, t.growth_mib)
        print(
            f"{t.name:<9}{t.seconds:>9.1f}{size / MIB / t.seconds:>9.0f}"
            f"{t.before_kib / 1024:>10.1f}Mi{t.peak_kib / 1024:>7.1f}Mi{t.growth_mib:>7.1f}Mi"
            f"{t.samples:>9}"
        )
        for check in t.checks:
            print(f"    ok: {check}")
    print(f"proxy VmHWM (lifetime peak RSS) {hwm_mib:.1f} MiB")
    verdict = "under" if worst < LIMIT_MIB else "OVER"
    print(f"worst growth {worst:.1f} MiB: {verdict} the {LIMIT_MIB:.0f} MiB limit")
    return 0 if worst < LIMIT_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
