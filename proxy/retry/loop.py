"""The attempt loop: send, judge, back off, send again, within three budgets.

Built from tenacity's parts: AsyncRetrying drives the loop with our verdict as its retry
predicate, capped full jitter as its wait, and a stop that spends the budgets in order: attempts
left (`stop_after_attempt`), then the total deadline (no backoff that would end past it), then
the service's retry quota (asked last, so tokens are only spent on retries that happen).
Sleep, random source and clock are injected; a cancelled request (client gone) stops at once.
A ProxyError that ends the loop carries `.attempts`: the attempts that reached the wire (the
ones `upstream_attempts_total` counts; `ProxyError.reached_upstream`), so an error raised
before sending (no credentials, no free pool slot) does not count its own attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast

from tenacity import AsyncRetrying, RetryCallState
from tenacity.stop import stop_after_attempt

from proxy.aws.operations import Operation
from proxy.clock import Clock
from proxy.config.model import RetryConfig
from proxy.errors import ProxyError
from proxy.observability.metrics import Metrics
from proxy.retry.backoff import BackoffPolicy, DelayInputs, FullJitterWait
from proxy.retry.children import ChildCache
from proxy.retry.quota import RetryQuota
from proxy.retry.verdicts import (
    RetryVerdict,
    attempt_outcome,
    judge_exception,
    judge_response,
    throttle_code_label,
)
from proxy.upstream.client import UpstreamResponse

DEFAULT_MAX_ATTEMPTS = 3
# The SDKs give DynamoDB (and DynamoDB Streams, which signs as `dynamodb`) one more attempt.
SDK_MAX_ATTEMPTS = {"dynamodb": 4}

SendAttempt = Callable[[int], Awaitable[UpstreamResponse]]
OperationHook = Callable[[Operation], None]
_NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What the loop ends with: the answer to stream back (success or the last error)."""

    response: UpstreamResponse
    attempts: int
    verdict: RetryVerdict


@dataclass(frozen=True, slots=True)
class _Answered:
    response: UpstreamResponse
    verdict: RetryVerdict


def max_attempts_for(config: RetryConfig, service: str) -> int:
    """Attempts allowed for `service`: its override, else the global setting, else the SDK's
    default (3; DynamoDB 4)."""
    override = config.service_max_attempts.get(service)
    if override is not None:
        return max(1, override)
    if config.max_attempts is not None:
        return max(1, config.max_attempts)
    return SDK_MAX_ATTEMPTS.get(service, DEFAULT_MAX_ATTEMPTS)


class AttemptRunner:
    """Runs the attempts of one request; holds the per-service retry quotas across requests."""

    def __init__(
        self,
        config: RetryConfig,
        metrics: Metrics,
        *,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        on_throttle: OperationHook | None = None,
        on_success: OperationHook | None = None,
        on_retry: OperationHook | None = None,
    ) -> None:
        self._config = config
        self._policy = BackoffPolicy.from_config(config)
        self._quota = RetryQuota(config.quota)
        self.metrics = metrics
        self.children = _RetryChildren(metrics)
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.on_throttle = on_throttle
        self.on_success = on_success
        self.on_retry = on_retry

    @property
    def quota(self) -> RetryQuota:
        return self._quota

    def update_config(self, config: RetryConfig) -> None:
        """Take new retry settings (SIGHUP); quota balances are kept, runs in flight finish
        with the settings they started with."""
        self._config = config
        self._policy = BackoffPolicy.from_config(config)
        self._quota.resize(config.quota)
        for service in self._quota.services():
            self.publish_quota(service)

    def publish_quota(self, service: str) -> None:
        self.children.quota_available.child((service,)).set(self._quota.available(service))

    async def run(self, op: Operation, send: SendAttempt, replayable: bool) -> AttemptResult:
        """Send `op` until success, a final answer, or a spent budget.

        `send(n)` signs afresh and sends attempt n (1-based); it raises UpstreamUnavailable or
        UpstreamTimeout when no answer came. If the last attempt raised, that ProxyError is
        re-raised with `.attempts` set. Releasing answers is the caller's (the pipeline's
        request context owns the one it holds and lets go of it before the next send)."""
        config = self._config
        limit = max_attempts_for(config, op.service) if replayable else 1
        deadline = (
            self.clock.monotonic() + config.max_total_time if config.max_total_time > 0 else None
        )
        attempts = _Attempts(self, op, send, limit, deadline)
        try:
            # Fast path: most requests succeed (or fail for good) on the first attempt, and
            # need none of the retry machinery.
            first = await attempts.attempt()
        except ProxyError as exc:
            if limit == 1 or not judge_exception(exc).is_retryable:
                exc.attempts = attempts.made(exc)
                raise
            attempts.replay(exc)
        else:
            if limit == 1 or not first.verdict.is_retryable:
                return self._finish(op, attempts, first)
            attempts.replay(first)
        retrying = AsyncRetrying(
            sleep=self.sleep,
            retry=attempts.worth_retrying,
            wait=FullJitterWait(
                self._policy, self.rand, self.clock.time, attempts.describe, service=op.service
            ),
            stop=attempts.out_of_budget,
            before_sleep=attempts.before_backoff,
            retry_error_callback=attempts.last_outcome,
        )
        try:
            answered = cast(_Answered, await retrying(attempts.attempt))
        except ProxyError as exc:
            exc.attempts = attempts.made(exc)
            raise
        return self._finish(op, attempts, answered)

    def _finish(self, op: Operation, attempts: _Attempts, answered: _Answered) -> AttemptResult:
        if answered.verdict.kind == "success":
            refunded = self._quota.refund(op.service, attempts.last_retry_cost)
            if refunded:
                self.publish_quota(op.service)
        return AttemptResult(answered.response, attempts.count, answered.verdict)


