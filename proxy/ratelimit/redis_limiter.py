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
Redis is back. A waiter cancelled here keeps its slot in Redis (charged, not given back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.clock import Clock
from proxy.config import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.logs import get_logger
from proxy.metrics import Metrics
from proxy.operations import Operation
from proxy.ratelimit.local import LocalRateLimiter, Sleep
from proxy.ratelimit.ruleset import RuleState

log = get_logger("proxy.ratelimit.redis")

# KEYS: one per bucket. ARGV: max_wait_us, then interval_us and tolerance_us per key.
# Returns {admitted (1|0), wait_us, own_wait_us per key}. Times are microseconds of Redis TIME.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local admit = now
local tats, own = {}, {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local allow = tat + interval - tolerance
  if allow < now then allow = now end
  own[i] = allow - now
  if allow > admit then admit = allow end
end
local wait = admit - now
local reply = {0, wait}
for i = 1, #KEYS do reply[i + 2] = own[i] end
if wait > max_wait then return reply end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local base = tats[i]
  if admit > base then base = admit end
  local tat = base + interval
  local ttl = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
end
reply[1] = 1
return reply
"""

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
        self._down_until = 0.0
        self._over_limit: dict[str, float] = {}

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
        for state in enforcing:
            interval = 1.0 / state.rate
            args += [round(interval * 1e6), round(state.shape.tolerance * interval * 1e6)]
        try:
            async with asyncio.timeout(self._config.timeout):
                reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            self._errors.inc()
            self._down_until = now + self._retry_interval
            log.warning("redis-limiter-unavailable", error=type(error).__name__)
            return self._without_redis(enforcing, now)
        admitted, wait = int(reply[0]) == 1, int(reply[1]) / 1e6
        own_waits = [int(value) / 1e6 for value in reply[2:]]
        if not admitted:
            self._remember_over(keys, own_waits, now, max_wait)
            raise local.refuse(enforcing, own_waits, wait)
        local.count_admitted(enforcing, own_waits, now + wait)
        if wait <= 0:
            return 0.0
        await local.wait_in_queue(enforcing, wait)
        return wait

    def _redis_key(self, state: RuleState, op: Operation) -> str:
        return f"{self._config.key_prefix}:{state.name}:{state.compiled.bucket_key(op)}"

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
        await self._local.close()
        await self._client.aclose()
