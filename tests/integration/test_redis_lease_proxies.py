"""Two proxy processes on one redis-server, leasing slices of one shared budget, under
concurrent load in bursts: in every window the upstream sees at most `burst + rate*t` plus
the stated lease bound (two replicas x one slice each)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from pathlib import Path

import aiohttp

from proxy.ratelimit.lease import lease_size
from tests.fakes.aws_upstream import FakeAws
from tests.servers import ProxyProcess, RedisProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
RATE, BURST, LEASE_INTERVAL = 200.0, 100.0, 0.05
SLICE = lease_size(RATE, BURST, LEASE_INTERVAL)  # 10 tokens per replica
CLIENTS = 10  # per proxy
# Load in bursts: the pauses let the bucket refill while the replicas still hold slices,
# which is when leased tokens can add to what Redis itself grants in a window.
BURSTS, LOAD_SECONDS, PAUSE_SECONDS = 3, 0.35, 0.25


def _config(fake: FakeAws, redis: RedisProcess) -> dict[str, object]:
    return {
        "routes": [{"host": EC2, "upstream": fake.url}],
        "limits": [
            {
                "name": "describe",
                "service": "ec2",
                "operations": ["DescribeInstances"],
                "rate": RATE,
                "burst": BURST,
            }
        ],
        # Some requests queue (in Redis, in order), the rest are refused.
        "limit_policy": {"max_wait": "100ms"},
        "redis": {"url": redis.url, "timeout": "1s", "lease_interval": f"{LEASE_INTERVAL}s"},
        "retry": {"max_attempts": 1},
    }


async def _load(
    session: aiohttp.ClientSession,
    proxy: ProxyProcess,
    sequence: itertools.count[int],
    sent: dict[str, float],
    go: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        await go.wait()
        seq = str(next(sequence))
        sent[seq] = time.monotonic()  # before the request leaves: its admission is later
        async with session.get(
            f"{proxy.url}/?Action=DescribeInstances&Version=2016-11-15",
            headers={"Host": EC2, "x-test-seq": seq},
        ) as answer:
            await answer.read()


def _worst_excess(spans: list[tuple[float, float]], allowed: float) -> float:
    """The most any window [x, y] holds over `BURST + RATE * (y - x) + allowed`, counting the
    requests sent at or after x that reached the upstream by y: each was admitted inside
    the window, whatever the machine's delays, so a slow machine only lowers the counts."""
    worst = -BURST
    arrivals: list[float] = []  # of the requests sent at or after `start`, in order
    for start, arrived in sorted(spans, reverse=True):
        bisect.insort(arrivals, arrived)
        for count, until in enumerate(arrivals, start=1):
            worst = max(worst, count - (BURST + RATE * (until - start) + allowed))
    return worst


async def test_two_leasing_proxies_never_pass_burst_plus_rate_t_plus_their_slices(
    tmp_path: Path, fake_aws: FakeAws, redis_server: RedisProcess
) -> None:
    assert SLICE == 10
    config = _config(fake_aws, redis_server)
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    sent: dict[str, float] = {}
    sequence = itertools.count()
    go, stop = asyncio.Event(), asyncio.Event()
    with (
        proxy_process(first_dir, config) as first,
        proxy_process(second_dir, config) as second,
    ):
        connector = aiohttp.TCPConnector(limit=4 * CLIENTS)
        async with aiohttp.ClientSession(connector=connector) as session:
            load = [
                asyncio.create_task(_load(session, proxy, sequence, sent, go, stop))
                for proxy in (first, second)
                for _ in range(CLIENTS)
            ]
            try:
                for _ in range(BURSTS):
                    go.set()
                    await asyncio.sleep(LOAD_SECONDS)
                    go.clear()
                    await asyncio.sleep(PAUSE_SECONDS)
            finally:
                stop.set()
                go.set()
                await asyncio.gather(*load)

    spans = [(sent[seen.headers["x-test-seq"]], seen.arrived) for seen in fake_aws.seen]
    # Enough went through for the windows to mean something: the bucket's first burst at
    # least (a starved machine sends fewer requests, never more admissions).
    assert len(spans) >= BURST, len(spans)
    # The stated bound: two replicas holding one slice each. +1 for the clocks: Redis counts
    # on its TIME (wall clock, microseconds), this test on time.monotonic.
    assert _worst_excess(spans, 2 * SLICE + 1) <= 0
