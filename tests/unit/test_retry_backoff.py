"""Capped full jitter, its tenacity wait, and the SDK rule for server retry hints."""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping

import pytest
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from proxy.config.model import RetryConfig, parse_config
from proxy.config.readers import ConfigError
from proxy.retry.backoff import (
    BackoffPolicy,
    FullJitterWait,
    apply_hint,
    full_jitter,
    jitter_ceiling,
    retry_delay,
    server_hint,
)
from proxy.retry.verdicts import RetryVerdict

THROTTLE = RetryVerdict("retryable", "throttling", "Throttling")
TRANSIENT = RetryVerdict("retryable", "transient")
NOW = 1_440_938_160.0  # 2015-08-30T12:36:00Z
DRAWS = 10_000


@pytest.mark.parametrize(
    ("base", "expected_ceilings"),
    [
        (1.0, [1, 2, 4, 8, 16, 20, 20, 20]),
        (0.05, [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]),
    ],
)
def test_ceiling_doubles_up_to_the_cap(base: float, expected_ceilings: list[float]) -> None:
    ceilings = [jitter_ceiling(attempt, base, 20.0) for attempt in range(1, 9)]
    assert ceilings == pytest.approx(expected_ceilings)


def test_ceiling_of_huge_attempt_numbers_is_the_cap() -> None:
    assert jitter_ceiling(10_000, 1.0, 20.0) == 20.0


@pytest.mark.parametrize("attempt", range(1, 9))
@pytest.mark.parametrize("base", [1.0, 0.05])
def test_full_jitter_draws_are_uniform_over_the_window(attempt: int, base: float) -> None:
    source = random.Random(1234 + attempt)
    ceiling = jitter_ceiling(attempt, base, 20.0)
    draws = [full_jitter(attempt, base, 20.0, source.random) for _ in range(DRAWS)]
    assert all(0.0 <= d <= ceiling for d in draws)
    # Uniform on [0, c]: mean c/2 (std error c/346 at 10,000 draws), quartiles c/4 apart.
    assert statistics.fmean(draws) == pytest.approx(ceiling / 2, abs=0.02 * ceiling)
    quartiles = statistics.quantiles(draws, n=4)
    assert quartiles == pytest.approx(
        [ceiling / 4, ceiling / 2, 3 * ceiling / 4], abs=0.03 * ceiling
    )
    assert min(draws) < 0.01 * ceiling
    assert max(draws) > 0.99 * ceiling


def test_policy_uses_the_throttle_base_after_a_throttle() -> None:
    policy = BackoffPolicy.from_config(RetryConfig())
    top = lambda: 0.999_999  # noqa: E731
    assert retry_delay(policy, 1, THROTTLE, {}, top, NOW, service="ec2") == pytest.approx(
        1.0, rel=1e-5
    )
    assert retry_delay(policy, 1, TRANSIENT, {}, top, NOW, service="ec2") == pytest.approx(
        0.05, rel=1e-5
    )
    assert retry_delay(policy, 3, TRANSIENT, {}, top, NOW, service="ec2") == pytest.approx(
        0.2, rel=1e-5
    )
    assert retry_delay(policy, 9, THROTTLE, {}, top, NOW, service="ec2") == pytest.approx(
        20.0, rel=1e-5
    )


@pytest.mark.parametrize(
    ("service", "base"), [("dynamodb", 0.025), ("ec2", 0.05), ("s3", 0.05), ("sts", 0.05)]
)
def test_unset_base_delay_is_the_sdks_own_per_service(service: str, base: float) -> None:
    """REFERENCE.md §2: 0.05 s, but 0.025 s for DynamoDB (and DynamoDB Streams, which signs as
    `dynamodb`). Throttles keep their 1 s base everywhere."""
    policy = BackoffPolicy.from_config(RetryConfig())
    assert policy.base_delay is None
    assert policy.base_for(TRANSIENT, service) == base
    assert policy.base_for(THROTTLE, service) == 1.0
    top = lambda: 0.999_999  # noqa: E731
    delay = retry_delay(policy, 2, TRANSIENT, {}, top, NOW, service=service)
    assert delay == pytest.approx(2 * base, rel=1e-5)


def test_a_configured_base_delay_applies_to_dynamodb_too() -> None:
    policy = BackoffPolicy.from_config(RetryConfig(base_delay=0.05))
    assert policy.base_for(TRANSIENT, "dynamodb") == 0.05
    assert BackoffPolicy.from_config(RetryConfig(base_delay=0.2)).base_for(TRANSIENT, "ec2") == 0.2


