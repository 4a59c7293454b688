"""CPU cost per request of a small signed GET through a real proxy process (issue 10).

Throughput on a shared, loaded machine measures the neighbours; the proxy's own CPU time per
request served does not (much). This starts `python -m proxy run` at log level info, metrics
on, with a rate-limit rule matching every request that never binds (rate 1,000,000), against a
raw loopback upstream in this process, drives it with a few keep-alive clients, and prints the
proxy process's user+system CPU (from /proc) per request. `--baseline TREE` measures another
checkout (say a worktree at the commit before a change) the same way, interleaved, in the same
run, and prints the ratio. Each figure is the lowest of `--repeat` rounds: noise from other
processes only ever adds CPU time (cache misses, migrations), it never takes any away.

    .venv/bin/python bench/bench_request_cost.py --baseline /tmp/perf-before
    .venv/bin/python bench/bench_request_cost.py --profile 6      # py-spy summary of the tree
    .venv/bin/python bench/bench_request_cost.py --callgrind --baseline /tmp/perf-before

`--callgrind` runs each proxy under valgrind's callgrind and counts the user-space instructions
per request instead (after a warm-up, counters zeroed, then `--requests` requests, then a
dump): the same count for the same code whatever else the machine is doing, so a change of a
few percent shows on a busy machine, where CPU time cannot tell it from noise. It leaves out
what the kernel does for the proxy (the socket calls), so it measures the proxy's own code.
About 50x slower than the real thing: use a few thousand requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.callgrind import callgrind_prefix, instructions_between
from bench.harness import (
    REPO,
    ChildProcess,
    free_port,
    proxy_command,
    proxy_env,
    tree_cpu_seconds,
)
from bench.pyspy import profile_process

T = TypeVar("T")
AWS_HOST = "ec2.us-east-1.amazonaws.com"
_REQUEST = (
    f"GET /?Action=DescribeInstances&Version=2016-11-15 HTTP/1.1\r\n"
    f"Host: {AWS_HOST}\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
).encode()
_BODY = b'<?xml version="1.0"?><DescribeInstancesResponse><requestId>r</requestId></x>'
_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nx-amzn-RequestId: fake-1\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class _Upstream(asyncio.Protocol):
    """Answers every request head at once (the bench sends no bodies)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        count = self.pending.count(b"\r\n\r\n")
        if count:
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(_ANSWER * count)


def _config(workdir: Path, name: str, upstream_port: int) -> tuple[Path, int]:
    port, admin = free_port(), free_port()
    text = (
        f"listen: 127.0.0.1:{port}\n"
        f"admin_listen: 127.0.0.1:{admin}\n"
        "region: us-east-1\n"
        "log_level: info\n"
        "routes:\n"
        f'  - host: "{AWS_HOST}"\n'
        f'    upstream: "http://127.0.0.1:{upstream_port}"\n'
        "include_default_limits: false\n"
        "limits:\n"
        "  - name: every-request\n"
        "    service: ec2\n"
        "    rate: 1000000\n"
        "    burst: 1000000\n"
    )
    path = workdir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, port


