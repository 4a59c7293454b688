"""How long to wait before the next attempt: capped full jitter, as the AWS SDKs do.

delay = random() * min(base * 2**(attempt-1), max_backoff), with base `throttle_base_delay`
(1 s) after a throttle and `base_delay` otherwise; left unset, `base_delay` is the SDK's own for
the service (50 ms; DynamoDB and DynamoDB Streams, signing name `dynamodb`, 25 ms). A server
hint stretches the delay the way the SDKs' standard mode does: `x-amz-retry-after` (integer
milliseconds) gives `max(t, min(hint, t + 5))`; `Retry-After` (seconds or an HTTP date) is
treated the same when `honor_retry_after` is on. The random source and the wall clock are
injected.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tenacity import RetryCallState
from tenacity.wait import wait_base

from proxy.config.model import RetryConfig
from proxy.retry.verdicts import RetryVerdict

# A server hint may add at most this much to the computed delay (SDK standard mode).
MAX_HINT_EXTENSION = 5.0
# The SDKs' base for non-throttle retries, and the services (by signing name) that differ.
SDK_BASE_DELAY = 0.05
SDK_SERVICE_BASE_DELAY = {"dynamodb": 0.025}

RandomSource = Callable[[], float]
# What the wait needs to know about the attempt it follows: its verdict and response headers
# (empty when the attempt raised instead of answering).
DelayInputs = tuple[RetryVerdict, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The backoff settings of `retry:` in the config."""

    base_delay: float | None = None  # None: the SDK's base for the service (sdk_base_delay)
    throttle_base_delay: float = 1.0
    max_backoff: float = 20.0
    honor_retry_after: bool = False

    @classmethod
    def from_config(cls, config: RetryConfig) -> BackoffPolicy:
        return cls(
            base_delay=config.base_delay,
            throttle_base_delay=config.throttle_base_delay,
            max_backoff=config.max_backoff,
            honor_retry_after=config.honor_retry_after,
        )

    def base_for(self, verdict: RetryVerdict, service: str) -> float:
        """The jitter base after an attempt to `service` (signing name) judged `verdict`."""
        if verdict.is_throttle:
            return self.throttle_base_delay
        if self.base_delay is not None:
            return self.base_delay
        return sdk_base_delay(service)


def sdk_base_delay(service: str) -> float:
    """The SDKs' non-throttle base delay for `service` (signing name)."""
    return SDK_SERVICE_BASE_DELAY.get(service, SDK_BASE_DELAY)


def jitter_ceiling(attempt: int, base: float, max_backoff: float) -> float:
    """The upper end of the jitter window after attempt `attempt` (1-based)."""
    # Past ~60 doublings the window is far beyond any cap; stop before floats overflow.
    exponent = min(max(attempt - 1, 0), 60)
    return min(base * 2.0**exponent, max_backoff)


def full_jitter(attempt: int, base: float, max_backoff: float, rand: RandomSource) -> float:
    """A uniform draw from [0, jitter_ceiling(attempt, base, max_backoff))."""
    return rand() * jitter_ceiling(attempt, base, max_backoff)


def server_hint(headers: Mapping[str, str], honor_retry_after: bool, now: float) -> float | None:
    """Seconds the server asked us to wait, or None when it did not say (or said nonsense).

    `x-amz-retry-after` always counts; `Retry-After` only when `honor_retry_after`. `now` (epoch
    seconds) turns a Retry-After HTTP date into a delay."""
    amz = headers.get("x-amz-retry-after")
    if amz is not None:
        try:
            millis = int(amz.strip())
        except ValueError:
            millis = -1
        if millis >= 0:
            return millis / 1000.0
    if not honor_retry_after:
        return None
    standard = headers.get("Retry-After") or headers.get("retry-after")
    if standard is None:
        return None
    return _retry_after_seconds(standard.strip(), now)


def _retry_after_seconds(value: str, now: float) -> float | None:
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def apply_hint(delay: float, hint: float | None) -> float:
    """The SDK rule: honour the hint, but never below the jitter nor more than 5 s above it."""
    if hint is None:
        return delay
    return max(delay, min(hint, delay + MAX_HINT_EXTENSION))


def retry_delay(
    policy: BackoffPolicy,
    attempt: int,
    verdict: RetryVerdict,
    headers: Mapping[str, str],
    rand: RandomSource,
    now: float,
    *,
    service: str,
) -> float:
    """The delay before the attempt after `attempt` (1-based) to `service`, whose verdict and
    headers these are."""
    delay = full_jitter(attempt, policy.base_for(verdict, service), policy.max_backoff, rand)
    return apply_hint(delay, server_hint(headers, policy.honor_retry_after, now))


class FullJitterWait(wait_base):
    """tenacity's wait strategy for `retry_delay`; `describe` reads the attempt's outcome."""

    def __init__(
        self,
        policy: BackoffPolicy,
        rand: RandomSource,
        wall_time: Callable[[], float],
        describe: Callable[[RetryCallState], DelayInputs],
        *,
        service: str,
    ) -> None:
        self._policy = policy
        self._service = service
        self._rand = rand
        self._wall_time = wall_time
        self._describe = describe

    def __call__(self, retry_state: RetryCallState) -> float:
        verdict, headers = self._describe(retry_state)
        return retry_delay(
            self._policy,
            retry_state.attempt_number,
            verdict,
            headers,
            self._rand,
            self._wall_time(),
            service=self._service,
        )
