"""The shared limiter: every replica draws from the same GCRA buckets, kept in Redis.

One Lua script decides and charges all of a request's buckets atomically with Redis's own
clock (`TIME`), so replicas need no synchronised clocks and two replicas cannot both take the
last token. What can be decided here is: requests no rule covers never reach Redis, shadow
rules are judged locally, and a bucket Redis just refused is refused locally until it would
fit again (envoy ratelimit's local over-limit cache).

Redis trouble never blocks the proxy: every call is bounded by `redis.timeout`; a failed
call counts `ratelimit_backend_errors_total{backend="redis"}` once (however many requests it
carried) and, for `retry_interval`, requests are let through (`fail_open`, the default) or
refused, without waiting on Redis. After that the next request tries Redis again, so the
limiter is shared again as soon as Redis is back. An outage is logged when it starts and
when Redis answers again, not per request or per retry.

A waiter cancelled before its slot (the client went away) frees its place in the local queue
at once, and gives its slot back in Redis when nothing was stacked on it since: a background
refund (bounded by `redis.timeout`) takes the grant back from each bucket whose TAT is still
the one this grant set. A bucket where a later request was already granted a slot keeps the
charge, as the local limiter does; so does every bucket when Redis cannot be reached, and
a request cancelled while its script was still running (its grant is not known here).

Most requests need no round trip at all: each replica leases slices of a bucket's spare
room (proxy.ratelimit.lease) and admits from them in memory, refilling in the background;
in any window a bucket admits at most `burst + rate*t + replicas * slice`. A request that
would wait, or whose slice is empty, is decided by Redis as below; so is every request that
costs a rule more than one token (`cost: resources`), with its cost passed to the script: a
slice is spent one token per request.

Requests share round trips: what the requests of one event-loop turn ask of Redis goes out
as one script call (per budget slot on Cluster), which decides them one after another, each
atomically over all its buckets, exactly as one call per request would. Calls of successive
turns overlap on the connection pool (pipelining), so no request waits for another's batch.

Keys are `{key_prefix:account/region}:<rule>:<bucket>`: one Redis Cluster slot per budget
(see proxy.ratelimit.redis_scripts). With `redis.cluster` (or a `redis+cluster://` URL) the
cluster client routes each call to the node of its slot. A request whose rules have different
scopes (one per account and region, one per region) touches two slots there: it is decided
slot by slot, all or nothing (a refusal by one slot gives back what the others granted), and
a slot that granted an earlier moment than another made the request wait counts its token
from that earlier moment: at most `max_wait` early, for such mixed requests on Cluster only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.aws.operations import Operation
from proxy.clock import Clock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics
from proxy.ratelimit.lease import LeaseBook, lease_size
from proxy.ratelimit.local import LocalRateLimiter, Sleep
from proxy.ratelimit.overlimit import OverLimitMemory
from proxy.ratelimit.redis_scripts import (
    GCRA_BATCH_SCRIPT,
    LEASE_SCRIPT,
    REFUND_SCRIPT,
    bucket_redis_key,
    hash_tag,
)
from proxy.ratelimit.ruleset import RuleState

log = get_logger("proxy.ratelimit.redis")

_NEVER = 2**62  # a refund's "slot moment" for a grant whose request never went
_MAX_IN_FLIGHT = 2  # batch calls out at once; later asks gather behind them
_TAG_CACHE = 4096  # budget hash tags remembered (accounts x regions)


@dataclass(slots=True)
class _Ask:
    """What one request (or, on Cluster, its part in one slot) asks of Redis in a batch."""

    keys: list[str]
    args: list[str]  # max_wait_us, then interval_us, burst and cost (tokens) per key
    charges_us: list[int]  # per key: what the grant moved the TAT (interval_us x cost)
    reply: asyncio.Future[list[int]] = field(default_factory=lambda: _new_future())


def _new_future() -> asyncio.Future[list[int]]:
    return asyncio.get_running_loop().create_future()


@dataclass(frozen=True, slots=True)
class _Verdict:
    """A request's combined answer: admitted?, its wait, and each rule's own wait."""

    admitted: bool
    wait: float
    own_waits: list[float]


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
        self._client: Any = _client(config)
        self._script = self._client.register_script(GCRA_BATCH_SCRIPT)
        self._refund_script = self._client.register_script(REFUND_SCRIPT)
        self._lease_script = self._client.register_script(LEASE_SCRIPT)
        self._leases = LeaseBook()
        self._prefix = config.key_prefix
        self._down_until = 0.0
        self._outage = False  # logged as started, not yet as over
        self._over_limit = OverLimitMemory()
        self._background: set[asyncio.Task[None]] = set()
        # Asks waiting for this turn's batch, by budget slot tag (one group when not Cluster).
        self._pending: dict[str, list[_Ask]] = {}
        self._flush_scheduled = False
        self._in_flight = 0
        self._tags: dict[str, str] = {}

    @property
    def _refunds(self) -> set[asyncio.Task[None]]:
        return self._background

    async def acquire(self, op: Operation) -> float:
        """Wait for a token of every rule covering `op`, from the shared buckets."""
        local = self._local
        coverage = local.rules.coverage(op)
        if not coverage.rules:
            return 0.0
        local.ensure_sweeper()  # shadow rules keep local buckets
        now = self._clock.monotonic()
        if coverage.shadows:
            local.judge_shadows(coverage.shadows, op, now)
        enforcing = coverage.enforcing
        if not enforcing:
            return 0.0
        # One pass over the rules (this runs for every request): cost, hash tag, bucket key.
        costs: list[int] = []
        tags: list[str] = []
        keys: list[str] = []
        single_tokens = True
        for state in enforcing:
            compiled = state.compiled
            cost = compiled.cost(op)
            if cost > state.shape.burst:
                raise local.refuse_oversized(state, cost)
            single_tokens = single_tokens and cost == 1
            tag = self._tag(compiled.budget_key(op))
            costs.append(cost)
            tags.append(tag)
            keys.append(bucket_redis_key(tag, state.name, compiled.per_key(op)))
        if (
            single_tokens
            and self._config.lease_interval > 0
            and self._spend_slices(enforcing, tags, keys, now)
        ):
            local.count_admitted(enforcing, [0.0] * len(enforcing), now)
            return 0.0
        self._over_limit.refuse_if_known(enforcing, keys, now)
        if now < self._down_until:
            return self._without_redis(enforcing, now)
        policy = local.policy
        # A full queue admits only what can go at once.
        max_wait = policy.max_wait if local.waiting < policy.max_queue else 0.0
        asks = self._asks(enforcing, tags, keys, costs, round(max_wait * 1e6))
        try:
            # Each batch call is bounded by redis.timeout and always settles its asks.
            if len(asks) == 1:
                replies = [await asks[0].reply]
            else:
                replies = list(await asyncio.gather(*(ask.reply for ask in asks)))
        except (RedisError, OSError, TimeoutError) as error:
            self._went_down(error, now)  # counted once per failed call, by _decide_batch
            return self._without_redis(enforcing, now)
        verdict = self._combine(asks, replies)
        if not verdict.admitted:
            self._give_back(asks, replies)
            # Against the policy's max_wait, not this call's: a refusal because the queue was
            # full says nothing of the bucket once the queue has room.
            self._over_limit.remember(keys, costs, verdict.own_waits, now, policy.max_wait)
            raise local.refuse(enforcing, verdict.own_waits, verdict.wait)
        local.count_admitted(enforcing, verdict.own_waits, now + verdict.wait)
        if verdict.wait <= 0:
            return 0.0
        try:
            await local.wait_in_queue(enforcing, verdict.wait)
        except asyncio.CancelledError:
            self._give_back(asks, replies, never_sent=False)
            raise
        return verdict.wait

    # -- leased slices (see proxy.ratelimit.lease) -------------------------------------------

    def _spend_slices(
        self, enforcing: Sequence[RuleState], tags: list[str], keys: list[str], now: float
    ) -> bool:
        """Admit from this replica's slices when every bucket has a token in one; refill the
        slices running low in the background. False: the request goes to Redis."""
        interval = self._config.lease_interval
        sizes: list[int] = []
        for state in enforcing:
            if state.waiting:
                return False  # requests queue for this rule: newcomers go behind them
            size = lease_size(state.rate, state.shape.burst, interval)
            if not size:
                return False
            sizes.append(size)
        leases = self._leases
        spent = leases.take(keys, now)
        if now >= self._down_until:
            for state, key, size in zip(enforcing, keys, sizes, strict=True):
                wanted = leases.ask(key, size, now)
                if wanted:
                    self._spawn(self._refill(leases, state, key, wanted, now))
        return spent

    async def _refill(
        self, leases: LeaseBook, state: RuleState, key: str, wanted: int, asked_at: float
    ) -> None:
        args = [str(round(1e6 / state.rate)), repr(state.shape.burst), str(wanted)]
        try:
            async with asyncio.timeout(self._config.timeout):
                got = int(await self._lease_script(keys=[key], args=args))
        except (RedisError, OSError, TimeoutError) as error:
            self._errors.inc()
            self._went_down(error, asked_at)
            leases.failed(key, asked_at, self._retry_interval)
            return
        self._came_back()
        leases.granted(key, wanted, got, asked_at, state.rate)

    # -- Redis outages ----------------------------------------------------------------------

    def _went_down(self, error: BaseException, at: float) -> None:
        """A call failed at `at`: skip Redis for `retry_interval`. Logged once an outage (every
        request of a failed batch, and every retry that fails again, comes here)."""
        self._down_until = max(self._down_until, at + self._retry_interval)
        if not self._outage:
            self._outage = True
            log.warning(
                "redis-limiter-unavailable",
                error=type(error).__name__,
                fail_open=self._config.fail_open,
                retry_interval=self._retry_interval,
            )

    def _came_back(self) -> None:
        if self._outage:
            self._outage = False
            log.info("redis-limiter-available")

    # -- batching ---------------------------------------------------------------------------

    def _asks(
        self,
        enforcing: Sequence[RuleState],
        tags: list[str],
        keys: list[str],
        costs: list[int],
        max_wait_us: int,
    ) -> list[_Ask]:
        """One ask per slot group of the request (one ask unless Cluster and mixed scopes),
        queued for this turn's batch."""
        intervals_us = [round(1e6 / state.rate) for state in enforcing]
        if not self._config.cluster or len(enforcing) == 1:
            # The common case: one ask for the whole request.
            args = [str(max_wait_us)]
            charges_us: list[int] = []
            for state, interval_us, cost in zip(enforcing, intervals_us, costs, strict=True):
                args += (str(interval_us), repr(state.shape.burst), str(cost))
                charges_us.append(interval_us * cost)
            asks = [_Ask(keys, args, charges_us)]
            group = tags[0] if self._config.cluster else ""
            self._pending.setdefault(group, []).append(asks[0])
            self._schedule_flush()
            return asks
        groups: dict[str, _Ask] = {}
        for state, tag, key, interval_us, cost in zip(
            enforcing, tags, keys, intervals_us, costs, strict=True
        ):
            ask = groups.get(tag)
            if ask is None:
                ask = groups[tag] = _Ask([], [str(max_wait_us)], [])
            ask.keys.append(key)
            ask.args += [str(interval_us), repr(state.shape.burst), str(cost)]
            ask.charges_us.append(interval_us * cost)
        for tag, ask in groups.items():
            self._pending.setdefault(tag, []).append(ask)
        self._schedule_flush()
        return list(groups.values())

    def _tag(self, budget: str) -> str:
        tag = self._tags.get(budget)
        if tag is None:
            if len(self._tags) >= _TAG_CACHE:
                self._tags.clear()
            tag = self._tags[budget] = hash_tag(self._prefix, budget)
        return tag

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._in_flight < _MAX_IN_FLIGHT:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send every ask queued so far: one script call per slot group. With
        `_MAX_IN_FLIGHT` calls already out, the asks wait for one of them to come back and go
        out together then (bigger batches under load, at most one extra round trip)."""
        self._flush_scheduled = False
        if not self._pending or self._in_flight >= _MAX_IN_FLIGHT:
            return
        pending, self._pending = self._pending, {}
        for asks in pending.values():
            self._in_flight += 1
            self._spawn(self._run_batch(asks))

    async def _run_batch(self, asks: list[_Ask]) -> None:
        try:
            await self._decide_batch(asks)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._schedule_flush()

    async def _decide_batch(self, asks: list[_Ask]) -> None:
        keys: list[str] = []
        specs: list[str] = []
        for ask in asks:
            keys += ask.keys
            specs.append(f"{len(ask.keys)},{','.join(ask.args)}")
        try:
            async with asyncio.timeout(self._config.timeout):
                answer = await self._script(keys=keys, args=[";".join(specs)])
        except (RedisError, OSError, TimeoutError) as error:
            self._errors.inc()
            for ask in asks:
                if not ask.reply.done():
                    ask.reply.set_exception(type(error)(str(error)))
                    ask.reply.exception()  # a caller gone by now must not log it as lost
            return
        except asyncio.CancelledError:
            for ask in asks:
                ask.reply.cancel()
            raise
        self._came_back()
        replies = answer.decode().split(";") if isinstance(answer, bytes) else answer.split(";")
        for ask, reply in zip(asks, replies, strict=True):
            values = [int(value) for value in reply.split(",")]
            if not ask.reply.done():
                ask.reply.set_result(values)
            elif values[0] == 1:
                # The caller left (client gone, or its timeout) after Redis granted: give back.
                self._give_back([ask], [values])

    @staticmethod
    def _combine(asks: list[_Ask], replies: Sequence[list[int]]) -> _Verdict:
        admitted, wait = True, 0
        own: list[float] = []
        for ask, reply in zip(asks, replies, strict=True):
            count = len(ask.keys)
            admitted = admitted and reply[0] == 1
            wait = max(wait, reply[1])
            own += [value / 1e6 for value in reply[3 : 3 + count]]
        return _Verdict(admitted, wait / 1e6, own)

    def _give_back(
        self, asks: list[_Ask], replies: Sequence[list[int]], *, never_sent: bool = True
    ) -> None:
        """Refund, in the background, the grants of the asks Redis admitted. A waiter gives
        its slot back only before the slot's moment (`never_sent=False`); a request refused
        or gone before it could go gives it back whatever the time."""
        for ask, reply in zip(asks, replies, strict=True):
            if reply[0] != 1:
                continue
            count = len(ask.keys)
            refund_args = [_NEVER if never_sent else reply[2]]
            granted = reply[3 + count : 3 + 2 * count]
            for tat, charge_us in zip(granted, ask.charges_us, strict=True):
                refund_args += [tat, charge_us]
            self._spawn(self._refund(ask.keys, refund_args))

    def _spawn(self, work: Any) -> None:
        # Strong references until done: the loop keeps only weak ones.
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refund(self, keys: list[str], args: list[int]) -> None:
        try:
            async with asyncio.timeout(self._config.timeout):
                await self._refund_script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            # The slot stays charged: only this grant's buckets pay, and they refill.
            self._errors.inc()
            log.warning("redis-limiter-refund-failed", error=type(error).__name__)

    def _without_redis(self, enforcing: Sequence[RuleState], now: float) -> float:
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
        if any(state.adaptive is not None for state in self._local.rules.matching(op)):
            self._leases = LeaseBook()  # slow down now, not after the slices are spent

    def observe_success(self, op: Operation) -> None:
        self._local.observe_success(op)

    def update_rules(self, rules: Sequence[LimitRule], policy: LimitPolicy) -> None:
        """New rules: the buckets in Redis are rescaled on their next charge (see
        proxy.ratelimit.redis_scripts); what was refused under the old rules is forgotten."""
        self._local.update_rules(rules, policy)
        self._over_limit.clear()
        # Unspent slices are dropped, never spent: they were charged under the old rule.
        self._leases = LeaseBook()

    async def close(self) -> None:
        """Stop the sweeper, let refunds in flight land (each bounded by the timeout), and
        close the connections."""
        await self._local.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._client.aclose()


def _client(config: RedisConfig) -> Any:
    """A plain client, or the cluster client that routes each call to its slot's node."""
    options: dict[str, Any] = {
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        # One retry, on a fresh connection, for a connection error only: after Redis restarts
        # every pooled connection is dead, and redis-py finds out on its first use. Without it
        # each of them would fail a call and fail the limiter open for retry_interval. A
        # timeout is not retried (the call is bounded by redis.timeout whatever happens).
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if config.cluster:
        return aioredis.RedisCluster.from_url(config.url, **options)
    return aioredis.Redis.from_url(config.url, **options)
