"""The shared limiter: every replica draws from the same GCRA buckets, kept in Redis.

One Lua script decides and charges all of a request's buckets atomically with Redis's own
clock (`TIME`), so replicas need no synchronised clocks and two replicas cannot both take the
last token. What can be decided here is: requests no rule covers never reach Redis, shadow
rules are judged locally, and a bucket Redis just refused is refused locally until it would
fit again (envoy ratelimit's local over-limit cache).

Redis trouble never blocks the proxy: every call is bounded by `redis.timeout`; an error or
timeout counts `ratelimit_backend_errors_total{backend="redis"}` and, for `retry_interval`,
requests are let through (`fail_open`, the default) or refused, without waiting on Redis.
After that the next request tries Redis again, so the limiter is shared again as soon as
Redis is back.

A waiter cancelled before its slot (the client went away) frees its place in the local queue
at once, and gives its slot back in Redis when nothing was stacked on it since: a background
refund (bounded by `redis.timeout`) takes the grant back from each bucket whose TAT is still
the one this grant set. A bucket where a later request was already granted a slot keeps the
charge, as the local limiter does; so does every bucket when Redis cannot be reached, and
a request cancelled while its script was still running (its grant is not known here).

Keys are `{key_prefix}:<rule>:<bucket>`: the hash tag puts all of them in one Redis Cluster
slot, so the multi-key scripts never fail with CROSSSLOT (see proxy.ratelimit.redis_scripts).
The client is a plain (non-cluster) one: on Cluster, `redis.url` must reach the node serving
that slot; a MOVED answer counts as a backend error like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.aws.operations import Operation
from proxy.clock import Clock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics
from proxy.ratelimit.local import LocalRateLimiter, Sleep
from proxy.ratelimit.redis_scripts import (
    GCRA_SCRIPT,
    REFUND_SCRIPT,
    bucket_redis_key,
    hash_tag,
)
from proxy.ratelimit.ruleset import RuleState

log = get_logger("proxy.ratelimit.redis")

_OVER_LIMIT_CAP = 10_000  # local over-limit entries before expired ones are cleared


class RedisRateLimiter:
    """RateLimiter over buckets shared in Redis (see proxy.ratelimit.RateLimiter)."""

    def __init__(
        self,
        rules: Sequence[LimitRule],
        policy: LimitPolicy,
        config: RedisConfig,
        metrics: Metrics,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
        retry_interval: float = 1.0,
    ) -> None:
        self._local = LocalRateLimiter(rules, policy, metrics, clock, sleep=sleep)
        self._config = config
        self._clock = clock
        self._retry_interval = retry_interval
        self._errors = metrics.ratelimit_backend_errors_total.labels("redis")
        self._client = aioredis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(GCRA_SCRIPT)
        self._refund_script = self._client.register_script(REFUND_SCRIPT)
        self._tag = hash_tag(config.key_prefix)
        self._down_until = 0.0
        self._over_limit: dict[str, float] = {}
        self._refunds: set[asyncio.Task[None]] = set()

    async def acquire(self, op: Operation) -> float:
        """Wait for a token of every rule covering `op`, from the shared buckets."""
        local = self._local
        matched = local.rules.matching(op)
        if not matched:
            return 0.0
        local.ensure_sweeper()  # shadow rules keep local buckets
        now = self._clock.monotonic()
        enforcing = local.judge_shadows(matched, op, now)
        if not enforcing:
            return 0.0
        keys = [self._redis_key(state, op) for state in enforcing]
        self._refuse_if_known_over(enforcing, keys, now)
        if now < self._down_until:
            return self._without_redis(enforcing, now)
        policy = local.policy
        # A full queue admits only what can go at once.
        max_wait = policy.max_wait if local.waiting < policy.max_queue else 0.0
        args: list[int] = [round(max_wait * 1e6)]
        intervals_us: list[int] = []
        for state in enforcing:
            interval = 1.0 / state.rate
            intervals_us.append(round(interval * 1e6))
            args += [intervals_us[-1], round(state.shape.tolerance * interval * 1e6)]
        try:
            async with asyncio.timeout(self._config.timeout):
                reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            self._errors.inc()
            self._down_until = now + self._retry_interval
            log.warning("redis-limiter-unavailable", error=type(error).__name__)
            return self._without_redis(enforcing, now)
        count = len(keys)
        admitted, wait = int(reply[0]) == 1, int(reply[1]) / 1e6
        own_waits = [int(value) / 1e6 for value in reply[3 : 3 + count]]
        if not admitted:
            self._remember_over(keys, own_waits, now, max_wait)
            raise local.refuse(enforcing, own_waits, wait)
        local.count_admitted(enforcing, own_waits, now + wait)
        if wait <= 0:
            return 0.0
        try:
            await local.wait_in_queue(enforcing, wait)
        except asyncio.CancelledError:
            granted = [int(value) for value in reply[3 + count : 3 + 2 * count]]
            refund_args = [int(reply[2])]
            for tat, interval_us in zip(granted, intervals_us, strict=True):
                refund_args += [tat, interval_us]
            self._start_refund(keys, refund_args)
            raise
        return wait

    def _redis_key(self, state: RuleState, op: Operation) -> str:
        return bucket_redis_key(self._tag, state.name, state.compiled.bucket_key(op))

    def _start_refund(self, keys: list[str], args: list[int]) -> None:
        # In the background: the cancelled request must not wait on Redis to go away.
        task = asyncio.get_running_loop().create_task(self._refund(keys, args))
        self._refunds.add(task)
        task.add_done_callback(self._refunds.discard)

    async def _refund(self, keys: list[str], args: list[int]) -> None:
        try:
            async with asyncio.timeout(self._config.timeout):
                await self._refund_script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            # The slot stays charged: only this grant's buckets pay, and they refill.
            self._errors.inc()
            log.warning("redis-limiter-refund-failed", error=type(error).__name__)

    def _refuse_if_known_over(
        self, enforcing: list[RuleState], keys: list[str], now: float
    ) -> None:
        for state, key in zip(enforcing, keys, strict=True):
            until = self._over_limit.get(key)
            if until is not None and until > now:
                state.metrics.decisions["rejected"].inc()
                raise RateLimited(
                    f"client-side rate limit {state.name!r} exceeded (shared); "
                    f"retry after {until - now:.3f}s",
                    max(until - now, 1.0 / state.rate),
                    state.name,
                )

    def _remember_over(
        self, keys: list[str], own_waits: list[float], now: float, max_wait: float
    ) -> None:
        if len(self._over_limit) >= _OVER_LIMIT_CAP:
            self._over_limit = {k: u for k, u in self._over_limit.items() if u > now}
        for key, own in zip(keys, own_waits, strict=True):
            if own > max_wait:
                # Until then Redis would refuse this bucket anyway: no need to ask.
                self._over_limit[key] = now + own - max_wait

    def _without_redis(self, enforcing: list[RuleState], now: float) -> float:
        if not self._config.fail_open:
            state = enforcing[0]
            state.metrics.decisions["rejected"].inc()
            raise RateLimited(
                f"client-side rate limit {state.name!r}: shared limiter unavailable",
                self._retry_interval,
                state.name,
            )
        self._local.count_admitted(enforcing, [0.0] * len(enforcing), now)
        return 0.0

    def observe_throttle(self, op: Operation) -> None:
        self._local.observe_throttle(op)

    def observe_success(self, op: Operation) -> None:
        self._local.observe_success(op)

    def update_rules(self, rules: Sequence[LimitRule], policy: LimitPolicy) -> None:
        self._local.update_rules(rules, policy)

    async def close(self) -> None:
        """Stop the sweeper, let refunds in flight land (each bounded by the timeout), and
        close the connections."""
        await self._local.close()
        if self._refunds:
            await asyncio.gather(*self._refunds, return_exceptions=True)
        await self._client.aclose()
