"""Client-side rate limits under load: pacing, isolation, per-prefix buckets, memory.

Run: .venv/bin/python bench/bench_ratelimit.py            (about 60 s in all)

1. A real proxy process (`python -m proxy run`) in front of a fast fake upstream. Rule: rate
   100, burst 100 on DescribeInstances, per account and region (the default scope). 200
   clients offer 1,000 DescribeInstances/s for 10 s, half to us-east-1 and half to eu-west-1
   (each paced at 5/s; max_wait 0.5 s so excess is refused, not queued forever), while 10
   clients send 50 DescribeVpcs/s (no rule). Printed per region: the worst excess of upstream
   arrivals over burst + rate*t and the steady admitted rate (each region has a budget of its
   own); and DescribeVpcs latency against a baseline run with no DescribeInstances traffic.
2. The limiter in-process (11,000 req/s is beyond one Python proxy process): two S3 prefixes
   under a per-prefix 5,500/s rule, each driven past its limit for 3 s; each prefix's rate.
3. Memory: 1,000,000 distinct prefixes through the limiter, then idle; RSS and tracemalloc.
4. Speed: req/s of one proxy process (one core, a rule that never binds, wrk -c32) with the
   local limiter and with the same rule shared through a local redis-server, side by side
   (bench/limiter_speed.py; `--no-speed` skips it).
5. Shared accuracy: the load of 1. split over two proxy processes sharing the rule through
   one redis-server, each leasing slices (README, "Leased slices"): per region, the worst
   excess over burst + rate*t from the first request and over every window between two
   arrivals, against the stated bound of two slices (`--no-shared` skips it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fake_upstream import FakeUpstream, start_fake_upstream
from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit import LocalRateLimiter
from tests.fakes.clock import FakeClock

EC2 = "ec2.us-east-1.amazonaws.com"
EC2_WEST = "ec2.eu-west-1.amazonaws.com"
RATE, BURST = 100.0, 100.0
LOAD_SECONDS = 10.0
CLIENTS, PER_CLIENT_RATE = 200, 5.0  # 1,000 offered requests/s
FREE_CLIENTS = 10  # 50 DescribeVpcs/s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def proxy_process(
    upstream: str, workdir: Path, redis_url: str | None = None, name: str = "bench-proxy"
) -> Iterator[str]:
    port, admin = free_port(), free_port()
    config: dict[str, object] = {
        "listen": f"127.0.0.1:{port}",
        "admin_listen": f"127.0.0.1:{admin}",
        "log_level": "warning",
        "routes": [{"host": EC2, "upstream": upstream}, {"host": EC2_WEST, "upstream": upstream}],
        "limits": [
            {
                "name": "describe-instances",
                "service": "ec2",
                "operations": ["DescribeInstances"],
                "rate": RATE,
                "burst": BURST,
            }
        ],
        "limit_policy": {"max_wait": "500ms", "max_queue": 10000},
        "retry": {"max_attempts": 1},
    }
    if redis_url is not None:
        config["redis"] = {"url": redis_url, "timeout": "250ms"}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",  # AWS's example
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "none"),
        AWS_CONFIG_FILE=str(workdir / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"proxy did not start; see {name}.log") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def paced_client(
    session: aiohttp.ClientSession,
    url: str,
    action: str,
    first: float,
    rate: float,
    until: float,
    out: list[tuple[float, float, int]],
    host: str = EC2,
) -> None:
    """Send `action` at `rate`/s from `first` until `until`; record (sent, latency, status)."""
    next_at = first
    while next_at < until:
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.monotonic()
        async with session.get(
            f"{url}/?Action={action}&Version=2016-11-15", headers={"Host": host}
        ) as answer:
            await answer.read()
            out.append((sent, time.monotonic() - sent, answer.status))
        # A fixed schedule: a client held up by a slow answer catches up, so the offered
        # load stays at `rate` per client over the run.
        next_at += 1.0 / rate


def latency_ms(samples: list[tuple[float, float, int]]) -> str:
    lat = sorted(s[1] * 1000 for s in samples)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return f"p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms ({len(lat)} requests)"


async def _limited_load(
    urls: tuple[str, ...], start: float, until: float
) -> list[tuple[float, float, int]]:
    out: list[tuple[float, float, int]] = []
    connector = aiohttp.TCPConnector(limit=CLIENTS + 10)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(
                paced_client(
                    session,
                    urls[i // 2 % len(urls)],  # each proxy gets both regions
                    "DescribeInstances",
                    start + i / (CLIENTS * PER_CLIENT_RATE),
                    PER_CLIENT_RATE,
                    until,
                    out,
                    EC2 if i % 2 == 0 else EC2_WEST,  # half the clients to each region
                )
                for i in range(CLIENTS)
            )
        )
    return out


def _limited_load_process(
    urls: tuple[str, ...], start: float, until: float, results: Connection
) -> None:
    """The 1,000/s load in a process of its own, so the probe and the fake upstream in this
    one measure the proxy, not a saturated load generator (monotonic time is system-wide)."""
    results.send(asyncio.run(_limited_load(urls, start, until)))
    results.close()


async def _limited_load_elsewhere(
    urls: tuple[str, ...], start: float, until: float
) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    generator = multiprocessing.get_context("fork").Process(
        target=_limited_load_process, args=(urls, start, until, sender)
    )
    generator.start()
    return generator, receiver


async def run_load(
    url: str, limited: bool, seconds: float
) -> tuple[list[tuple[float, float, int]], ...]:
    limited_out: list[tuple[float, float, int]] = []
    free_out: list[tuple[float, float, int]] = []
    start = time.monotonic() + 0.5
    until = start + seconds
    generator = None
    if limited:
        generator, receiver = await _limited_load_elsewhere((url,), start, until)
    connector = aiohttp.TCPConnector(limit=FREE_CLIENTS + 10)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(
                paced_client(session, url, "DescribeVpcs", start + i / 50, 5.0, until, free_out)
                for i in range(FREE_CLIENTS)
            )
        )
    if generator is not None:
        limited_out = await asyncio.to_thread(receiver.recv)
        generator.join(30)
    return limited_out, free_out


async def part_pacing(workdir: Path) -> None:
    print("== 1. rate 100 / burst 100 on DescribeInstances through a real proxy ==")
    upstream: FakeUpstream = await start_fake_upstream()
    try:
        with proxy_process(upstream.url, workdir) as url:
            _, baseline = await run_load(url, limited=False, seconds=4.0)
            upstream.arrivals.clear()
            upstream.host_arrivals.clear()
            limited, free = await run_load(url, limited=True, seconds=LOAD_SECONDS)
    finally:
        await upstream.close()
    first_sent = min(s[0] for s in limited)
    last_sent = max(s[0] for s in limited)
    offered = len(limited) / (last_sent - first_sent)
    statuses = [s[2] for s in limited]
    print(
        f"offered DescribeInstances: {len(limited)} in {last_sent - first_sent:.2f} s "
        f"= {offered:.0f}/s from {CLIENTS} clients"
    )
    print(
        f"answered 200: {statuses.count(200)}, 503 rate-limited: {statuses.count(503)}, "
        f"other: {len(statuses) - statuses.count(200) - statuses.count(503)}"
    )
    for host in (EC2, EC2_WEST):
        arrivals = sorted(upstream.host_arrivals[(host, "DescribeInstances")])
        excess = max(k - (BURST + RATE * (t - first_sent)) for k, t in enumerate(arrivals, start=1))
        steady = [t for t in arrivals if first_sent + 2.0 <= t < first_sent + LOAD_SECONDS]
        steady_rate = (len(steady) - 1) / (steady[-1] - steady[0])
        region = host.split(".")[1]
        print(
            f"{region}: reached upstream {len(arrivals)}; max excess over burst + rate*t: "
            f"{excess:+.2f} requests (<= 0 means never over); steady admitted rate "
            f"(t = 2 s .. 10 s): {steady_rate:.2f}/s ({(steady_rate / RATE - 1) * 100:+.2f}% "
            f"of {RATE:.0f}/s)"
        )
    print(f"DescribeVpcs (no rule) baseline, alone:        {latency_ms(baseline)}")
    print(f"DescribeVpcs (no rule) beside the limited load: {latency_ms(free)}")


async def part_prefixes(seconds: float = 3.0) -> None:
    print("== 2. two S3 prefixes under a per-prefix 5,500/s rule (limiter in-process) ==")
    rule = LimitRule("reads", "s3", 5500, 5500, ("GetObject",), per="prefix", prefix_depth=1)
    limiter = LocalRateLimiter(
        [rule], LimitPolicy(max_wait=0.2, max_queue=100_000), Metrics(), SystemClock()
    )
    admitted: dict[str, list[float]] = {"cats": [], "dogs": []}
    refused = 0
    until = time.monotonic() + seconds

    async def worker(prefix: str) -> None:
        nonlocal refused
        op = Operation("s3", "GetObject", bucket="media", key=f"{prefix}/x.jpg")
        while time.monotonic() < until:
            try:
                await limiter.acquire(op)
                admitted[prefix].append(time.monotonic())
            except RateLimited:
                refused += 1
                await asyncio.sleep(0.01)

    await asyncio.gather(*(worker(p) for p in admitted for _ in range(400)))
    await limiter.close()
    for prefix, times in admitted.items():
        start = times[0]
        steady = [t for t in times if t >= start + 1.0]
        rate = (len(steady) - 1) / (steady[-1] - steady[0])
        print(f"prefix media/{prefix}: {len(times)} admitted, steady {rate:.0f}/s after the burst")
    print(f"refused (over max_wait, retried by the workers): {refused}")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def fill_and_idle(count: int, trace: bool) -> None:
    """Acquire for `count` distinct prefixes, wait until the sweeper forgot them; print memory.

    The clock stands still during the fill, so every prefix's bucket is still refilling and
    held (the worst case: all of them at once); then it moves on and the prefixes are idle.
    """
    rule = LimitRule("reads", "s3", 5500, 5500, ("GetObject",), per="prefix", prefix_depth=1)
    clock = FakeClock()
    limiter = LocalRateLimiter([rule], LimitPolicy(idle_expiry=1.0), Metrics(), clock)
    await limiter.acquire(Operation("s3", "GetObject", bucket="b", key="warm/x"))
    gc.collect()
    if trace:
        tracemalloc.start()
    base = (tracemalloc.get_traced_memory()[0], rss_mib(), sys.getallocatedblocks())
    started = time.monotonic()
    for i in range(count):
        await limiter.acquire(Operation("s3", "GetObject", bucket="b", key=f"p{i}/x"))
    took = time.monotonic() - started
    state = limiter.rules.states[0]
    held = len(state.buckets)
    peak = (tracemalloc.get_traced_memory()[0], rss_mib(), sys.getallocatedblocks())
    clock.advance(1.0)
    for _ in range(100):  # the background sweeper (idle_expiry 1 s) frees them; bounded wait
        await asyncio.sleep(0.1)
        if len(state.buckets) == 0:
            break
    gc.collect()
    idle = (tracemalloc.get_traced_memory()[0], rss_mib(), sys.getallocatedblocks())
    tracemalloc.stop()
    await limiter.close()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed_rss = rss_mib()
    print(
        f"{count:,} prefixes in {took:.1f} s ({count / took:,.0f} acquires/s); buckets held "
        f"right after: {held:,}, once idle: {len(state.buckets)}"
    )
    mib = 2**20
    if trace:
        print(
            f"  tracemalloc: baseline {base[0] / mib:.2f} MiB, after fill {peak[0] / mib:.2f} "
            f"MiB, idle {idle[0] / mib:.2f} MiB"
        )
    print(
        f"  RSS: baseline {base[1]:.1f} MiB, after fill {peak[1]:.1f} MiB, idle {idle[1]:.1f} "
        f"MiB, idle after malloc_trim {trimmed_rss:.1f} MiB"
    )
    print(f"  allocated blocks: baseline {base[2]:,}, after fill {peak[2]:,}, idle {idle[2]:,}")


async def part_memory() -> None:
    print("== 3. memory: distinct prefixes, then idle ==")
    # tracemalloc makes every allocation ~8x slower: its pass uses fewer prefixes.
    await fill_and_idle(1_000_000, trace=False)
    await fill_and_idle(100_000, trace=True)


async def part_shared(workdir: Path, seconds: float = 6.0) -> None:
    from bench.harness import ChildProcess
    from proxy.ratelimit.lease import lease_size

    print("== 5. the load of 1. over two proxies sharing the rule through one redis-server ==")
    slice_ = lease_size(RATE, BURST, 0.05)  # the default redis.lease_interval
    redis_port = free_port()
    redis = ChildProcess(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        ready_port=redis_port,
        log_path=workdir / "redis.log",
    )
    upstream: FakeUpstream = await start_fake_upstream()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    try:
        with (
            redis,
            proxy_process(upstream.url, workdir, redis_url, "shared-a") as first,
            proxy_process(upstream.url, workdir, redis_url, "shared-b") as second,
        ):
            start = time.monotonic() + 0.5
            generator, receiver = await _limited_load_elsewhere(
                (first, second), start, start + seconds
            )
            limited = await asyncio.to_thread(receiver.recv)
            generator.join(30)
    finally:
        await upstream.close()
    first_sent = min(s[0] for s in limited)
    statuses = [s[2] for s in limited]
    print(
        f"offered {len(limited)} ({seconds:.0f} s of schedule) to two proxies; answered 200: "
        f"{statuses.count(200)}, 503: {statuses.count(503)}; stated lease bound: 2 replicas x "
        f"{slice_} tokens = {2 * slice_}"
    )
    for host in (EC2, EC2_WEST):
        arrivals = sorted(upstream.host_arrivals[(host, "DescribeInstances")])
        from_start = max(
            k - (BURST + RATE * (t - first_sent)) for k, t in enumerate(arrivals, start=1)
        )
        # Windows between arrivals: a loop stall that sends admitted requests together shows
        # here as excess too (the tests count windows from client send to upstream arrival).
        windows = max(
            (j - i + 1) - (BURST + RATE * (arrivals[j] - arrivals[i]))
            for i in range(len(arrivals))
            for j in range(i, min(len(arrivals), i + int(BURST + RATE * 2 * seconds)))
        )
        print(
            f"{host.split('.')[1]}: reached upstream {len(arrivals)} in "
            f"{arrivals[-1] - first_sent:.2f} s; max excess over burst + rate*t from the first "
            f"request: {from_start:+.2f}, over any window between arrivals: {windows:+.2f} "
            f"(<= {2 * slice_} is within the stated bound)"
        )


def part_speed() -> None:
    print("== 4. req/s: local limiter against the same rule through redis-server ==")
    from bench.limiter_speed import compare, report

    report(compare())


async def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir:
        await part_pacing(Path(workdir))
    await part_prefixes()
    await part_memory()
    if "--no-speed" not in sys.argv:
        await asyncio.to_thread(part_speed)
    if "--no-shared" not in sys.argv:
        with tempfile.TemporaryDirectory() as workdir:
            await part_shared(Path(workdir))
    print(f"total {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
