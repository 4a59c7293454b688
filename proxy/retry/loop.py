"""The attempt loop: send, judge, back off, send again, within three budgets.

A plain loop over the pure parts: the verdict of each attempt (proxy.retry.verdicts), the
capped full-jitter delay (proxy.retry.backoff.retry_delay) and the service's retry quota
(proxy.retry.quota). Before each retry the budgets are spent in order: attempts left, then the
total deadline (no backoff that would end past it; one deadline, on the injected clock), then
the quota (asked last, so tokens are only spent on retries that happen). Sleep, random source
and clock are injected; a cancelled request (client gone) stops at once. (tenacity composes
well as a retry decorator; here its callbacks only split one loop into five functions, so the
loop is written out.) A ProxyError that ends the loop carries `.attempts`: the attempts that
reached the wire (the ones `upstream_attempts_total` counts; `ProxyError.reached_upstream`),
so an error raised before sending (no credentials, no free pool slot) does not count its own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping

from proxy.aws.operations import Operation
from proxy.clock import Clock
from proxy.config.model import RetryConfig
from proxy.errors import ProxyError
from proxy.observability.metrics import Metrics
from proxy.requestvalue import request_value
from proxy.retry.backoff import BackoffPolicy, retry_delay
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


@request_value
class AttemptResult:
    """What the loop ends with: the answer to stream back (success or the last error)."""

    response: UpstreamResponse
    attempts: int
    verdict: RetryVerdict


@request_value
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

    def deadline(self) -> float | None:
        """The end of a request's time budget (retry.max_total_time) on the runner's clock."""
        total = self._config.max_total_time
        return self.clock.monotonic() + total if total > 0 else None

    async def run(
        self,
        op: Operation,
        send: SendAttempt,
        replayable: bool,
        deadline: float | None = None,
    ) -> AttemptResult:
        """Send `op` until success, a final answer, or a spent budget.

        `deadline` (the runner's clock, `deadline()`): the request's one deadline, which the
        caller also hands to each send so an attempt in flight is bounded by it too.

        `send(n)` signs afresh and sends attempt n (1-based); it raises UpstreamUnavailable or
        UpstreamTimeout when no answer came. If the last attempt raised, that ProxyError is
        re-raised with `.attempts` set. Releasing answers is the caller's (the pipeline's
        request context owns the one it holds and lets go of it before the next send)."""
        config, policy, quota, clock = self._config, self._policy, self._quota, self.clock
        service = op.service
        limit = max_attempts_for(config, service) if replayable else 1
        if deadline is None:
            deadline = self.deadline()
        attempts = _Attempts(self, op, send)
        last_retry_cost: int | None = None
        while True:
            answered: _Answered | None = None
            try:
                answered = await attempts.attempt()
            except ProxyError as exc:
                failure: ProxyError | None = exc
                verdict = judge_exception(exc)
                headers: Mapping[str, str] = _NO_HEADERS
            else:
                failure, verdict, headers = None, answered.verdict, answered.response.headers
            if not verdict.is_retryable or attempts.count >= limit:
                break
            delay = retry_delay(
                policy, attempts.count, verdict, headers, self.rand, clock.time(), service=service
            )
            if deadline is not None and clock.monotonic() + delay > deadline:
                break
            cost = quota.acquire(service, verdict.is_throttle)
            self.publish_quota(service)
            if cost is None:
                self.children.quota_exhausted.child((service,)).inc()
                break
            last_retry_cost = cost
            attempts.before_backoff(verdict, delay)
            await self.sleep(delay)
        if failure is not None:
            failure.attempts = attempts.made(failure)
            raise failure
        assert answered is not None
        if answered.verdict.kind == "success" and quota.refund(service, last_retry_cost):
            self.publish_quota(service)
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
    """One request's attempts: each sent, judged and counted in the metrics."""

    def __init__(self, runner: AttemptRunner, op: Operation, send: SendAttempt) -> None:
        self.runner = runner
        self.op = op
        self.send = send
        self.count = 0
        self._service = op.service
        self._operation = op.label

    def made(self, exc: ProxyError) -> int:
        """Attempts that reached the wire when `exc` ended the loop: an error raised before
        its attempt was sent (no credentials, no pool slot) does not count its own."""
        return self.count if exc.reached_upstream else self.count - 1

    async def attempt(self) -> _Answered:
        self.count += 1
        children = self.runner.children
        try:
            response = await self.send(self.count)
        except ProxyError as exc:
            if exc.reached_upstream:  # the request left; anything else failed before sending
                verdict = judge_exception(exc)
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

    def before_backoff(self, verdict: RetryVerdict, delay: float) -> None:
        children = self.runner.children
        children.retries.child((self._service, str(verdict.reason))).inc()
        if self.runner.on_retry is not None:
            self.runner.on_retry(self.op)
        children.backoff.child((self._service,)).observe(delay)