async def _client(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(_REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"proxy answered {head[:200]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
    finally:
        writer.close()


async def _drive(port: int, requests: int, connections: int) -> None:
    each = requests // connections
    await asyncio.gather(*(_client(port, each) for _ in range(connections)))


class _Loop:
    """One event loop in a thread for the upstream and the clients (the proxy is separate)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _measure(child: ChildProcess, port: int, loop: _Loop, requests: int, connections: int) -> float:
    """µs of the proxy's CPU per request over `requests` requests."""
    before = tree_cpu_seconds(child.pid)
    loop.run(_drive(port, requests, connections))
    after = tree_cpu_seconds(child.pid)
    return (after - before) / requests * 1e6


def _instructions(
    child: ChildProcess, port: int, loop: _Loop, requests: int, connections: int, out: Path
) -> float:
    """User-space instructions of the proxy per request over `requests` requests (callgrind)."""
    total = instructions_between(
        child.pid, out, lambda: loop.run(_drive(port, requests, connections))
    )
    return total / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds (this tree)")
    parser.add_argument("--profile-out", type=Path, default=Path("/tmp/request-cost.pyspy"))
    parser.add_argument(
        "--callgrind", action="store_true", help="count instructions per request under callgrind"
    )
    args = parser.parse_args()
    if args.callgrind and args.profile:
        parser.error("--callgrind and --profile measure different processes: pick one")
    warm_up = 300 if args.callgrind else 2000

    trees = {"this tree": REPO}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    loop = _Loop()
    server = loop.run(loop.loop.create_server(_Upstream, "127.0.0.1", 0))
    upstream_port = int(server.sockets[0].getsockname()[1])
    best: dict[str, float] = {}
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="request-cost-") as tmp:
        workdir = Path(tmp)
        children: dict[str, tuple[ChildProcess, int]] = {}
        try:
            for name, tree in trees.items():
                slug = name.replace(" ", "-")
                config, port = _config(workdir, slug, upstream_port)
                env = proxy_env(workdir)
                env["PYTHONPATH"] = str(tree)
                env["THROTTLE_PROXY_LOOP"] = args.loop
                command = proxy_command(config)
                if args.callgrind:
                    command = [*callgrind_prefix(workdir / f"cg-{slug}.out"), *command]
                child = ChildProcess(
                    command,
                    ready_port=port,
                    env=env,
                    log_path=workdir / f"{slug}.log",
                    start_timeout=300.0 if args.callgrind else 15.0,
                    cwd=workdir,  # not a checkout: PYTHONPATH alone picks the tree
                ).start()
                children[name] = (child, port)
                loop.run(_drive(port, warm_up, args.connections))  # warm-up: imports, caches
            for _ in range(args.repeat):
                for name, (child, port) in children.items():
                    if args.callgrind:
                        out = workdir / f"cg-{name.replace(' ', '-')}.out"  # as started
                        cost = _instructions(
                            child, port, loop, args.requests, args.connections, out
                        )
                    else:
                        cost = _measure(child, port, loop, args.requests, args.connections)
                    best[name] = min(best.get(name, cost), cost)
                    rounds[name].append(cost)
            print(
                f"small signed GET, log=info, metrics on, limiter rule rate 1e6, loop={args.loop}, "
                f"{args.requests} requests x {args.repeat} rounds over {args.connections} "
                f"keep-alive connections, load average {os.getloadavg()[0]:.1f}"
            )
            unit = "instr/request" if args.callgrind else "us CPU/request"
            print(f"{'tree':<12} {unit:>15} {'req/CPU-s' if not args.callgrind else '':>10}")
            for name, cost in best.items():
                rate = "" if args.callgrind else f"{1e6 / cost:10,.0f}"
                print(f"{name:<12} {cost:15,.0f} {rate:>10}")
            if "baseline" in best:
                mine, theirs = rounds["this tree"], rounds["baseline"]
                paired = sorted(a / b for a, b in zip(mine, theirs, strict=True))
                measure = "instructions" if args.callgrind else "CPU"
                print(
                    f"this tree / baseline {measure} per request: "
                    f"{best['this tree'] / best['baseline']:.3f}"
                    f" (lowest of each), {paired[len(paired) // 2]:.3f} (median of the rounds)"
                )
            if args.profile:
                child, port = children["this tree"]
                summary = profile_process(
                    child.pid,
                    args.profile,
                    args.profile_out,
                    lambda: _timed_load(loop, port, args.profile, args.connections),
                )
                print(summary)
        finally:
            for child, _ in children.values():
                child.stop()
            server.close()
            loop.stop()
    return 0


def _timed_load(loop: _Loop, port: int, seconds: float, connections: int) -> None:
    """Keep the proxy busy for about `seconds` (py-spy records meanwhile)."""

    async def until() -> None:
        end = asyncio.get_running_loop().time() + seconds + 0.5
        while asyncio.get_running_loop().time() < end:
            await _drive(port, 1000 * connections, connections)

    loop.run(until())


if __name__ == "__main__":
    raise SystemExit(main())
