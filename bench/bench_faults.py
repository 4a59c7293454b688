"""The cost of fault rules on the hot path: none, and 100 of them, in the same run.

Two parts. In process: what the pipeline pays per attempt for the fault check with no rules
(one attribute read), against deciding over 100 rules that cover other services (each rejected
on its service) and 100 that cover the request and draw (probability 0, so they never fire).
Through the proxy: small signed GETs with wrk against the proxy (one core) in front of nginx
(the other core, with wrk), with no `faults:`, with 100 rules for other services and with 100
covering rules that draw; req/CPU-s of each as a ratio to no faults, rounds interleaved.

Run: .venv/bin/python bench/bench_faults.py [--seconds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_proxy_throughput import (
    AWS_HOST,
    HOP_CPU,
    SIDE_CPU,
    Hop,
    Measurement,
    _measure,
)
from bench.harness import (
    ChildProcess,
    ProxySettings,
    free_port,
    pinned,
    proxy_command,
    proxy_env,
    write_proxy_config,
)
from bench.nginx import nginx_process, upstream_config
from proxy.faults.model import fault_rules
from proxy.faults.rules import FaultScope, FaultSet, compile_faults

RULES = 100
SCOPE = FaultScope("ec2", "DescribeInstances", "us-east-1")


def rules_yaml(covering: bool) -> str:
    """100 rules: for other services, or covering the benchmark's EC2 call with probability 0."""
    lines = ["fault_seed: 1", "faults:"]
    for i in range(RULES):
        service = "ec2" if covering else f"svc{i}"
        lines.append(
            f"  - {{name: r{i}, service: {service}, operations: [Describe*, '!DescribeTags'], "
            "probability: 0, kind: throttle}"
        )
    return "\n".join(lines) + "\n"


def raw_rules(covering: bool) -> list[dict[str, object]]:
    return [
        {
            "name": f"r{i}",
            "service": "ec2" if covering else f"svc{i}",
            "operations": ["Describe*", "!DescribeTags"],
            "probability": 0.0,
            "kind": "throttle",
        }
        for i in range(RULES)
    ]


def in_process() -> None:
    """Per-attempt cost of the check and of a decision, in nanoseconds."""

    class Flags:
        upstream_on = False

    flags = Flags()
    number = 200_000
    check = timeit.timeit(lambda: flags.upstream_on, number=number) / number
    empty = timeit.timeit(lambda: None, number=number) / number  # the lambda call itself
    print(f"in process, per attempt (best of 5, {number:,} calls each):")
    print(f"  no rules: the `upstream_on` check        {max(check - empty, 0) * 1e9:8.1f} ns")
    for covering, label in ((False, "100 rules, other services"), (True, "100 covering rules")):
        faults = compile_faults(fault_rules(raw_rules(covering), "faults"), 1, 0.0)
        calls = 20_000

        def decide(faults: FaultSet = faults) -> None:
            faults.decide(faults.upstream, SCOPE, 0.0)

        best = min(timeit.repeat(decide, number=calls, repeat=5))
        print(f"  {label + ': decide()':<41}{best / calls * 1e9:8.0f} ns")


def proxy_hop(workdir: Path, upstream_port: int, name: str, extra: str) -> Hop:
    def start() -> tuple[ChildProcess, int]:
        config, port = write_proxy_config(workdir, ProxySettings(AWS_HOST, upstream_port), name)
        with config.open("a", encoding="utf-8") as out:
            out.write(extra)
        child = ChildProcess(
            pinned(proxy_command(config), HOP_CPU),
            ready_port=port,
            env=proxy_env(workdir),
            log_path=workdir / f"{name}.log",
        )
        return child, port

    return Hop(name, start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    in_process()
    best: dict[str, Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        upstream_port = free_port()
        with nginx_process(
            upstream_config(workdir, upstream_port, SIDE_CPU), upstream_port, SIDE_CPU
        ):
            hops = [
                proxy_hop(workdir, upstream_port, "no faults", ""),
                proxy_hop(workdir, upstream_port, "100 rules, other services", rules_yaml(False)),
                proxy_hop(workdir, upstream_port, "100 covering rules", rules_yaml(True)),
            ]
            for _ in range(max(1, min(args.repeat, 5))):
                for hop in hops:  # interleaved: drift hits every variant alike
                    measured = _measure(hop, args.seconds)
                    kept = best.get(hop.name)
                    if (
                        kept is None
                        or measured.requests_per_cpu_second > kept.requests_per_cpu_second
                    ):
                        best[hop.name] = measured
    baseline = best[hops[0].name]
    print(f"\nthrough the proxy: wrk -t1 -c32 -d{args.seconds:.0f}s, best of {args.repeat}")
    print(f"{'faults':<28}{'req/s':>9}{'p50 ms':>8}{'errors':>7}{'req/CPU-s':>11}  vs none")
    failed = False
    for hop in hops:
        m = best[hop.name]
        errors = m.result.non_2xx + m.result.socket_errors
        failed = failed or errors > 0
        ratio = m.requests_per_cpu_second / baseline.requests_per_cpu_second
        print(
            f"{hop.name:<28}{m.result.requests_per_second:>9,.0f}{m.result.p50 * 1e3:>8.2f}"
            f"{errors:>7}{m.requests_per_cpu_second:>11,.0f}  {ratio:.3f}x"
        )
    print(time.strftime("measured %Y-%m-%d %H:%M UTC", time.gmtime()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
