"""Signed requests through the proxy vs the Go peer (aws-sigv4-proxy) vs an nginx `proxy_pass`
hop, each pinned to one core, in the same run.

Layout (2 cores): the fast nginx upstream and wrk share core 1; the hop under test runs alone
on core 0, one at a time. wrk: 1 thread, 32 keep-alive connections, `Host:
ec2.us-east-1.amazonaws.com`, two workloads: a small signed GET
(`/?Action=DescribeInstances&Version=2016-11-15`) and a 64 KiB POST (buffered, hashed and
signed by both signers). The proxy runs as in production: log level info (one JSON line per
request, to a file), metrics on, and a rate-limit rule matching every request that never binds
(rate 1,000,000), so the limiter's path is paid. The hop's own CPU use is read from /proc, so
a run disturbed by other work on the machine shows up as a hop that did not get its core.

Run: python bench/bench_proxy_throughput.py [--seconds 10] [--repeat 1] [--warning]
     [--uvloop] [--no-peer] [--only get|post] [--profile SECONDS [--profile-out FILE]]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script from anywhere: the repository root holds the `bench` and `proxy` packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.harness import (
    ChildProcess,
    ProxySettings,
    free_port,
    pinned,
    proxy_command,
    proxy_env,
    tree_cpu_seconds,
    uvloop_available,
    write_proxy_config,
)
from bench.nginx import hop_config, nginx_process, upstream_config
from bench.peer import peer_binary, peer_process
from bench.pyspy import profile_process
from bench.wrk import WrkResult, post_script, run_wrk

AWS_HOST = "ec2.us-east-1.amazonaws.com"
GET_PATH = "/?Action=DescribeInstances&Version=2016-11-15"
POST_SIZE = 64 * 1024
HOP_CPU = 0  # the hop under test, alone
SIDE_CPU = 1  # upstream nginx and wrk
WARMUP_SECONDS = 1.0
ISSUE_GOAL_VS_PEER = 2.0
NGINX_HOP = "nginx proxy_pass hop"
PEER = "aws-sigv4-proxy (Go)"


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    script: Path | None  # wrk Lua script (the POST body), None for a plain GET

    def check(self, port: int) -> None:
        """One request by hand first: a 200 with the upstream's body, or the run is void."""
        body = b"a" * POST_SIZE if self.script is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{self.path}",
            data=body,
            headers={"Host": AWS_HOST, "Content-Type": "application/octet-stream"},
            method="POST" if body is not None else "GET",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            payload = answer.read()
            if answer.status != 200 or b"DescribeInstancesResponse" not in payload:
                raise RuntimeError(f"port {port} answered {answer.status}: {payload[:200]!r}")

    def run(self, port: int, seconds: float) -> WrkResult:
        url = f"http://127.0.0.1:{port}{self.path}"
        return run_wrk(url, host=AWS_HOST, seconds=seconds, cpu=SIDE_CPU, script=self.script)


@dataclass(frozen=True)
class Measurement:
    """One wrk run against one hop, with the CPU seconds the hop used during it."""

    result: WrkResult
    wall_seconds: float
    hop_cpu_seconds: float

    @property
    def cpu_share(self) -> float:
        return self.hop_cpu_seconds / self.wall_seconds

    @property
    def requests_per_cpu_second(self) -> float:
        return self.result.requests / self.hop_cpu_seconds if self.hop_cpu_seconds else 0.0


@dataclass(frozen=True)
class Hop:
    """A hop to measure: a name and how to start it (a child process and its port)."""

    name: str
    start: Callable[[], tuple[ChildProcess, int]]


GET_WORKLOAD = Workload("small signed GET", GET_PATH, None)


def _measure(hop: Hop, seconds: float, workload: Workload = GET_WORKLOAD) -> Measurement:
    child, port = hop.start()
    with child:
        workload.check(port)
        workload.run(port, WARMUP_SECONDS)
        cpu_before, started = tree_cpu_seconds(child.pid), time.monotonic()
        result = workload.run(port, seconds)
        wall = time.monotonic() - started
        return Measurement(result, wall, tree_cpu_seconds(child.pid) - cpu_before)


def _proxy_hop(
    workdir: Path,
    upstream_port: int,
    log_level: str,
    use_uvloop: bool,
    max_connections: int | None = None,
) -> Hop:
    name = f"throttle-proxy log={log_level}{' uvloop' if use_uvloop else ''}"
    file_name = f"proxy-{log_level}{'-uvloop' if use_uvloop else ''}"

    def start() -> tuple[ChildProcess, int]:
        settings = ProxySettings(
            AWS_HOST,
            upstream_port,
            log_level=log_level,
            limit_every_request="ec2",
            max_connections=max_connections,
        )
        config, port = write_proxy_config(workdir, settings, file_name)
        child = ChildProcess(
            pinned(proxy_command(config, use_uvloop=use_uvloop), HOP_CPU),
            ready_port=port,
            env=proxy_env(workdir),
            log_path=workdir / f"{file_name}.log",
        )
        return child, port

    return Hop(name, start)


def _peer_hop(binary: Path, workdir: Path, upstream_port: int) -> Hop:
    def start() -> tuple[ChildProcess, int]:
        return peer_process(
            binary,
            workdir,
            service="ec2",
            region="us-east-1",
            sign_host=AWS_HOST,
            upstream_port=upstream_port,
            cpu=HOP_CPU,
        )

    return Hop(PEER, start)


