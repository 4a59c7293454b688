"""The shared limiter against a real redis-server: one budget for two replicas, fail open
while Redis is gone, shared again once it is back; a cancelled waiter gives its slot back;
multi-rule scripts run on Redis Cluster (one hash slot)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit.redis_limiter import RedisRateLimiter
from tests.servers import RedisProcess, free_port

DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2")
RULE = LimitRule("describe", "ec2", rate=20, burst=10, operations=("DescribeInstances",))
# No leased slices here: these tests count what the shared bucket itself admits, and a
# replica's slice refill races its batch call to Redis (two connections), moving up to two
# tokens a replica between the slice and the batch. Slices have tests of their own
# (test_redis_lease.py, test_redis_lease_proxies.py).
NO_SLICES = 0.0


def limiter(port: int, metrics: Metrics, *, fail_open: bool = True) -> RedisRateLimiter:
    config = RedisConfig(
        url=f"redis://127.0.0.1:{port}/0",
        key_prefix="tp-test",
        timeout=0.2,
        fail_open=fail_open,
        lease_interval=NO_SLICES,
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


async def admitted_at_once(replica: RedisRateLimiter, tries: int) -> int:
    """`tries` acquires asked in one event-loop turn: one batch, which Redis decides at one
    moment of its clock, so no token refills in between however slow the machine is."""
    outcomes = await asyncio.gather(
        *(replica.acquire(DESCRIBE) for _ in range(tries)), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, RateLimited):
            raise outcome
    return sum(1 for outcome in outcomes if not isinstance(outcome, BaseException))


async def test_two_replicas_share_one_budget(replicas: tuple[RedisRateLimiter, ...]) -> None:
    a, b = replicas
    # max_wait 0: only what the shared bucket holds goes, whichever replica asks: burst 10,
    # plus what refills at 20/s while the asks last. The refills are bounded by the time the
    # asks took (a loaded machine only stretches it, so only the upper bound grows).
    started = time.monotonic()
    got = await asyncio.gather(admitted(a, 15), admitted(b, 15))
    took = time.monotonic() - started
    assert 10 <= sum(got) <= 10 + int(20 * took) + 1, (got, took)
    assert all(n > 0 for n in got)
    await asyncio.sleep(0.5)  # 10 tokens refill at 20/s (the bucket holds no more)
    started = time.monotonic()
    again = await asyncio.gather(admitted(a, 10), admitted(b, 10))
    took = time.monotonic() - started
    assert 9 <= sum(again) <= 10 + int(20 * took) + 1, (again, took)


async def test_queued_waits_come_from_the_shared_bucket(redis_server: RedisProcess) -> None:
    policy = LimitPolicy(max_wait=2.0, max_queue=100)
    config = RedisConfig(
        url=f"redis://127.0.0.1:{redis_server.port}/0", timeout=0.2, lease_interval=NO_SLICES
    )
    a = RedisRateLimiter([RULE], policy, config, Metrics(), SystemClock())
    b = RedisRateLimiter([RULE], policy, config, Metrics(), SystemClock())
    try:
        started = time.monotonic()
        waits = await asyncio.gather(*(r.acquire(DESCRIBE) for r in [a, b] * 10))
        elapsed = time.monotonic() - started
        # 20 requests, burst 10, rate 20/s: the 20th token of the shared bucket comes 0.5 s
        # after its first, which is taken after `started`, so the last request is admitted
        # 0.5 s after `started` at the earliest, whichever replica asked: neither had its own
        # bucket (20 would have gone at once). That bound is measured from the cause (the
        # test's start), not from the waits: a loaded machine that spreads the asks shortens
        # each wait, never the schedule. No wait exceeds the schedule's 0.5 s (+ rounding).
        assert sorted(waits)[9] == 0.0
        assert max(waits) <= 0.56
        assert elapsed >= 0.45
        # Only a stalled loop stretches this one (it guards against waiting twice over).
        assert elapsed < 1.5
    finally:
        await a.close()
        await b.close()


async def test_redis_gone_fails_open_and_comes_back_shared(redis_server: RedisProcess) -> None:
    metrics = Metrics()
    replica = limiter(redis_server.port, metrics)
    errors = {"backend": "redis"}
    try:
        # Asked at once: exactly the burst (asked one by one, a slow machine lets tokens
        # refill in between at 20/s).
        assert await admitted_at_once(replica, 15) == 10
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
        got = 15
        for _ in range(50):  # bounded: the limiter retries Redis every 0.2 s
            await asyncio.sleep(0.1)
            # Failing open admits all 15; a batch that reached Redis (all or none of it
            # does) meets the fresh bucket at one moment: exactly its burst.
            got = await admitted_at_once(replica, 15)
            if got < 15:
                break
        assert got == 10
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
        return await original(**kwargs)

    a._script = counting
    with pytest.raises(RateLimited):
        await a.acquire(DESCRIBE)
    assert calls == 0


# One token a second: each scenario below must run within one interval of its first grant
# (its waiters are granted before their slots), so a long interval leaves a loaded machine
# room; the tests read the grants from Redis instead of waiting for the slots.
SLOW = LimitRule("slow", "ec2", rate=1, burst=1, operations=("DescribeInstances",))
SLOT_US = 1_000_000
WAITING = LimitPolicy(max_wait=10.0, max_queue=100)


def slow_replica(port: int, metrics: Metrics | None = None) -> RedisRateLimiter:
    config = RedisConfig(
        url=f"redis://127.0.0.1:{port}/0",
        key_prefix="tp-refund",
        timeout=0.5,
        lease_interval=NO_SLICES,
    )
    return RedisRateLimiter([SLOW], WAITING, config, metrics or Metrics(), SystemClock())


async def granted_until(port: int) -> int:
    """The TAT of SLOW's one bucket, in Redis's microseconds (the value is `tat:interval:burst`,
    see proxy.ratelimit.redis_scripts): the moment after the latest grant's slot. Read from
    Redis, it is the limiter's decision itself, whenever the test gets to look at it."""
    raw = aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        keys = [key async for key in raw.scan_iter(match="*tp-refund*:slow:*")]
        assert len(keys) == 1, keys
        value = await raw.get(keys[0])
        assert value is not None
        text = value if isinstance(value, str) else value.decode()
        return int(text.split(":", 1)[0])
    finally:
        await raw.aclose()


