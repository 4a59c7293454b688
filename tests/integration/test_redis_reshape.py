"""The shared limiter across reloads and budgets, against a real redis-server: a bucket keeps
its level capped at the new burst (no debt after a shrink, no credit after a growth), one
script call serves a turn's requests, and each region of an account has its own budget."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit.redis_limiter import RedisRateLimiter
from tests.servers import RedisProcess

DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2").for_budget(
    "111122223333", "us-east-1"
)
NO_WAIT = LimitPolicy(max_wait=0.0, max_queue=100)


def rule(rate: float, burst: float) -> LimitRule:
    return LimitRule("describe", "ec2", rate=rate, burst=burst, operations=("DescribeInstances",))


def replica(port: int, rules: list[LimitRule], prefix: str) -> RedisRateLimiter:
    config = RedisConfig(url=f"redis://127.0.0.1:{port}/0", key_prefix=prefix, timeout=0.5)
    return RedisRateLimiter(rules, NO_WAIT, config, Metrics(), SystemClock())


async def admitted(limiter: RedisRateLimiter, op: Operation, tries: int) -> int:
    """Concurrent tries, as a turn's worth of requests: they share script calls."""
    results = await asyncio.gather(
        *(limiter.acquire(op) for _ in range(tries)), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, RateLimited):
            raise result
    return sum(1 for result in results if not isinstance(result, BaseException))


@pytest.fixture
def prefix() -> str:
    return f"tp-{uuid.uuid4().hex[:8]}"


async def test_shrink_leaves_no_debt_in_redis(redis_server: RedisProcess, prefix: str) -> None:
    limiter = replica(redis_server.port, [rule(1000, 1000)], prefix)
    try:
        assert await admitted(limiter, DESCRIBE, 20) == 20
        limiter.update_rules([rule(1, 1)], NO_WAIT)
        # 980 tokens of room, capped at the new burst of 1: the next request goes at once.
        assert await admitted(limiter, DESCRIBE, 5) == 1
    finally:
        await limiter.close()


async def test_growth_gives_no_credit_in_redis(redis_server: RedisProcess, prefix: str) -> None:
    limiter = replica(redis_server.port, [rule(0.5, 3)], prefix)
    other = replica(redis_server.port, [rule(0.5, 3)], prefix)
    try:
        assert await admitted(limiter, DESCRIBE, 3) == 3
        limiter.update_rules([rule(0.5, 100)], NO_WAIT)
        assert await admitted(limiter, DESCRIBE, 5) == 0  # empty stays empty
        # The replica still on the old rule sees the same empty bucket.
        assert await admitted(other, DESCRIBE, 5) == 0
    finally:
        await limiter.close()
        await other.close()


async def test_each_region_draws_from_its_own_shared_budget(
    redis_server: RedisProcess, prefix: str
) -> None:
    a = replica(redis_server.port, [rule(0.5, 5)], prefix)
    b = replica(redis_server.port, [rule(0.5, 5)], prefix)
    west = DESCRIBE.for_budget("111122223333", "eu-west-1")
    try:
        assert await admitted(a, DESCRIBE, 4) + await admitted(b, DESCRIBE, 4) == 5
        assert await admitted(a, west, 4) + await admitted(b, west, 4) == 5
    finally:
        await a.close()
        await b.close()


async def test_concurrent_requests_share_one_script_call(
    redis_server: RedisProcess, prefix: str
) -> None:
    limiter = replica(redis_server.port, [rule(1000, 1000)], prefix)
    calls = 0
    original = limiter._script

    async def counting(**kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await original(**kwargs)

    limiter._script = counting
    try:
        assert await admitted(limiter, DESCRIBE, 50) == 50
        assert calls == 1
    finally:
        await limiter.close()