def _nginx_hop(workdir: Path, upstream_port: int) -> Hop:
    def start() -> tuple[ChildProcess, int]:
        port = free_port()
        return nginx_process(hop_config(workdir, port, upstream_port, HOP_CPU), port, HOP_CPU), port

    return Hop(NGINX_HOP, start)


def _ratio(m: Measurement, baseline: Measurement | None) -> str:
    if baseline is None or m is baseline:
        return f"{'-':>8}"
    return f"{m.result.requests_per_second / baseline.result.requests_per_second:>7.2f}x"


def _row(name: str, m: Measurement, peer: Measurement | None, nginx: Measurement) -> str:
    failures = m.result.non_2xx + m.result.socket_errors
    return (
        f"{name:<32}{m.result.requests_per_second:>9,.0f}{m.result.p50 * 1e3:>8.2f}"
        f"{m.result.p99 * 1e3:>8.2f}{failures:>7}{m.cpu_share:>7.0%}"
        f"{m.requests_per_cpu_second:>10,.0f} {_ratio(m, peer)} {_ratio(m, nginx)}"
    )


def _table(workload: Workload, hops: list[Hop], best: dict[str, Measurement]) -> list[str]:
    nginx = best[NGINX_HOP]
    peer = best.get(PEER)
    lines = [
        f"{workload.name}:",
        f"{'hop':<32}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'hopCPU':>7}"
        f"{'req/CPU-s':>10} {'vs peer':>8} {'vs nginx':>8}",
    ]
    lines += [_row(hop.name, best[hop.name], peer, nginx) for hop in hops]
    if peer is not None:
        for hop in hops:
            if not hop.name.startswith("throttle-proxy"):
                continue
            m = best[hop.name]
            ratio = m.result.requests_per_second / peer.result.requests_per_second
            verdict = "meets" if ratio >= ISSUE_GOAL_VS_PEER else "BELOW"
            p99 = "not above" if m.result.p99 <= peer.result.p99 else "ABOVE"
            lines.append(
                f"  {hop.name} / peer = {ratio:.2f}x req/s ({verdict} the issue's "
                f"{ISSUE_GOAL_VS_PEER}x), p99 {p99} the peer's"
            )
    return lines


def _profile(hop: Hop, workload: Workload, seconds: float, output: Path) -> None:
    child, port = hop.start()
    with child:
        workload.check(port)
        summary = profile_process(
            child.pid, seconds, output, load=lambda: workload.run(port, seconds + 1)
        )
    print(f"py-spy record of '{hop.name}' for {seconds:.0f}s under the {workload.name} load:")
    print(summary)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run (1-20)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per hop, best kept (1-3)")
    parser.add_argument("--warning", action="store_true", help="add a log_level: warning row")
    parser.add_argument("--uvloop", action="store_true", help="add a uvloop row (info)")
    parser.add_argument("--no-peer", action="store_true", help="skip aws-sigv4-proxy")
    parser.add_argument("--only", choices=("get", "post"), help="one workload only")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds (0: off)")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1.0), 20.0)
    repeat = min(max(args.repeat, 1), 3)
    binary = None if args.no_peer else peer_binary()
    if binary is None and not args.no_peer:
        print(
            "aws-sigv4-proxy not found: build it with "
            "../shared/peers/build-aws-sigv4-proxy.sh /tmp/aws-sigv4-proxy (or --no-peer)",
            file=sys.stderr,
        )
        return 2

    tables: list[str] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        workloads = [
            GET_WORKLOAD,
            Workload("64 KiB POST", "/", post_script(workdir, POST_SIZE)),
        ]
        if args.only:
            workloads = [workloads[0] if args.only == "get" else workloads[1]]
        upstream_port = free_port()
        upstream = upstream_config(workdir, upstream_port, SIDE_CPU)
        with nginx_process(upstream, upstream_port, SIDE_CPU):
            hops = [_nginx_hop(workdir, upstream_port)]
            if binary is not None:
                hops.append(_peer_hop(binary, workdir, upstream_port))
            hops.append(_proxy_hop(workdir, upstream_port, "info", False))
            if args.warning:
                hops.append(_proxy_hop(workdir, upstream_port, "warning", False))
            if args.uvloop and uvloop_available():
                hops.append(_proxy_hop(workdir, upstream_port, "info", True))
            for workload in workloads:
                best: dict[str, Measurement] = {}
                for _ in range(repeat):  # rounds interleave the hops, so drift hits them all
                    for hop in hops:
                        measured = _measure(hop, seconds, workload)
                        kept = best.get(hop.name)
                        if kept is None or measured.result.requests > kept.result.requests:
                            best[hop.name] = measured
                failed = failed or any(
                    m.result.non_2xx or m.result.socket_errors for m in best.values()
                )
                tables += [*_table(workload, hops, best), ""]
            if args.profile > 0:
                output = args.profile_out or workdir / "py-spy.txt"
                proxy_hop = next(h for h in hops if h.name.startswith("throttle-proxy"))
                _profile(proxy_hop, workloads[0], min(args.profile, 30.0), output)

    print(
        f"wrk -t1 -c32 -d{seconds:.0f}s --latency, best of {repeat}; "
        f"hop on cpu {HOP_CPU}, upstream nginx + wrk on cpu {SIDE_CPU}"
    )
    print("\n".join(tables).rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