class _RetryChildren:
    """The loop's metric children, cached by label tuple (see proxy.retry.children)."""

    __slots__ = (
        "attempts",
        "backoff",
        "quota_available",
        "quota_exhausted",
        "retries",
        "throttled",
    )

    def __init__(self, metrics: Metrics) -> None:
        self.attempts = ChildCache(metrics.upstream_attempts_total)
        self.throttled = ChildCache(metrics.upstream_throttled_total)
        self.retries = ChildCache(metrics.retries_total)
        self.backoff = ChildCache(metrics.retry_backoff_seconds)
        self.quota_available = ChildCache(metrics.retry_quota_available)
        self.quota_exhausted = ChildCache(metrics.retry_quota_exhausted_total)


class _Attempts:
    """The state of one request's loop and the callbacks tenacity calls for it."""

    def __init__(
        self,
        runner: AttemptRunner,
        op: Operation,
        send: SendAttempt,
        limit: int,
        deadline: float | None,
    ) -> None:
        self.runner = runner
        self.op = op
        self.send = send
        self.deadline = deadline
        self.count = 0
        self.last_retry_cost: int | None = None
        self._attempt_limit = stop_after_attempt(limit)
        self._replayed: _Answered | ProxyError | None = None
        self._service = op.service
        self._operation = op.label

    def replay(self, outcome: _Answered | ProxyError) -> None:
        """Hand the fast path's first outcome to tenacity as its first attempt."""
        self._replayed = outcome

    def made(self, exc: ProxyError) -> int:
        """Attempts that reached the wire when `exc` ended the loop: an error raised before
        its attempt was sent (no credentials, no pool slot) does not count its own."""
        return self.count if exc.reached_upstream else self.count - 1

    async def attempt(self) -> _Answered:
        replayed, self._replayed = self._replayed, None
        if isinstance(replayed, ProxyError):
            raise replayed
        if replayed is not None:
            return replayed
        self.count += 1
        children = self.runner.children
        try:
            response = await self.send(self.count)
        except ProxyError as exc:
            verdict = judge_exception(exc)
            if exc.reached_upstream:  # the request left; anything else failed before sending
                children.attempts.child(
                    (self._service, self._operation, attempt_outcome(verdict, None))
                ).inc()
            raise
        verdict = judge_response(response.status, response.headers, response.body)
        children.attempts.child(
            (self._service, self._operation, attempt_outcome(verdict, response.status))
        ).inc()
        if verdict.is_throttle:
            children.throttled.child(
                (self._service, self._operation, throttle_code_label(verdict.error_code))
            ).inc()
            if self.runner.on_throttle is not None:
                self.runner.on_throttle(self.op)
        elif self.runner.on_success is not None:
            # As the SDK's adaptive mode counts it: any answer that is not a throttle.
            self.runner.on_success(self.op)
        return _Answered(response, verdict)

    def describe(self, state: RetryCallState) -> DelayInputs:
        """The verdict and headers of the attempt that just ended."""
        outcome = state.outcome
        assert outcome is not None  # tenacity only asks after an attempt
        if outcome.failed:
            exc = outcome.exception()
            assert exc is not None
            return judge_exception(exc), _NO_HEADERS
        answered = cast(_Answered, outcome.result())
        return answered.verdict, answered.response.headers

    def worth_retrying(self, state: RetryCallState) -> bool:
        return self.describe(state)[0].is_retryable

    def out_of_budget(self, state: RetryCallState) -> bool:
        if self._attempt_limit(state):
            return True
        clock_now = self.runner.clock.monotonic()
        if self.deadline is not None and clock_now + state.upcoming_sleep > self.deadline:
            return True
        verdict = self.describe(state)[0]
        cost = self.runner.quota.acquire(self._service, verdict.is_throttle)
        self.runner.publish_quota(self._service)
        if cost is None:
            self.runner.children.quota_exhausted.child((self._service,)).inc()
            return True
        self.last_retry_cost = cost
        return False

    def before_backoff(self, state: RetryCallState) -> None:
        verdict = self.describe(state)[0]
        children = self.runner.children
        children.retries.child((self._service, str(verdict.reason))).inc()
        if self.runner.on_retry is not None:
            self.runner.on_retry(self.op)
        children.backoff.child((self._service,)).observe(state.upcoming_sleep)

    def last_outcome(self, state: RetryCallState) -> _Answered:
        """Out of budget: hand back the last answer, or re-raise the last failure."""
        assert state.outcome is not None
        return cast(_Answered, state.outcome.result())
