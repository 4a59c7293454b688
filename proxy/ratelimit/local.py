"""The in-process limiter: every rule's buckets live in this proxy's memory.

A request covered by several rules goes when all of them allow it: the admission time is the
latest of the rules' earliest slots, and every rule's bucket is charged at that time in one
step with no await in between, so there is no hold-and-wait (no deadlock) and a refusal by any
rule charges none. Waiting is a sleep until the granted slot; slots are handed out in arrival
order, which is FIFO per bucket. A request charges each rule its cost (one token, or with
`cost: resources` one per resource it acts on), all rules in the same step; a cost larger
than a rule's burst can never fit, so such a request is refused at once, never queued (AWS
answers it RequestLimitExceeded too). A waiter cancelled (client gone) gives its slot back when no
later slot was stacked on it and always frees its place in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from proxy.aws.operations import Operation
from proxy.clock import Clock
from proxy.config.model import LimitPolicy, LimitRule
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit.bucket import BucketShape, earliest_admission, reserve
from proxy.ratelimit.ruleset import RuleState, build_ruleset

Sleep = Callable[[float], Awaitable[None]]
_SWEEP_CHUNK = 10_000  # buckets dropped per event-loop turn by the idle sweeper


@dataclass(frozen=True, slots=True)
class Grant:
    """One rule's bucket charged for one request, kept to take it back on cancellation."""

    state: RuleState
    key: str
    tat: float
    shape: BucketShape
    cost: float


