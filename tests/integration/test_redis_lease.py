"""Leased slices against a real redis-server: most requests decided without a round trip,
slices dropped on reload (a tightened rule gets no credit from them), and tokens already
held spent while Redis is gone, then the documented fail-closed refusal."""

from __future__ import annotations

import asyncio
import time
import uuid

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit.redis_limiter import RedisRateLimiter
from proxy.ratelimit.redis_scripts import bucket_redis_key, hash_tag
from tests.polling import eventually
from tests.servers import RedisProcess

DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2").for_budget(
    "111122223333", "us-east-1"
)
NO_WAIT = LimitPolicy(max_wait=0.0, max_queue=100)


def rule(rate: float, burst: float) -> LimitRule:
    return LimitRule("describe", "ec2", rate=rate, burst=burst, operations=("DescribeInstances",))


WIDE = rule(2000, 1000)  # slices of up to 100 tokens


def replica(
    port: int, prefix: str, *, fail_open: bool = True, metrics: Metrics | None = None
) -> RedisRateLimiter:
    config = RedisConfig(
        url=f"redis://127.0.0.1:{port}/0", key_prefix=prefix, timeout=0.5, fail_open=fail_open
    )
    return RedisRateLimiter(
        [WIDE], NO_WAIT, config, metrics or Metrics(), SystemClock(), retry_interval=5.0
    )


def held(limiter: RedisRateLimiter, prefix: str) -> int:
    key = bucket_redis_key(hash_tag(prefix, "111122223333/us-east-1"), "describe", "")
    return limiter._leases.held(key)


async def one_by_one(limiter: RedisRateLimiter, count: int) -> int:
    """Requests one after another, a millisecond apart (a request's own I/O, in a proxy)."""
    admitted = 0
    for _ in range(count):
        try:
            await limiter.acquire(DESCRIBE)
            admitted += 1
        except RateLimited:
            pass
        await asyncio.sleep(0.001)
    return admitted


async def test_slices_decide_most_requests_without_a_round_trip(
    redis_server: RedisProcess,
) -> None:
    limiter = replica(redis_server.port, f"tp-{uuid.uuid4().hex[:8]}")
    calls = 0
    for name in ("_script", "_lease_script"):
        original = getattr(limiter, name)

        async def counting(original: object = original, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return await original(**kwargs)  # type: ignore[operator]

        setattr(limiter, name, counting)
    try:
        assert await one_by_one(limiter, 300) == 300
        # Slices grow 4, 8, ... up to 100 tokens, refilled at half: a handful of lease calls
        # and a few requests that found their slice empty while its refill was out.
        assert calls <= 100, calls
    finally:
        await limiter.close()


async def test_a_reload_drops_held_slices(redis_server: RedisProcess) -> None:
    prefix = f"tp-{uuid.uuid4().hex[:8]}"
    limiter = replica(redis_server.port, prefix)
    try:
        assert await one_by_one(limiter, 200) == 200
        assert held(limiter, prefix) >= 20  # tokens this replica could spend at once
        limiter.update_rules([rule(100, 30)], NO_WAIT)  # slices of 3 from now on
        started = time.monotonic()
        results = await asyncio.gather(
            *(limiter.acquire(DESCRIBE) for _ in range(80)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        admitted = sum(1 for result in results if not isinstance(result, BaseException))
        # The bucket in Redis is capped at the new burst; the old slices give nothing.
        assert admitted <= 30 + 100 * elapsed + 1, (admitted, elapsed)
        assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))
    finally:
        await limiter.close()


async def test_held_tokens_are_spent_then_fail_closed_without_redis(
    redis_server: RedisProcess,
) -> None:
    prefix = f"tp-{uuid.uuid4().hex[:8]}"
    metrics = Metrics()
    limiter = replica(redis_server.port, prefix, fail_open=False, metrics=metrics)
    try:
        assert await one_by_one(limiter, 100) == 100
        # No refill still out: what the replica holds is all it will get.
        assert await eventually(lambda: not limiter._background, within=5.0)
        holding = held(limiter, prefix)
        assert holding > 0
        redis_server.stop()
        # Redis granted those tokens already; past them, fail closed refuses.
        assert await one_by_one(limiter, holding + 50) == holding
        errors = metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", {"backend": "redis"}
        )
        assert errors is not None
        assert errors >= 1
    finally:
        await limiter.close()
