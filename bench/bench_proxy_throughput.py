"""Small signed GETs through the proxy vs an nginx `proxy_pass` hop, both pinned to one core.

Layout (2 cores): the fast nginx upstream and wrk share core 1; the hop under test (nginx hop,
then the proxy in each mode) runs alone on core 0. wrk: 1 thread, 32 keep-alive connections,
`GET /?Action=DescribeInstances&Version=2016-11-15` with `Host: ec2.us-east-1.amazonaws.com`.
Besides wrk's figures, the hop's own CPU use is read from /proc, so a run disturbed by other
work on the machine shows up as a hop that did not get its core.

A bare aiohttp forwarder (bench/bare_forwarder.py) runs too: the ceiling for an aiohttp proxy.

Run: .venv/bin/python bench/bench_proxy_throughput.py [--seconds 10] [--repeat 1] [--no-info]
     [--no-uvloop] [--no-bare] [--profile SECONDS [--profile-out FILE]]
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
    PYTHON,
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
from bench.pyspy import profile_process
from bench.wrk import WrkResult, run_wrk

AWS_HOST = "ec2.us-east-1.amazonaws.com"
REQUEST_PATH = "/?Action=DescribeInstances&Version=2016-11-15"
HOP_CPU = 0  # the hop under test, alone
SIDE_CPU = 1  # upstream nginx and wrk
WARMUP_SECONDS = 1.0
ISSUE_MINIMUM = 0.07
PROJECT_GOAL = 0.15


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


def _check_answer(port: int) -> None:
    """One request by hand first: a 200 with the upstream's body, or the run is meaningless."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{REQUEST_PATH}", headers={"Host": AWS_HOST}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        body = answer.read()
        if answer.status != 200 or b"DescribeInstancesResponse" not in body:
            raise RuntimeError(f"port {port} answered {answer.status}: {body[:200]!r}")


def _measure(hop: Hop, seconds: float) -> Measurement:
    child, port = hop.start()
    with child:
        _check_answer(port)
        url = f"http://127.0.0.1:{port}{REQUEST_PATH}"
        run_wrk(url, host=AWS_HOST, seconds=WARMUP_SECONDS, cpu=SIDE_CPU)
        cpu_before, started = tree_cpu_seconds(child.pid), time.monotonic()
        result = run_wrk(url, host=AWS_HOST, seconds=seconds, cpu=SIDE_CPU)
        wall = time.monotonic() - started
        return Measurement(result, wall, tree_cpu_seconds(child.pid) - cpu_before)


def _proxy_hop(workdir: Path, upstream_port: int, log_level: str, use_uvloop: bool) -> Hop:
    name = f"proxy log={log_level}{' uvloop' if use_uvloop else ''}"
    file_name = f"proxy-{log_level}{'-uvloop' if use_uvloop else ''}"

    def start() -> tuple[ChildProcess, int]:
        config, port = write_proxy_config(
            workdir, ProxySettings(AWS_HOST, upstream_port, log_level=log_level), file_name
        )
        child = ChildProcess(
            pinned(proxy_command(config, use_uvloop=use_uvloop), HOP_CPU),
            ready_port=port,
            env=proxy_env(workdir),
            log_path=workdir / f"{file_name}.log",
        )
        return child, port

    return Hop(name, start)


def _bare_hop(workdir: Path, upstream_port: int, use_uvloop: bool) -> Hop:
    def start() -> tuple[ChildProcess, int]:
        port = free_port()
        command = [
            str(PYTHON),
            str(Path(__file__).with_name("bare_forwarder.py")),
            "--port",
            str(port),
            "--upstream-port",
            str(upstream_port),
            *(["--uvloop"] if use_uvloop else []),
        ]
        log = workdir / f"bare{'-uvloop' if use_uvloop else ''}.log"
        return ChildProcess(pinned(command, HOP_CPU), ready_port=port, log_path=log), port

    return Hop(f"bare aiohttp forwarder{' uvloop' if use_uvloop else ''}", start)


def _nginx_hop(workdir: Path, upstream_port: int) -> Hop:
    def start() -> tuple[ChildProcess, int]:
        port = free_port()
        return nginx_process(hop_config(workdir, port, upstream_port, HOP_CPU), port, HOP_CPU), port

    return Hop("nginx proxy_pass hop", start)