@pytest.mark.parametrize(
    ("retry", "expected"),
    [({}, None), ({"base_delay": "50ms"}, 0.05), ({"base_delay": 0.01}, 0.01)],
)
def test_config_keeps_base_delay_unset_unless_written(
    retry: dict[str, object], expected: float | None
) -> None:
    """Writing `base_delay: 50ms` is a choice (DynamoDB then waits 50 ms too); leaving it out
    means the SDK's defaults."""
    assert parse_config({"retry": retry}).retry.base_delay == expected


def test_config_rejects_a_bad_base_delay_as_before() -> None:
    with pytest.raises(ConfigError, match=r"retry\.base_delay"):
        parse_config({"retry": {"base_delay": "soon"}})
    with pytest.raises(ConfigError, match=r"retry\.base_delay"):
        parse_config({"retry": {"base_delay": None}})


def test_policy_follows_the_config() -> None:
    config = RetryConfig(base_delay=0.1, throttle_base_delay=2.0, max_backoff=3.0)
    policy = BackoffPolicy.from_config(config)
    assert (policy.base_delay, policy.throttle_base_delay, policy.max_backoff) == (0.1, 2.0, 3.0)
    assert retry_delay(policy, 5, THROTTLE, {}, lambda: 0.5, NOW, service="ec2") == pytest.approx(
        1.5
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2000", 2.0),  # within [t, t+5]: honoured
        ("100", 0.5),  # shorter than the jitter: the jitter wins
        ("60000", 5.5),  # longer: at most 5 s past the jitter
        ("0", 0.5),
        ("soon", 0.5),  # not an integer: ignored
        ("-5", 0.5),
        ("1.5", 0.5),
    ],
)
def test_x_amz_retry_after(header: str, expected: float) -> None:
    policy = BackoffPolicy()
    delay = retry_delay(
        policy, 1, THROTTLE, {"x-amz-retry-after": header}, lambda: 0.5, NOW, service="ec2"
    )  # jitter t = 0.5 * 1 s
    assert delay == pytest.approx(expected)


def test_retry_after_needs_the_switch() -> None:
    headers = {"Retry-After": "3"}
    assert server_hint(headers, False, NOW) is None
    assert server_hint(headers, True, NOW) == 3.0
    on = BackoffPolicy(honor_retry_after=True)
    assert retry_delay(on, 1, THROTTLE, headers, lambda: 0.5, NOW, service="ec2") == pytest.approx(
        3.0
    )
    off = BackoffPolicy()
    assert retry_delay(off, 1, THROTTLE, headers, lambda: 0.5, NOW, service="ec2") == pytest.approx(
        0.5
    )


def test_retry_after_http_date_is_relative_to_now() -> None:
    headers = {"Retry-After": "Sun, 30 Aug 2015 12:36:04 GMT"}
    assert server_hint(headers, True, NOW) == pytest.approx(4.0)
    assert server_hint({"Retry-After": "Sun, 30 Aug 2015 12:00:00 GMT"}, True, NOW) == 0.0
    assert server_hint({"Retry-After": "tomorrow"}, True, NOW) is None


def test_x_amz_retry_after_wins_over_retry_after() -> None:
    headers = {"x-amz-retry-after": "1500", "Retry-After": "9"}
    assert server_hint(headers, True, NOW) == 1.5


def test_apply_hint() -> None:
    assert apply_hint(1.0, None) == 1.0
    assert apply_hint(1.0, 3.0) == 3.0
    assert apply_hint(1.0, 0.2) == 1.0
    assert apply_hint(1.0, 100.0) == 6.0


async def test_full_jitter_wait_drives_tenacity() -> None:
    """Through AsyncRetrying: one wait per failed attempt, numbered from 1, base by verdict."""
    verdicts = iter([THROTTLE, THROTTLE, TRANSIENT, RetryVerdict("success")])
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def attempt() -> RetryVerdict:
        return next(verdicts)

    def describe(state: RetryCallState) -> tuple[RetryVerdict, Mapping[str, str]]:
        assert state.outcome is not None
        verdict: RetryVerdict = state.outcome.result()
        return verdict, {}

    retrying = AsyncRetrying(
        sleep=fake_sleep,
        retry=retry_if_result(lambda v: v.is_retryable),
        stop=stop_after_attempt(10),
        wait=FullJitterWait(BackoffPolicy(), lambda: 0.5, lambda: NOW, describe, service="ec2"),
    )
    result: RetryVerdict = await retrying(attempt)
    assert result == RetryVerdict("success")
    # attempt 1 throttled: 0.5*1; attempt 2 throttled: 0.5*2; attempt 3 transient: 0.5*0.2
    assert slept == pytest.approx([0.5, 1.0, 0.1])
