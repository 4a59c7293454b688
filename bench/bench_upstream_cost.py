"""CPU cost per request of the pooled upstream client alone (proxy/upstream/http1.py), issue 10.

The whole-proxy figure (bench_request_cost.py) moves by a few percent when the upstream client
changes, which the noise of a shared machine can hide. This drives `Http1Pool.request` +
`release` alone, in one process under uvloop, against an asyncio Protocol upstream in the same
process that answers a DescribeInstances-shaped 200 at once: 8 concurrent keep-alive requests
with signed-sized headers, a deadline and the client's preload, as UpstreamClient.send makes
them. Figure = process CPU time / requests, lowest of the rounds (it includes the upstream's
own recv/send, the same in both trees). `--baseline TREE` runs the same in another checkout
(say a worktree at the commit before a change), rounds interleaved, and prints the ratio.

    .venv/bin/python bench/bench_upstream_cost.py --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_BODY = b'<?xml version="1.0"?><DescribeInstancesResponse><requestId>r</requestId></x>'
_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nx-amzn-RequestId: fake-1\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)
_HEADERS = [
    ("Host", "ec2.us-east-1.amazonaws.com"),
    ("User-Agent", "bench"),
    ("Accept", "*/*"),
    ("X-Amz-Date", "20261201T000000Z"),
    ("X-Amz-Content-Sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/ec2/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "a" * 64,
    ),
]
_TARGET = "/?Action=DescribeInstances&Version=2016-11-15"
_CONCURRENCY = 8


# Its own copy of bench_request_cost's upstream on purpose: the --child run imports `proxy`
# from the measured tree's PYTHONPATH, so this script must not put its checkout on sys.path.
class _Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        count = self.pending.count(b"\r\n\r\n")
        if count:
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(_ANSWER * count)  # type: ignore[attr-defined]


async def _rounds(requests: int, rounds: int) -> list[float]:
    from proxy.upstream.http1 import Http1Pool, Origin  # the tree on PYTHONPATH

    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", 0)
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    pool = Http1Pool(
        size=64, connect_timeout=5.0, read_timeout=60.0, ssl_context=ssl.create_default_context()
    )

    async def client(count: int) -> None:
        for _ in range(count):
            answer = await pool.request(
                origin, "GET", _TARGET, _HEADERS, None, loop.time() + 60, preload=65536
            )
            assert answer.preloaded == _BODY
            answer.release()

    await asyncio.gather(*(client(200) for _ in range(_CONCURRENCY)))  # warm-up
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        await asyncio.gather(*(client(requests // _CONCURRENCY) for _ in range(_CONCURRENCY)))
        figures.append((time.process_time() - started) / requests * 1e6)
    await pool.close()
    server.close()
    return figures


def _child(requests: int, rounds: int) -> None:
    import uvloop

    figures = uvloop.run(_rounds(requests, rounds))
    print(" ".join(f"{figure:.2f}" for figure in figures))


def _measure(tree: Path, requests: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    script = str(REPO / "bench" / "bench_upstream_cost.py")
    out = subprocess.run(
        [sys.executable, script, "--child", "--requests", str(requests)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    ).stdout
    return min(float(figure) for figure in out.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.requests, 3)
        return 0
    trees = {"this tree": REPO}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, tree in trees.items():  # interleaved: both see the same neighbours
            figure = _measure(tree, args.requests)
            best[name] = min(best.get(name, figure), figure)
    print(
        f"Http1Pool.request + release, uvloop, {args.requests} requests x 3 x {args.repeat} "
        f"rounds, {_CONCURRENCY} concurrent, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'tree':<12}{'us CPU/request':>16}")
    for name, figure in best.items():
        print(f"{name:<12}{figure:>16.1f}")
    if "baseline" in best:
        print(f"this tree / baseline CPU per request: {best['this tree'] / best['baseline']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