class LocalRateLimiter:
    """RateLimiter over in-memory GCRA buckets (see proxy.ratelimit.RateLimiter)."""

    def __init__(
        self,
        rules: Sequence[LimitRule],
        policy: LimitPolicy,
        metrics: Metrics,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.policy = policy
        self.rules = build_ruleset(rules, metrics, clock.monotonic())
        self.waiting = 0
        self._sweeper: asyncio.Task[None] | None = None

    # -- the request path -------------------------------------------------------------------

    async def acquire(self, op: Operation) -> float:
        """Wait for a token of every rule covering `op`; seconds waited, or RateLimited."""
        coverage = self.rules.coverage(op)
        if not coverage.rules:
            return 0.0
        if self._sweeper is None:
            self.ensure_sweeper()
        now = self._clock.monotonic()
        if coverage.shadows:
            self.judge_shadows(coverage.shadows, op, now)
        enforcing = coverage.enforcing
        if not enforcing:
            return 0.0
        # Per rule: its bucket, its clock in tokens, the bucket's tat, the request's cost in
        # its tokens; and its own wait (s).
        plans: list[tuple[RuleState, str, float, float, int]] = []
        own: list[float] = []
        for state in enforcing:
            compiled, shape = state.compiled, state.shape
            cost = compiled.cost(op)
            if cost > shape.burst:
                raise self.refuse_oversized(state, cost)
            key = compiled.bucket_key(op)
            vnow = state.refill.at(now)
            tat = state.buckets.get(key, vnow)
            plans.append((state, key, vnow, tat, cost))
            own.append((earliest_admission(tat, vnow, shape, cost) - vnow) / state.refill.rate)
        wait = max(own)
        if wait > self.policy.max_wait or (wait > 0 and self.waiting >= self.policy.max_queue):
            raise self.refuse(enforcing, own, wait)
        grants: list[Grant] = []
        for state, key, vnow, tat, cost in plans:
            # Every rule is charged at the common admission time, in its own tokens.
            new_tat = reserve(tat, vnow + wait * state.rate, state.shape, cost)
            state.buckets.put(key, new_tat, vnow)
            if wait > 0:
                grants.append(Grant(state, key, new_tat, state.shape, cost))
        self.count_admitted(enforcing, own, now + wait)
        if wait <= 0:
            return 0.0
        await self.wait_in_queue(enforcing, wait, grants)
        return wait

    def judge_shadows(self, shadows: Sequence[RuleState], op: Operation, now: float) -> None:
        """Count what shadow rules would have done (charging only their own buckets)."""
        for state in shadows:
            cost = state.compiled.cost(op)
            key = state.compiled.bucket_key(op)
            vnow = state.refill.at(now)
            tat = state.buckets.get(key, vnow)
            allow = earliest_admission(tat, vnow, state.shape, cost)
            if cost > state.shape.burst or (allow - vnow) / state.rate > self.policy.max_wait:
                state.metrics.decisions["shadow_rejected"].inc()
                continue
            decision = "shadow_delayed" if allow > vnow else "shadow_allowed"
            state.metrics.decisions[decision].inc()
            state.buckets.put(key, reserve(tat, allow, state.shape, cost), vnow)

    def refuse(
        self, enforcing: Sequence[RuleState], own_waits: list[float], wait: float
    ) -> RateLimited:
        """Count a refusal against the rules that caused it and build the error."""
        culprits = [
            state
            for state, own in zip(enforcing, own_waits, strict=True)
            if own > self.policy.max_wait
        ]
        if not culprits:  # the queue is full: blame the rule that made the request wait
            culprits = [max(zip(own_waits, enforcing, strict=True), key=lambda p: p[0])[1]]
        for state in culprits:
            state.metrics.decisions["rejected"].inc()
        first = culprits[0]
        retry_after = max(wait - self.policy.max_wait, 1.0 / first.rate)
        reason = "wait too long" if wait > self.policy.max_wait else "queue full"
        return RateLimited(
            f"client-side rate limit {first.name!r} exceeded ({reason}); "
            f"retry after {retry_after:.3f}s",
            retry_after,
            first.name,
        )

    @staticmethod
    def refuse_oversized(state: RuleState, cost: int) -> RateLimited:
        """A request needing more tokens than the rule's bucket holds: no wait makes it fit."""
        state.metrics.decisions["rejected"].inc()
        return RateLimited(
            f"client-side rate limit {state.name!r} exceeded: the request needs {cost} "
            f"tokens, more than the bucket holds ({state.shape.burst:g})",
            state.shape.burst / state.rate,
            state.name,
        )

    def count_admitted(
        self, enforcing: Sequence[RuleState], own_waits: list[float], at: float
    ) -> None:
        for state, own in zip(enforcing, own_waits, strict=True):
            metrics = state.metrics
            metrics.decisions["delayed" if own > 0 else "allowed"].inc()
            metrics.wait.observe(own if own > 0 else 0.0)
            if state.adaptive is not None:
                state.adaptive.record_send(at)

    async def wait_in_queue(
        self, enforcing: Sequence[RuleState], wait: float, grants: Sequence[Grant] = ()
    ) -> None:
        """Sleep `wait` seconds as a queued request; on cancellation give back what we can."""
        self.waiting += 1
        for state in enforcing:
            state.waiting += 1
            state.metrics.queue_depth.inc()
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            for grant in grants:
                grant.state.buckets.take_back(grant.key, grant.tat, grant.shape, grant.cost)
            raise
        finally:
            self.waiting -= 1
            for state in enforcing:
                state.waiting -= 1
                state.metrics.queue_depth.dec()

    # -- feedback from AWS ------------------------------------------------------------------

    def observe_throttle(self, op: Operation) -> None:
        """AWS answered `op` with a throttling error: adaptive rules covering it slow down."""
        now = self._clock.monotonic()
        for state in self.rules.matching(op):
            if state.adaptive is not None:
                state.set_rate(state.adaptive.on_throttle(now), now)

    def observe_success(self, op: Operation) -> None:
        """AWS answered `op` without throttling: adaptive rules covering it may grow back."""
        matched = self.rules.coverage(op).rules
        if not matched:
            return
        now = self._clock.monotonic()
        for state in matched:
            adaptive = state.adaptive
            if adaptive is not None and adaptive.throttled_once:
                rate = adaptive.on_success(now)
                if rate != state.rate:
                    state.set_rate(rate, now)

    # -- lifecycle --------------------------------------------------------------------------

    def update_rules(self, rules: Sequence[LimitRule], policy: LimitPolicy) -> None:
        """Swap in reloaded rules; unchanged-shape rules keep their buckets."""
        self.rules = build_ruleset(rules, self._metrics, self._clock.monotonic(), self.rules)
        self.policy = policy

    def sweep_idle(self) -> int:
        """Forget every bucket that has refilled; returns how many were dropped."""
        now = self._clock.monotonic()
        return sum(state.buckets.sweep(state.refill.at(now)) for state in self.rules.states)

    def ensure_sweeper(self) -> None:
        """Start the background sweep of idle buckets once (needs a running loop)."""
        if self._sweeper is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to sweep for yet
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(max(self.policy.idle_expiry, 0.05))
            for state in self.rules.states:
                swept = _SWEEP_CHUNK
                while swept == _SWEEP_CHUNK:
                    vnow = state.refill.at(self._clock.monotonic())
                    swept = state.buckets.sweep(vnow, _SWEEP_CHUNK)
                    await asyncio.sleep(0)  # let requests run between chunks

    async def close(self) -> None:
        """Stop the idle sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
