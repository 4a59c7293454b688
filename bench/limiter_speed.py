"""Requests/s of the proxy with the local limiter against the same rule shared through Redis.

One proxy process pinned to one core, a rule that never binds (so every request runs the
limiter's whole decision and none is refused), wrk -t1 -c32 against it, nginx as the upstream;
wrk, nginx and redis-server share the other core. Both runs happen in this one invocation, so
the ratio compares like with like on a shared machine; the runs alternate (local, Redis,
Redis, local, ...) and the best of each is kept. Beside req/s, the proxy process's own CPU
time per request served (from /proc, the lowest of the rounds): on a loaded machine req/s
measures the neighbours too, CPU per request much less so (noise only ever adds to it).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.harness import (
    ChildProcess,
    free_port,
    pinned,
    proxy_command,
    proxy_env,
    tree_cpu_seconds,
)
from bench.nginx import nginx_process, upstream_config
from bench.wrk import WrkResult, run_wrk

HOST = "ec2.us-east-1.amazonaws.com"
PATH = "/?Action=DescribeInstances&Version=2016-11-15"
PROXY_CPU, SIDE_CPU = 0, 1
TARGET = 0.9  # the floor: Redis at least 0.9x the local limiter


@dataclass(frozen=True)
class SpeedRow:
    name: str
    result: WrkResult
    cpu_per_request: float  # seconds of the proxy process's CPU per request served


def _config(
    workdir: Path, upstream_port: int, redis_port: int | None, name: str
) -> tuple[Path, int]:
    port, admin = free_port(), free_port()
    config: dict[str, object] = {
        "listen": f"127.0.0.1:{port}",
        "admin_listen": f"127.0.0.1:{admin}",
        "log_level": "warning",
        "routes": [{"host": HOST, "upstream": f"http://127.0.0.1:{upstream_port}"}],
        # Never binds: every request is decided, none refused. (1e6/s: a 1 us interval, so
        # Redis really charges each slice; at 1e9/s the interval rounds to 0.)
        "limits": [
            {
                "name": "never-binds",
                "service": "ec2",
                "operations": ["DescribeInstances"],
                "rate": 1e6,
                "burst": 1e6,
            }
        ],
        "retry": {"max_attempts": 1},
    }
    if redis_port is not None:
        config["redis"] = {"url": f"redis://127.0.0.1:{redis_port}/0", "timeout": "1s"}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, port


def _run(
    workdir: Path, config: Path, port: int, name: str, seconds: float
) -> tuple[WrkResult, float]:
    child = ChildProcess(
        pinned(proxy_command(config), PROXY_CPU),
        ready_port=port,
        env=proxy_env(workdir),
        log_path=workdir / f"{name}.log",
    )
    with child:
        url = f"http://127.0.0.1:{port}{PATH}"
        run_wrk(url, host=HOST, seconds=1, cpu=SIDE_CPU)  # warm-up
        before = tree_cpu_seconds(child.pid)
        result = run_wrk(url, host=HOST, seconds=seconds, cpu=SIDE_CPU)
        cpu = tree_cpu_seconds(child.pid) - before
        return result, cpu / max(result.requests, 1)


def compare(seconds: float = 5.0, rounds: int = 2) -> list[SpeedRow]:
    """Best req/s of each limiter over `rounds` alternating runs."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise RuntimeError("redis-server is not installed")
    best: dict[str, WrkResult] = {}
    cheapest: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-limiter-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        upstream_port, redis_port = free_port(), free_port()
        redis = ChildProcess(
            pinned(
                [redis_server, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                SIDE_CPU,
            ),
            ready_port=redis_port,
            log_path=workdir / "redis.log",
        )
        with (
            nginx_process(
                upstream_config(workdir, upstream_port, SIDE_CPU), upstream_port, SIDE_CPU
            ),
            redis,
        ):
            runs: list[tuple[str, int | None]] = [("local", None), ("redis", redis_port)]
            for round_ in range(rounds):
                # local, redis, redis, local, ...: a neighbour's load that comes or goes
                # during the run weighs on both alike.
                for name, port in runs if round_ % 2 == 0 else runs[::-1]:
                    config, listen = _config(workdir, upstream_port, port, f"{name}-{round_}")
                    result, cpu = _run(workdir, config, listen, f"{name}-{round_}", seconds)
                    kept = best.get(name)
                    if kept is None or result.requests_per_second > kept.requests_per_second:
                        best[name] = result
                    cheapest[name] = min(cpu, cheapest.get(name, cpu))
    return [SpeedRow(name, best[name], cheapest[name]) for name in ("local", "redis")]


def report(rows: list[SpeedRow]) -> None:
    local = rows[0].result.requests_per_second
    print(
        f"{'limiter':<10}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'errors':>7}"
        f"{'CPU us/req':>11}  vs local"
    )
    for row in rows:
        r = row.result
        print(
            f"{row.name:<10}{r.requests_per_second:>9.0f}{r.p50 * 1000:>8.2f}{r.p99 * 1000:>8.2f}"
            f"{r.non_2xx:>8}{r.socket_errors:>7}{row.cpu_per_request * 1e6:>11.0f}"
            f"  {r.requests_per_second / local:.3f}x"
        )
    ratio = rows[1].result.requests_per_second / local
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"redis / local = {ratio:.3f}x ({verdict} the issue's {TARGET}x)")
    capacity = rows[0].cpu_per_request / rows[1].cpu_per_request
    verdict = "meets" if capacity >= TARGET else "BELOW"
    print(
        f"by CPU per request (requests one core serves), redis / local = {capacity:.3f}x "
        f"({verdict} the issue's {TARGET}x)"
    )


if __name__ == "__main__":
    report(compare())
