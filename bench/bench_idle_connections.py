"""10,000 idle keep-alive connections: the hop's RSS growth, and a concurrent client's latency.

The hop (the proxy as in production: log level info, a never-binding rate-limit rule; and the
Go peer, aws-sigv4-proxy, for comparison) runs alone on core 0, the nginx upstream and the
clients on core 1. The benchmark opens N connections, sends one small signed GET on each and
reads the answer, so every connection is an idle keep-alive connection the hop must keep; then
wrk (-c8) measures another client's latency while they sit there, against the same client's
latency on the same hop before the idle connections were opened.

Run: python bench/bench_idle_connections.py [--connections 10000] [--seconds 5] [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_body_memory import status_kib
from bench.bench_proxy_throughput import (
    AWS_HOST,
    GET_PATH,
    HOP_CPU,
    SIDE_CPU,
    Hop,
    _peer_hop,
    _proxy_hop,
)
from bench.harness import free_port
from bench.nginx import nginx_process, upstream_config
from bench.peer import peer_binary
from bench.wrk import WrkResult, run_wrk

RSS_LIMIT_MIB = 64.0
P99_LIMIT_MS = 20.0
_OPEN_AT_ONCE = 200  # connections being set up concurrently
_REQUEST = f"GET {GET_PATH} HTTP/1.1\r\nHost: {AWS_HOST}\r\n\r\n".encode()


@dataclass(frozen=True)
class IdleResult:
    opened: int
    failed: int
    rss_before_mib: float
    rss_after_mib: float
    alone: WrkResult
    beside_idle: WrkResult

    @property
    def growth_mib(self) -> float:
        return self.rss_after_mib - self.rss_before_mib


def _raise_fd_limit(needed: int) -> int:
    """Lift the soft fd limit towards the hard one (the children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _one(port: int, kept: list[asyncio.StreamWriter]) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await asyncio.wait_for(reader.readexactly(length), 30)
        kept.append(writer)
        return head.startswith(b"HTTP/1.1 200")
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False


async def _open_idle(port: int, count: int, kept: list[asyncio.StreamWriter]) -> int:
    """Open `count` connections, one request each; returns how many failed."""
    gate = asyncio.Semaphore(_OPEN_AT_ONCE)

    async def gated() -> bool:
        async with gate:
            return await _one(port, kept)

    results = await asyncio.gather(*(gated() for _ in range(count)))
    return sum(1 for ok in results if not ok)


def _concurrent_client(port: int, seconds: float) -> WrkResult:
    url = f"http://127.0.0.1:{port}{GET_PATH}"
    return run_wrk(url, host=AWS_HOST, seconds=seconds, connections=8, cpu=SIDE_CPU)


async def _measure(hop: Hop, count: int, seconds: float) -> IdleResult:
    child, port = hop.start()
    with child:
        _concurrent_client(port, 1)  # warm-up
        alone = _concurrent_client(port, seconds)
        rss_before = status_kib(child.pid, "VmRSS") / 1024
        kept: list[asyncio.StreamWriter] = []
        try:
            failed = await _open_idle(port, count, kept)
            await asyncio.sleep(1.0)
            rss_after = status_kib(child.pid, "VmRSS") / 1024
            # wrk is a child process: the event loop need not run while it measures.
            beside = await asyncio.to_thread(_concurrent_client, port, seconds)
        finally:
            for writer in kept:
                writer.close()
        return IdleResult(len(kept), failed, rss_before, rss_after, alone, beside)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run (1-20)")
    parser.add_argument("--no-peer", action="store_true", help="skip aws-sigv4-proxy")
    args = parser.parse_args()
    count = min(max(args.connections, 1), 50_000)
    seconds = min(max(args.seconds, 1.0), 20.0)
    limit = _raise_fd_limit(count * 2 + 1024)
    if limit < count + 512:
        print(f"fd limit {limit} is too low for {count} connections", file=sys.stderr)
        return 2
    binary = None if args.no_peer else peer_binary()
    # The idle clients live in this process: keep it on the side core, off the hop's.
    os.sched_setaffinity(0, {SIDE_CPU})
    rows: list[tuple[str, IdleResult]] = []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        upstream_port = free_port()
        upstream = upstream_config(workdir, upstream_port, SIDE_CPU)
        # The connection cap (default 4096) raised above the idle count: what is measured is
        # the cost of holding them, not the refusal past the cap.
        hops = [_proxy_hop(workdir, upstream_port, "info", False, max_connections=count + 1024)]
        if binary is not None:
            hops.append(_peer_hop(binary, workdir, upstream_port))
        with nginx_process(upstream, upstream_port, SIDE_CPU):
            for hop in hops:
                rows.append((hop.name, asyncio.run(_measure(hop, count, seconds))))
    print(
        f"{count} idle keep-alive connections (one GET each, then idle); concurrent client: "
        f"wrk -t1 -c8 -d{seconds:.0f}s; hop on cpu {HOP_CPU}, nginx + clients on cpu {SIDE_CPU}"
    )
    print(
        f"{'hop':<32}{'opened':>7}{'failed':>7}{'RSS MiB':>9}{'+idle':>8}{'growth':>8}"
        f"{'p99 alone':>10}{'p99 idle':>9}{'ratio':>7}"
    )
    ok = True
    for name, r in rows:
        ratio = r.beside_idle.p99 / r.alone.p99 if r.alone.p99 else 0.0
        print(
            f"{name:<32}{r.opened:>7}{r.failed:>7}{r.rss_before_mib:>9.1f}{r.rss_after_mib:>8.1f}"
            f"{r.growth_mib:>8.1f}{r.alone.p99 * 1e3:>9.2f}ms{r.beside_idle.p99 * 1e3:>7.2f}ms"
            f"{ratio:>6.2f}x"
        )
        if name.startswith("throttle-proxy"):
            grew = "under" if r.growth_mib < RSS_LIMIT_MIB else "OVER"
            slow = "under" if r.beside_idle.p99 * 1e3 < P99_LIMIT_MS else "OVER"
            print(
                f"  {name}: RSS growth {r.growth_mib / RSS_LIMIT_MIB:.2f} of the "
                f"{RSS_LIMIT_MIB:.0f} MiB limit ({grew}); concurrent p99 "
                f"{r.beside_idle.p99 * 1e3 / P99_LIMIT_MS:.2f} of {P99_LIMIT_MS:.0f} ms ({slow})"
            )
            ok = ok and r.failed == 0 and grew == "under" and slow == "under"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
