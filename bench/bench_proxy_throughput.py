"""Small signed GETs through the proxy vs an nginx `proxy_pass` hop, both pinned to one core.

Layout (2 cores): the fast nginx upstream and wrk share core 1; the hop under test (nginx hop,
then the proxy in each mode) runs alone on core 0. wrk: 1 thread, 32 keep-alive connections,
`GET /?Action=DescribeInstances&Version=2016-11-15` with `Host: ec2.us-east-1.amazonaws.com`.

Run: .venv/bin/python bench/bench_proxy_throughput.py [--seconds 10] [--no-info] [--no-uvloop]
     [--profile SECONDS]   (py-spy record of the proxy under the same load; summary printed)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
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
class Scenario:
    name: str
    result: WrkResult


def _check_answer(port: int) -> None:
    """One request by hand first: a 200 with the upstream's body, or the run is meaningless."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{REQUEST_PATH}", headers={"Host": AWS_HOST}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        body = answer.read()
        if answer.status != 200 or b"DescribeInstancesResponse" not in body:
            raise RuntimeError(f"port {port} answered {answer.status}: {body[:200]!r}")


def _measure(port: int, seconds: float) -> WrkResult:
    _check_answer(port)
    url = f"http://127.0.0.1:{port}{REQUEST_PATH}"
    run_wrk(url, host=AWS_HOST, seconds=WARMUP_SECONDS, cpu=SIDE_CPU)
    return run_wrk(url, host=AWS_HOST, seconds=seconds, cpu=SIDE_CPU)


def _proxy(
    workdir: Path, upstream_port: int, log_level: str, use_uvloop: bool
) -> tuple[ChildProcess, int]:
    """The proxy pinned to HOP_CPU (not started yet) and the port it will listen on."""
    name = f"proxy-{log_level}{'-uvloop' if use_uvloop else ''}"
    config, port = write_proxy_config(
        workdir, ProxySettings(AWS_HOST, upstream_port, log_level=log_level), name
    )
    child = ChildProcess(
        pinned(proxy_command(config, use_uvloop=use_uvloop), HOP_CPU),
        ready_port=port,
        env=proxy_env(workdir),
        log_path=workdir / f"{name}.log",
    )
    return child, port


def _row(name: str, result: WrkResult, baseline: WrkResult | None) -> str:
    ratio = (
        f"{result.requests_per_second / baseline.requests_per_second:>7.3f}x" if baseline else ""
    )
    failures = result.non_2xx + result.socket_errors
    return (
        f"{name:<34}{result.requests_per_second:>11,.0f}{result.p50 * 1e3:>9.2f}"
        f"{result.p99 * 1e3:>9.2f}{failures:>8}  {ratio}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario (1-20)")
    parser.add_argument("--no-info", action="store_true", help="skip the log_level: info runs")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop runs")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds (0: off)")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1.0), 20.0)
    levels = ["warning"] if args.no_info else ["warning", "info"]
    loops = [False] if args.no_uvloop or not uvloop_available() else [False, True]

    scenarios: list[Scenario] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        upstream_port, hop_port = free_port(), free_port()
        with nginx_process(
            upstream_config(workdir, upstream_port, SIDE_CPU), upstream_port, SIDE_CPU
        ):
            with nginx_process(
                hop_config(workdir, hop_port, upstream_port, HOP_CPU), hop_port, HOP_CPU
            ):
                scenarios.append(Scenario("nginx proxy_pass hop", _measure(hop_port, seconds)))
            for use_uvloop in loops:
                for level in levels:
                    proxy, port = _proxy(workdir, upstream_port, level, use_uvloop)
                    with proxy:
                        result = _measure(port, seconds)
                        label = f"proxy log={level}{' uvloop' if use_uvloop else ''}"
                        scenarios.append(Scenario(label, result))
            if args.profile > 0:
                proxy, port = _proxy(workdir, upstream_port, "warning", False)
                with proxy:
                    _check_answer(port)
                    url = f"http://127.0.0.1:{port}{REQUEST_PATH}"
                    started = time.monotonic()
                    summary = profile_process(
                        proxy.pid,
                        min(args.profile, 30.0),
                        workdir,
                        load=lambda: run_wrk(
                            url, host=AWS_HOST, seconds=args.profile + 1, cpu=SIDE_CPU
                        ),
                    )
                    print(f"py-spy profile ({time.monotonic() - started:.0f}s under wrk load):")
                    print(summary)

    baseline = scenarios[0].result
    print(f"wrk -t1 -c32 -d{seconds:.0f}s --latency; hop on cpu {HOP_CPU}, upstream+wrk on cpu 1")
    print(f"{'scenario':<34}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  vs hop")
    for scenario in scenarios:
        is_base = scenario.result is baseline
        print(_row(scenario.name, scenario.result, None if is_base else baseline))
    best = max(s.result.requests_per_second for s in scenarios[1:]) if len(scenarios) > 1 else 0
    ratio = best / baseline.requests_per_second
    verdict = "meets" if ratio >= ISSUE_MINIMUM else "BELOW"
    print(
        f"best proxy / nginx hop = {ratio:.3f}x ({verdict} the issue's {ISSUE_MINIMUM}x; "
        f"project goal {PROJECT_GOAL}x)"
    )
    failed = any(s.result.non_2xx or s.result.socket_errors for s in scenarios)
    return 1 if failed or ratio < ISSUE_MINIMUM else 0


if __name__ == "__main__":
    sys.exit(main())
