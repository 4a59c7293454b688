"""Client-side rate limits: rules shaped like AWS's token buckets, local or shared via Redis.

The pipeline calls `acquire(op)` before sending and reports AWS's answers back through
`observe_throttle` / `observe_success` (adaptive rules). `build_rate_limiter` picks the
backend from the config; `effective_rules` is what `check-config` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from proxy.aws.operations import Operation
from proxy.clock import Clock
from proxy.config.model import Config, LimitPolicy, LimitRule
from proxy.observability.metrics import Metrics
from proxy.ratelimit.local import LocalRateLimiter
from proxy.ratelimit.rules import describe_rules, effective_rules

__all__ = [
    "LocalRateLimiter",
    "RateLimiter",
    "build_rate_limiter",
    "describe_rules",
    "effective_rules",
]


class RateLimiter(Protocol):
    """What the request pipeline needs from a limiter."""

    async def acquire(self, op: Operation) -> float:
        """Wait for a token of every rule covering `op`; returns seconds waited (0.0 at once).

        Raises RateLimited when the wait would pass `max_wait` or the queue is full.
        Cancelling the call (client gone) frees its place in the queue.
        """
        ...

    def observe_throttle(self, op: Operation) -> None:
        """AWS answered `op` with a throttling error."""
        ...

    def observe_success(self, op: Operation) -> None:
        """AWS answered `op` without throttling."""
        ...

    def update_rules(self, rules: Sequence[LimitRule], policy: LimitPolicy) -> None:
        """Reload: buckets survive for rules whose name and shape did not change."""
        ...

    async def close(self) -> None:
        """Release background tasks and connections."""
        ...


def build_rate_limiter(config: Config, metrics: Metrics, clock: Clock) -> RateLimiter:
    """The limiter the config asks for: shared through Redis when `redis` is set, else local."""
    rules = effective_rules(config)
    if config.redis is not None:
        from proxy.ratelimit.redis_limiter import RedisRateLimiter

        return RedisRateLimiter(rules, config.limit_policy, config.redis, metrics, clock)
    return LocalRateLimiter(rules, config.limit_policy, metrics, clock)
