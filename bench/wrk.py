"""Run wrk pinned to a core and read its summary: requests/s, p50/p99, errors."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.harness import pinned

WRK = "/usr/bin/wrk"
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles in seconds, and everything that failed."""

    requests: int
    requests_per_second: float
    p50: float
    p99: float
    non_2xx: int
    socket_errors: int
    raw: str


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's `--latency` summary; raises ValueError when a figure is missing."""
    rate = _RATE.search(output)
    total = _TOTAL.search(output)
    percentiles = {
        m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _PERCENTILE.finditer(output)
    }
    if rate is None or total is None or "50" not in percentiles or "99" not in percentiles:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        requests=int(total.group(1)),
        requests_per_second=float(rate.group(1)),
        p50=percentiles["50"],
        p99=percentiles["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        raw=output,
    )


def post_script(workdir: Path, size: int) -> Path:
    """A wrk script that POSTs `size` bytes of application/octet-stream."""
    path = workdir / f"post-{size}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("a", {size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n',
        encoding="utf-8",
    )
    return path


def run_wrk(
    url: str,
    *,
    host: str,
    seconds: float,
    connections: int = 32,
    cpu: int | None = None,
    script: Path | None = None,
) -> WrkResult:
    """One wrk run of `seconds` with `connections` keep-alive connections and one thread;
    `script` is a wrk Lua script (the POST body, say)."""
    duration = max(1, round(seconds))
    command = pinned(
        [
            WRK,
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            "5s",
            "-H",
            f"Host: {host}",
            *(["-s", str(script)] if script is not None else []),
            url,
        ],
        cpu,
    )
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 30
    )
    return parse_wrk(done.stdout)