async def queued(replica: RedisRateLimiter, waiting: int) -> asyncio.Task[float]:
    """An acquire on `replica`, returned once Redis granted it a slot ahead and it sleeps
    (polled, bounded): its grant is in Redis then."""
    task = asyncio.create_task(replica.acquire(DESCRIBE))
    for _ in range(400):
        await asyncio.sleep(0.005)
        if replica._local.waiting >= waiting or task.done():
            break
    assert replica._local.waiting == waiting, "the acquire was never queued"
    return task


async def cancel_while_waiting(replica: RedisRateLimiter) -> None:
    """Queue one acquire, let Redis grant it a slot ahead, then drop it (the client left)."""
    waiter = await queued(replica, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert replica._local.waiting == 0  # its place in the queue is free at once
    await asyncio.gather(*replica._refunds)  # the background refund has landed


async def cancelled(*tasks: asyncio.Task[float]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def slow_pair(redis_server: RedisProcess) -> AsyncIterator[tuple[RedisRateLimiter, ...]]:
    pair = (slow_replica(redis_server.port), slow_replica(redis_server.port))
    yield pair
    for replica in pair:
        await replica.close()


async def test_a_cancelled_waiter_gives_its_slot_back(
    slow_pair: tuple[RedisRateLimiter, ...], redis_server: RedisProcess
) -> None:
    a, b = slow_pair
    assert await a.acquire(DESCRIBE) == 0.0  # the one token of the burst
    slot = await granted_until(redis_server.port)  # the next slot: one interval on
    await cancel_while_waiting(a)  # it held that slot
    assert await granted_until(redis_server.port) == slot  # given back
    # The other replica gets that slot, not the one after it. Compared in Redis's clock, on
    # the grants themselves: a loaded machine delays when the test looks, not what was granted.
    other = await queued(b, 1)
    try:
        assert await granted_until(redis_server.port) == slot + SLOT_US
    finally:
        await cancelled(other)


async def test_a_slot_with_a_later_grant_on_it_stays_charged(
    slow_pair: tuple[RedisRateLimiter, ...], redis_server: RedisProcess
) -> None:
    a, b = slow_pair
    assert await a.acquire(DESCRIBE) == 0.0
    slot = await granted_until(redis_server.port)
    first = await queued(a, 1)  # granted `slot`
    second = await queued(b, 1)  # stacked on it: granted `slot` + one interval
    third: asyncio.Task[float] | None = None
    try:
        assert await granted_until(redis_server.port) == slot + 2 * SLOT_US
        await cancelled(first)
        await asyncio.gather(*a._refunds)
        # Not refunded: a newcomer goes after the second waiter, never beside it.
        assert await granted_until(redis_server.port) == slot + 2 * SLOT_US
        third = await queued(b, 2)
        assert await granted_until(redis_server.port) == slot + 3 * SLOT_US
    finally:
        # No task left behind (their refunds land before the replicas close).
        await cancelled(second, *([third] if third else []))


async def test_refund_failures_count_and_never_raise(redis_server: RedisProcess) -> None:
    metrics = Metrics()
    a = slow_replica(redis_server.port, metrics)
    try:
        assert await a.acquire(DESCRIBE) == 0.0
        waiter = await queued(a, 1)
        redis_server.stop()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.gather(*a._refunds)
        errors = metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", {"backend": "redis"}
        )
        assert errors == 1
    finally:
        await a.close()


@pytest.fixture
def redis_cluster_node(tmp_path: Path) -> Iterator[RedisProcess]:
    """A one-node Redis Cluster holding every slot: it answers CROSSSLOT like a real one."""
    server = RedisProcess(
        free_port(),
        extra_args=(
            "--cluster-enabled",
            "yes",
            "--cluster-port",  # the bus, else port + 10000 (which may be taken or > 65535)
            str(free_port()),
            "--cluster-config-file",
            str(tmp_path / "nodes.conf"),
            "--dir",
            str(tmp_path),
        ),
    )
    server.start()
    yield server
    server.stop()


async def cluster_ready(port: int) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        await client.cluster("ADDSLOTSRANGE", "0", "16383")
        for _ in range(100):  # bounded: the node marks itself ok within a few ticks
            info = await client.cluster("INFO")  # parsed by redis-py into a dict
            if info.get("cluster_state") == "ok":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("cluster never reached state ok")
    finally:
        await client.aclose()


async def test_rules_sharing_a_request_run_in_one_cluster_slot(
    redis_cluster_node: RedisProcess,
) -> None:
    port = redis_cluster_node.port
    await cluster_ready(port)
    raw = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        # The node enforces slots: two plain keys in one script are refused...
        with pytest.raises(ResponseError, match="same slot"):  # CROSSSLOT
            await raw.eval("return 1", 2, "tp:describe:", "tp:ec2-all:")
    finally:
        await raw.aclose()
    rules = [RULE, LimitRule("ec2-all", "ec2", rate=20, burst=5)]
    metrics = Metrics()
    config = RedisConfig(
        url=f"redis://127.0.0.1:{port}/0", key_prefix="tp", timeout=0.5, lease_interval=NO_SLICES
    )
    replica = RedisRateLimiter(
        rules, LimitPolicy(max_wait=0.0, max_queue=100), config, metrics, SystemClock()
    )
    try:
        # ...while the limiter's keys, all tagged {tp}, are charged together.
        # The tighter rule (burst 5) decides; asked at once, so no token refills meanwhile.
        assert await admitted_at_once(replica, 8) == 5
        errors = metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", {"backend": "redis"}
        )
        assert not errors
    finally:
        await replica.close()
