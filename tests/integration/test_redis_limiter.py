"""The shared limiter against a real redis-server: one budget for two replicas, fail open
while Redis is gone, shared again once it is back."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from proxy.clock import SystemClock
from proxy.config import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.metrics import Metrics
from proxy.operations import Operation
from proxy.ratelimit.redis_limiter import RedisRateLimiter

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")

DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2")
RULE = LimitRule("describe", "ec2", rate=20, burst=10, operations=("DescribeInstances",))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisProcess:
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess(free_port())
    server.start()
    yield server
    server.stop()


def limiter(port: int, metrics: Metrics, *, fail_open: bool = True) -> RedisRateLimiter:
    config = RedisConfig(
        url=f"redis://127.0.0.1:{port}/0", key_prefix="tp-test", timeout=0.2, fail_open=fail_open
    )
    return RedisRateLimiter(
        [RULE],
        LimitPolicy(max_wait=0.0, max_queue=100),
        config,
        metrics,
        SystemClock(),
        retry_interval=0.2,
    )


@pytest.fixture
async def replicas(redis_server: RedisProcess) -> AsyncIterator[tuple[RedisRateLimiter, ...]]:
    pair = (
        limiter(redis_server.port, Metrics()),
        limiter(redis_server.port, Metrics()),
    )
    yield pair
    for replica in pair:
        await replica.close()


async def admitted(replica: RedisRateLimiter, tries: int) -> int:
    count = 0
    for _ in range(tries):
        try:
            await replica.acquire(DESCRIBE)
            count += 1
        except RateLimited:
            pass
    return count


async def test_two_replicas_share_one_budget(replicas: tuple[RedisRateLimiter, ...]) -> None:
    a, b = replicas
    # max_wait 0: only what the shared bucket holds goes, whichever replica asks.
    got = await asyncio.gather(admitted(a, 15), admitted(b, 15))
    assert 10 <= sum(got) <= 11  # burst 10 (+1 if a token refilled in between at 20/s)
    assert all(n > 0 for n in got)
    await asyncio.sleep(0.5)  # 10 tokens refill at 20/s
    again = await asyncio.gather(admitted(a, 10), admitted(b, 10))
    assert 9 <= sum(again) <= 12


async def test_queued_waits_come_from_the_shared_bucket(redis_server: RedisProcess) -> None:
    policy = LimitPolicy(max_wait=2.0, max_queue=100)
    config = RedisConfig(url=f"redis://127.0.0.1:{redis_server.port}/0", timeout=0.2)
    a = RedisRateLimiter([RULE], policy, config, Metrics(), SystemClock())
    b = RedisRateLimiter([RULE], policy, config, Metrics(), SystemClock())
    try:
        started = time.monotonic()
        waits = await asyncio.gather(*(r.acquire(DESCRIBE) for r in [a, b] * 10))
        elapsed = time.monotonic() - started
        # 20 requests, burst 10, rate 20/s: the last goes about 0.5 s in.
        assert sorted(waits)[9] == 0.0
        assert max(waits) == pytest.approx(0.5, abs=0.06)
        assert elapsed == pytest.approx(0.5, abs=0.2)
    finally:
        await a.close()
        await b.close()


async def test_redis_gone_fails_open_and_comes_back_shared(redis_server: RedisProcess) -> None:
    metrics = Metrics()
    replica = limiter(redis_server.port, metrics)
    errors = {"backend": "redis"}
    try:
        assert await admitted(replica, 15) == 10
        redis_server.stop()
        await asyncio.sleep(0.1)  # past the local memory of the refusals above (50 ms each)
        started = time.monotonic()
        assert await admitted(replica, 50) == 50  # fail open: everything goes
        assert time.monotonic() - started < 1.0  # and never waits on the dead Redis
        failures = metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", errors
        )
        assert failures is not None
        assert failures >= 1
        redis_server.start()  # same port, empty: a fresh shared bucket
        shared_again = False
        for _ in range(50):  # bounded: the limiter retries Redis every 0.2 s
            await asyncio.sleep(0.1)
            if await admitted(replica, 15) <= 11:
                shared_again = True
                break
        assert shared_again
    finally:
        await replica.close()


async def test_fail_closed_refuses_while_redis_is_gone(redis_server: RedisProcess) -> None:
    replica = limiter(redis_server.port, Metrics(), fail_open=False)
    try:
        redis_server.stop()
        with pytest.raises(RateLimited, match="unavailable"):
            await replica.acquire(DESCRIBE)
        assert await replica.acquire(Operation("sqs", "SendMessage")) == 0.0  # not covered
    finally:
        await replica.close()


async def test_local_over_limit_cache_refuses_without_asking(
    replicas: tuple[RedisRateLimiter, ...],
) -> None:
    a, _ = replicas
    assert await admitted(a, 10) == 10
    with pytest.raises(RateLimited):
        await a.acquire(DESCRIBE)
    assert a._over_limit  # remembered: the next refusal is local
    calls = 0
    original = a._script

    async def counting(**kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await original(**kwargs)  # type: ignore[arg-type]

    a._script = counting  # type: ignore[assignment]
    with pytest.raises(RateLimited):
        await a.acquire(DESCRIBE)
    assert calls == 0
