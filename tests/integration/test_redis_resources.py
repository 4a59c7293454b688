"""Rules that charge by resources, shared through a real redis-server: the script charges a
request's cost in one step, and a request costing more than one token never spends a leased
slice (a slice is spent one token per request)."""

from __future__ import annotations

import uuid

import pytest

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit.redis_limiter import RedisRateLimiter
from proxy.ratelimit.redis_scripts import bucket_redis_key, hash_tag
from tests.polling import eventually
from tests.servers import RedisProcess

ACCOUNT, REGION = "111122223333", "us-east-1"
NO_WAIT = LimitPolicy(max_wait=0.0, max_queue=100)


def terminate(instances: int) -> Operation:
    op = Operation("ec2", "TerminateInstances", protocol="ec2", resources=instances)
    return op.for_budget(ACCOUNT, REGION)


def resource_rule(rate: float, burst: float) -> LimitRule:
    return LimitRule(
        "terminate-resources", "ec2", rate, burst, ("TerminateInstances",), cost="resources"
    )


def replica(port: int, prefix: str, rule: LimitRule, lease_interval: float) -> RedisRateLimiter:
    config = RedisConfig(
        url=f"redis://127.0.0.1:{port}/0",
        key_prefix=prefix,
        timeout=0.5,
        lease_interval=lease_interval,
    )
    return RedisRateLimiter([rule], NO_WAIT, config, Metrics(), SystemClock(), retry_interval=5.0)


async def admits(limiter: RedisRateLimiter, instances: int) -> bool:
    try:
        await limiter.acquire(terminate(instances))
    except RateLimited:
        return False
    return True


async def test_two_replicas_share_a_resource_budget(redis_server: RedisProcess) -> None:
    prefix = f"tp-res-{uuid.uuid4().hex[:8]}"
    # One instance token per 100 s: nothing refills while the test runs. No slices (the
    # bucket refills too slowly for one), so every request is decided by the script.
    rule = resource_rule(rate=0.01, burst=5)
    a = replica(redis_server.port, prefix, rule, 0.05)
    b = replica(redis_server.port, prefix, rule, 0.05)
    try:
        assert await admits(a, 3)
        assert not await admits(b, 3)  # 2 tokens left in the shared bucket
        assert await admits(b, 2)
        assert not await admits(a, 1)
        # More than the bucket holds: refused at once, by the rule's name, on any replica.
        with pytest.raises(RateLimited) as refused:
            await a.acquire(terminate(6))
        assert refused.value.rule == "terminate-resources"
        assert "needs 6 tokens" in str(refused.value)
    finally:
        await a.close()
        await b.close()


async def test_a_request_of_several_tokens_bypasses_the_slice(redis_server: RedisProcess) -> None:
    prefix = f"tp-res-{uuid.uuid4().hex[:8]}"
    # Slices of up to min(100 / 10, 0.001 x 10,000) = 10 tokens; refill one token per 1,000 s.
    rule = resource_rule(rate=0.001, burst=100)
    a = replica(redis_server.port, prefix, rule, 10_000.0)
    b = replica(redis_server.port, prefix, rule, 10_000.0)
    key = bucket_redis_key(hash_tag(prefix, f"{ACCOUNT}/{REGION}"), "terminate-resources", "")
    try:
        # One instance: decided in Redis (no slice yet), and a first slice of 4 is leased.
        assert await admits(a, 1)
        assert await eventually(lambda: a._leases.held(key) == 4, within=10.0)
        # 100 - 1 - 4 = 95 tokens are left in Redis. 95 instances are charged there in full,
        # never from the slice: the slice still holds its 4.
        assert await admits(a, 95)
        assert a._leases.held(key) == 4
        # The shared bucket is empty now: the other replica (no slice) is refused.
        assert not await admits(b, 1)
        assert not await admits(a, 2)  # a's slice does not pay for 2 either
        # One instance on `a` is spent from its slice, as any one-token request.
        assert await admits(a, 1)
        assert a._leases.held(key) == 3
    finally:
        await a.close()
        await b.close()
