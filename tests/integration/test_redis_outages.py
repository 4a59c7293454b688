"""The shared limiter's memory of refusals and its Redis outages, against a real redis-server:
the over-limit map stays within its cap under a spray of keys, a refusal for a full queue is
not remembered as the bucket's, and an outage is logged and counted once, not per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit import overlimit
from proxy.ratelimit.redis_limiter import RedisRateLimiter
from tests.servers import RedisProcess

NO_SLICES = 0.0  # every decision in Redis: these tests count calls and refusals
# One token per 1000 s: a prefix refused once stays refused for the whole test.
PER_PREFIX = LimitRule(
    "reads", "s3", rate=0.001, burst=1, operations=("GetObject",), per="prefix", prefix_depth=1
)


def get_object(prefix: str) -> Operation:
    return Operation("s3", "GetObject", protocol="rest-xml", bucket="media", key=f"{prefix}/o")


def limiter(
    port: int, rule: LimitRule, policy: LimitPolicy, metrics: Metrics | None = None
) -> RedisRateLimiter:
    config = RedisConfig(url=f"redis://127.0.0.1:{port}/0", timeout=0.5, lease_interval=NO_SLICES)
    return RedisRateLimiter(
        [rule], policy, config, metrics or Metrics(), SystemClock(), retry_interval=0.2
    )


async def outcomes(replica: RedisRateLimiter, ops: list[Operation]) -> list[object]:
    """Acquires asked in one event-loop turn (one batch call)."""
    return list(await asyncio.gather(*(replica.acquire(op) for op in ops), return_exceptions=True))


async def test_the_over_limit_map_stays_within_its_cap_under_a_spray_of_keys(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 100
    monkeypatch.setattr(overlimit, "OVER_LIMIT_CAP", cap)
    replica = limiter(redis_server.port, PER_PREFIX, LimitPolicy(max_wait=0.0, max_queue=100))
    try:
        for round_ in range(5):
            ops = [get_object(f"r{round_}-{n}") for n in range(cap)]
            assert await outcomes(replica, ops) == [0.0] * cap  # each prefix's one token
            refused = await outcomes(replica, ops)
            assert all(isinstance(outcome, RateLimited) for outcome in refused)
            # Every one of these is remembered until long after the test ends: a map that
            # only dropped expired entries would hold all of them.
            assert len(replica._over_limit) <= cap, (round_, len(replica._over_limit))
        # What was forgotten is still refused, by Redis.
        with pytest.raises(RateLimited):
            await replica.acquire(get_object("r0-0"))
    finally:
        await replica.close()


async def test_a_refusal_for_a_full_queue_does_not_hold_back_later_waiters(
    redis_server: RedisProcess,
) -> None:
    # One token per 5 s: every step below runs well inside one interval, even when slow.
    rule = LimitRule("slow", "s3", rate=0.2, burst=1, operations=("GetObject",))
    replica = limiter(redis_server.port, rule, LimitPolicy(max_wait=30.0, max_queue=1))
    op = get_object("any")
    waiters: list[asyncio.Task[float]] = []

    async def queued() -> asyncio.Task[float]:
        task = asyncio.create_task(replica.acquire(op))
        waiters.append(task)
        for _ in range(400):  # bounded: until Redis granted it a slot ahead and it sleeps
            await asyncio.sleep(0.005)
            if replica._local.waiting or task.done():
                break
        return task

    try:
        assert await replica.acquire(op) == 0.0  # the burst
        first = await queued()
        assert replica._local.waiting == 1  # granted the next slot: the queue is full
        with pytest.raises(RateLimited, match="queue full"):
            await replica.acquire(op)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.gather(*replica._background)  # its slot is given back in Redis
        # The queue has room again and the bucket's next slot is within max_wait: this
        # request waits for it, as Redis (and the local limiter) would have it.
        second = await queued()
        assert not second.done(), second.exception()
        assert replica._local.waiting == 1
    finally:
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await replica.close()


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> int:
    return sum(1 for entry in logs if entry["event"] == name)


async def eventually(check: Callable[[], bool], replica: RedisRateLimiter) -> None:
    """Poll (bounded) with one request at a time until `check` holds: the limiter retries
    Redis every retry_interval (0.2 s)."""
    for _ in range(100):
        await replica.acquire(get_object("poll"))
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_an_outage_is_logged_and_counted_once_not_per_request(
    redis_server: RedisProcess,
) -> None:
    metrics = Metrics()
    rule = LimitRule("reads", "s3", rate=1000, burst=1000, operations=("GetObject",))
    replica = limiter(redis_server.port, rule, LimitPolicy(max_wait=0.0), metrics)

    def errors() -> float:
        value = metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", {"backend": "redis"}
        )
        return value or 0.0

    try:
        with capture_logs() as logs:
            assert await outcomes(replica, [get_object("a")] * 5) == [0.0] * 5
            redis_server.stop()
            # 200 requests in one failed call: all go (fail open), one error, one line.
            assert await outcomes(replica, [get_object("b")] * 200) == [0.0] * 200
            assert errors() == 1
            assert events(logs, "redis-limiter-unavailable") == 1
            # Retries that fail again are the same outage: counted, not logged again.
            await eventually(lambda: errors() >= 3, replica)
            assert events(logs, "redis-limiter-unavailable") == 1
            redis_server.start()
            await eventually(lambda: events(logs, "redis-limiter-available") > 0, replica)
            assert events(logs, "redis-limiter-available") == 1
            assert events(logs, "redis-limiter-unavailable") == 1
    finally:
        await replica.close()


async def test_a_restarted_redis_is_shared_again_at_once_over_stale_connections(
    redis_server: RedisProcess,
) -> None:
    metrics = Metrics()
    rule = LimitRule("reads", "s3", rate=0.001, burst=3, operations=("GetObject",))
    replica = limiter(redis_server.port, rule, LimitPolicy(max_wait=0.0), metrics)
    try:
        # Connections in the pool, as under load; then Redis restarts (empty, same port) and
        # every one of them is dead without the client knowing yet.
        await asyncio.gather(*(replica._client.ping() for _ in range(4)))
        redis_server.stop()
        redis_server.start()
        # Decided in Redis, not failed open: the burst of 3 and no more.
        got = [await outcomes(replica, [get_object("a")]) for _ in range(5)]
        assert got[:3] == [[0.0]] * 3
        assert all(isinstance(one[0], RateLimited) for one in got[3:]), got
        errors = metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", {"backend": "redis"}
        )
        assert not errors
    finally:
        await replica.close()


async def test_a_loosened_rule_admits_at_its_new_rate_after_refusals(
    redis_server: RedisProcess,
) -> None:
    replica = limiter(redis_server.port, PER_PREFIX, LimitPolicy(max_wait=0.0))
    op = get_object("a")
    try:
        assert await replica.acquire(op) == 0.0
        with pytest.raises(RateLimited):
            await replica.acquire(op)  # remembered: the next token is 1000 s away
        # Loosened to 1000/s: the spent token refills in 1 ms. Remembered refusals are
        # forgotten, so the next tries reach Redis, which must rescale the bucket once and
        # keep it: rescaled afresh from the old TAT on every refusal, it would go on
        # refilling at the old rate (1000 s for the token).
        replica.update_rules([replace(PER_PREFIX, rate=1000.0)], replica._local.policy)
        for _ in range(100):  # bounded: until the 1 ms has passed on Redis's clock
            await asyncio.sleep(0.01)
            (outcome,) = await outcomes(replica, [op])
            if outcome == 0.0:
                break
            assert "shared" not in str(outcome), outcome  # Redis refused, not the memory
        else:
            raise AssertionError("never admitted under the loosened rule")
    finally:
        await replica.close()


async def test_a_tightened_rule_keeps_the_debt_in_tokens_after_refusals(
    redis_server: RedisProcess,
) -> None:
    fast = LimitRule("reads", "s3", rate=1.0, burst=5, operations=("GetObject",))
    replica = limiter(redis_server.port, fast, LimitPolicy(max_wait=0.0))
    raw = aioredis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    op = get_object("a")
    try:
        assert await outcomes(replica, [op] * 5) == [0.0] * 5  # 5 tokens owed: 5 s at 1/s
        # Tightened to one token per 100 s: the 5 tokens owed now take 500 s.
        replica.update_rules([replace(fast, rate=0.01)], replica._local.policy)
        with pytest.raises(RateLimited):
            await replica.acquire(op)
        # The refusal kept the rescaled bucket: owed at the new rate from now on. Rescaled
        # afresh from the old TAT on every read, its debt would be gone in 5 s (then the
        # burst of 5 goes again), long before the new rule's 500 s.
        (key,) = [key async for key in raw.scan_iter(match="*:reads:*")]
        value = await raw.get(key)
        assert value is not None
        text = value if isinstance(value, str) else value.decode()
        tat, interval, _ = text.split(":")
        seconds, micros = await raw.time()
        assert interval == "100000000"
        assert int(tat) - (seconds * 1_000_000 + micros) > 400_000_000
    finally:
        await raw.aclose()
        await replica.close()