def _row(name: str, m: Measurement, baseline: Measurement | None) -> str:
    rps = m.result.requests_per_second
    ratio = f"{rps / baseline.result.requests_per_second:>6.3f}x" if baseline else f"{'-':>7}"
    failures = m.result.non_2xx + m.result.socket_errors
    return (
        f"{name:<30}{rps:>9,.0f}{m.result.p50 * 1e3:>8.2f}{m.result.p99 * 1e3:>8.2f}"
        f"{failures:>7}{m.cpu_share:>7.0%}{m.requests_per_cpu_second:>10,.0f}  {ratio}"
    )


def _profile(hop: Hop, seconds: float, output: Path) -> None:
    child, port = hop.start()
    with child:
        _check_answer(port)
        url = f"http://127.0.0.1:{port}{REQUEST_PATH}"
        summary = profile_process(
            child.pid,
            seconds,
            output,
            load=lambda: run_wrk(url, host=AWS_HOST, seconds=seconds + 1, cpu=SIDE_CPU),
        )
    print(f"py-spy record of '{hop.name}' for {seconds:.0f}s under the same wrk load:")
    print(summary)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run (1-20)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per hop, best kept (1-3)")
    parser.add_argument("--no-info", action="store_true", help="skip the log_level: info runs")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop runs")
    parser.add_argument(
        "--no-bare", action="store_true", help="skip the bare aiohttp forwarder (the ceiling)"
    )
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds (0: off)")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1.0), 20.0)
    repeat = min(max(args.repeat, 1), 3)
    levels = ["warning"] if args.no_info else ["warning", "info"]
    loops = [False] if args.no_uvloop or not uvloop_available() else [False, True]

    best: dict[str, Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        upstream_port = free_port()
        upstream = upstream_config(workdir, upstream_port, SIDE_CPU)
        with nginx_process(upstream, upstream_port, SIDE_CPU):
            hops = [_nginx_hop(workdir, upstream_port)]
            for use_uvloop in loops:
                if not args.no_bare:
                    hops.append(_bare_hop(workdir, upstream_port, use_uvloop))
                # The info-level cost is shown on the default loop; uvloop runs at warning.
                hops += [
                    _proxy_hop(workdir, upstream_port, level, use_uvloop)
                    for level in (levels if not use_uvloop else ["warning"])
                ]
            for _ in range(repeat):  # rounds interleave the hops, so drift hits them all
                for hop in hops:
                    measured = _measure(hop, seconds)
                    kept = best.get(hop.name)
                    if kept is None or measured.result.requests > kept.result.requests:
                        best[hop.name] = measured
            if args.profile > 0:
                output = args.profile_out or workdir / "py-spy.txt"
                proxy_hop = next(h for h in hops if h.name.startswith("proxy"))
                _profile(proxy_hop, min(args.profile, 30.0), output)

    baseline = best[hops[0].name]
    print(
        f"wrk -t1 -c32 -d{seconds:.0f}s --latency, best of {repeat}; "
        f"hop on cpu {HOP_CPU}, upstream nginx + wrk on cpu {SIDE_CPU}"
    )
    print(
        f"{'hop':<30}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'hopCPU':>7}"
        f"{'req/CPU-s':>10}  vs nginx hop"
    )
    for hop in hops:
        print(_row(hop.name, best[hop.name], None if hop is hops[0] else baseline))
    proxies = [best[h.name].result.requests_per_second for h in hops if h.name.startswith("proxy")]
    ratio = max(proxies) / baseline.result.requests_per_second if proxies else 0.0
    verdict = "meets" if ratio >= ISSUE_MINIMUM else "BELOW"
    print(
        f"best proxy / nginx hop = {ratio:.3f}x ({verdict} the issue's {ISSUE_MINIMUM}x; "
        f"project goal {PROJECT_GOAL}x)"
    )
    failed = any(m.result.non_2xx or m.result.socket_errors for m in best.values())
    return 1 if failed or ratio < ISSUE_MINIMUM else 0


if __name__ == "__main__":
    sys.exit(main())
