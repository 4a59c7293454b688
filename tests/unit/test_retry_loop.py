"""The attempt loop with a scripted `send`, a fake clock and a recording sleep.

Each case checks the attempts made, the sleeps, the quota and the exact metric values.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.aws.operations import Operation
from proxy.config.model import RetryConfig
from proxy.errors import (
    BadRequest,
    HostNotAllowed,
    NoCredentials,
    PayloadTooLarge,
    ProxyError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.observability.metrics import Metrics
from proxy.retry import AttemptRunner, max_attempts_for
from proxy.upstream.client import UpstreamResponse
from tests.fakes.clock import FakeClock

EC2_DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2")
DDB_GET = Operation("dynamodb", "GetItem", protocol="json")
S3_GET = Operation("s3", "GetObject", bucket="b", key="k", protocol="rest-xml")


@dataclass
class TrackedResponse(UpstreamResponse):
    released: bool = False

    def release(self) -> None:
        self.released = True


def answer(status: int, code: str | None = None, **headers: str) -> TrackedResponse:
    body = json.dumps({"__type": code}).encode() if code else (b"" if status >= 300 else None)
    return TrackedResponse(status, CIMultiDictProxy(CIMultiDict(headers)), body, None)


Step = TrackedResponse | ProxyError


class ScriptedSend:
    """send(n) answers from a list; each attempt advances the fake clock by `took`."""

    def __init__(self, clock: FakeClock, steps: Sequence[Step], took: float = 0.0) -> None:
        self.clock = clock
        self.steps = list(steps)
        self.numbers: list[int] = []
        self.took = took

    async def __call__(self, number: int) -> UpstreamResponse:
        self.numbers.append(number)
        self.clock.advance(self.took)
        step = self.steps[min(number, len(self.steps)) - 1]
        if isinstance(step, ProxyError):
            raise step
        return step


class Harness:
    def __init__(self, config: RetryConfig | None = None, rand: float = 0.5) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.slept: list[float] = []
        self.throttled: list[Operation] = []
        self.succeeded: list[Operation] = []
        self.runner = AttemptRunner(
            config or RetryConfig(),
            self.metrics,
            clock=self.clock,
            sleep=self.sleep,
            rand=lambda: rand,
            on_throttle=self.throttled.append,
            on_success=self.succeeded.append,
        )

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def attempts(self, service: str, operation: str, outcome: str) -> float:
        return self.value(
            "throttle_proxy_upstream_attempts_total",
            service=service,
            operation=operation,
            outcome=outcome,
        )

    def retries(self, service: str, reason: str) -> float:
        return self.value("throttle_proxy_retries_total", service=service, reason=reason)

    def quota_gauge(self, service: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "throttle_proxy_retry_quota_available", {"service": service}
        )


async def test_success_at_once() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(200)])
    result = await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    assert (result.attempts, result.response.status, result.verdict.kind) == (1, 200, "success")
    assert send.numbers == [1]
    assert h.slept == []
    assert h.attempts("ec2", "DescribeInstances", "success") == 1
    assert h.runner.quota.available("ec2") == 500
    assert h.succeeded == [EC2_DESCRIBE]


async def test_throttles_then_success() -> None:
    h = Harness()
    first, second = answer(503, "RequestLimitExceeded"), answer(400, "Throttling")
    send = ScriptedSend(h.clock, [first, second, answer(200)])
    result = await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    assert result.attempts == 3
    assert result.response.status == 200
    assert send.numbers == [1, 2, 3]
    assert h.slept == pytest.approx([0.5, 1.0])  # 0.5 * 1 s, then 0.5 * 2 s
    # Releasing is the caller's (the pipeline's request context, the one owner of answers).
    assert not first.released
    assert not second.released
    assert h.attempts("ec2", "DescribeInstances", "throttled") == 2
    assert h.attempts("ec2", "DescribeInstances", "success") == 1
    assert h.retries("ec2", "throttling") == 2
    for code in ("RequestLimitExceeded", "Throttling"):
        assert (
            h.value(
                "throttle_proxy_upstream_throttled_total",
                service="ec2",
                operation="DescribeInstances",
                error_code=code,
            )
            == 1
        )
    assert h.value("throttle_proxy_retry_backoff_seconds_count", service="ec2") == 2
    assert h.value("throttle_proxy_retry_backoff_seconds_sum", service="ec2") == pytest.approx(1.5)
    # 500 - 5 - 5 + 5 (the last retry's cost comes back on success)
    assert h.runner.quota.available("ec2") == 495
    assert h.quota_gauge("ec2") == 495
    assert h.throttled == [EC2_DESCRIBE, EC2_DESCRIBE]
    assert h.succeeded == [EC2_DESCRIBE]


async def test_transient_errors_use_the_short_base() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(500), answer(502), answer(200)])
    result = await h.runner.run(S3_GET, send, replayable=True)
    assert result.attempts == 3
    assert h.slept == pytest.approx([0.025, 0.05])
    assert h.retries("s3", "transient") == 2
    assert h.attempts("s3", "GetObject", "error") == 2
    assert h.runner.quota.available("s3") == 500 - 14 - 14 + 14
    assert h.succeeded == [S3_GET] * 3  # non-throttle answers count as successes for adaptive


async def test_attempts_run_out_and_the_last_error_goes_back() -> None:
    h = Harness()
    errors = [answer(503, "SlowDown") for _ in range(3)]
    send = ScriptedSend(h.clock, errors)
    result = await h.runner.run(S3_GET, send, replayable=True)
    assert result.attempts == 3
    assert result.response is errors[2]
    # The pipeline's request context releases every answer (one owner), never the loop.
    assert not any(error.released for error in errors)
    assert result.verdict.reason == "throttling"
    assert h.retries("s3", "throttling") == 2
    assert h.runner.quota.available("s3") == 490  # no refund without a success


async def test_final_errors_are_not_retried() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(400, "ValidationException"), answer(200)])
    result = await h.runner.run(DDB_GET, send, replayable=True)
    assert (result.attempts, result.response.status) == (1, 400)
    assert result.verdict.kind == "final"
    assert result.verdict.error_code == "ValidationException"
    assert h.attempts("dynamodb", "GetItem", "client_error") == 1
    assert h.slept == []


async def test_dynamodb_gets_four_attempts() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(400, "ProvisionedThroughputExceededException")])
    result = await h.runner.run(DDB_GET, send, replayable=True)
    assert result.attempts == 4
    assert send.numbers == [1, 2, 3, 4]
    assert h.slept == pytest.approx([0.5, 1.0, 2.0])


async def test_dynamodb_transient_retries_use_the_sdks_25ms_base() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(500), answer(500), answer(500), answer(200)])
    result = await h.runner.run(DDB_GET, send, replayable=True)
    assert result.attempts == 4
    assert h.slept == pytest.approx([0.0125, 0.025, 0.05])  # 0.5 * 25 ms * 2**n
    other = Harness()
    await other.runner.run(S3_GET, ScriptedSend(other.clock, [answer(500), answer(200)]), True)
    assert other.slept == pytest.approx([0.025])  # 0.5 * 50 ms elsewhere


async def test_a_configured_base_delay_wins_for_dynamodb() -> None:
    h = Harness(RetryConfig(base_delay=0.05))
    send = ScriptedSend(h.clock, [answer(500), answer(200)])
    await h.runner.run(DDB_GET, send, replayable=True)
    assert h.slept == pytest.approx([0.025])


def test_max_attempts_resolution() -> None:
    default = RetryConfig()
    assert max_attempts_for(default, "ec2") == 3
    assert max_attempts_for(default, "dynamodb") == 4
    configured = RetryConfig(max_attempts=2, service_max_attempts={"s3": 5})
    assert max_attempts_for(configured, "dynamodb") == 2  # configured wins over the SDK's 4
    assert max_attempts_for(configured, "s3") == 5
    assert max_attempts_for(RetryConfig(service_max_attempts={"dynamodb": 1}), "dynamodb") == 1


@pytest.mark.parametrize(
    ("config", "replayable"),
    [(RetryConfig(max_attempts=1), True), (RetryConfig(), False)],
    ids=["max_attempts_1", "not_replayable"],
)
async def test_single_attempt(config: RetryConfig, replayable: bool) -> None:
    h = Harness(config)
    send = ScriptedSend(h.clock, [answer(503, "SlowDown"), answer(200)])
    result = await h.runner.run(S3_GET, send, replayable=replayable)
    assert (result.attempts, result.response.status) == (1, 503)
    assert h.retries("s3", "throttling") == 0
    assert h.value("throttle_proxy_retry_quota_exhausted_total", service="s3") == 0
    assert h.runner.quota.available("s3") == 500


async def test_connection_errors_are_retried_then_raised_with_attempts() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [UpstreamUnavailable("reset"), UpstreamTimeout("slow")])
    with pytest.raises(UpstreamTimeout) as raised:
        await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    assert raised.value.attempts == 3
    assert h.attempts("ec2", "DescribeInstances", "connection") == 1
    assert h.attempts("ec2", "DescribeInstances", "timeout") == 2
    assert h.retries("ec2", "connection") == 1
    assert h.retries("ec2", "timeout") == 1
    assert h.succeeded == []  # no answer: nothing for the adaptive limiter


async def test_connection_error_then_success() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [UpstreamUnavailable("reset"), answer(200)])
    result = await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    assert result.attempts == 2
    assert h.slept == pytest.approx([0.025])


async def test_errors_before_sending_are_final() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [NoCredentials("none")])
    with pytest.raises(NoCredentials) as raised:
        await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    assert raised.value.attempts == 0  # nothing reached the wire
    assert send.numbers == [1]
    assert h.attempts("ec2", "DescribeInstances", "error") == 0


def test_refusals_made_before_any_attempt_report_none() -> None:
    """The pipeline's own refusals never pass through the loop: nothing was sent."""
    refusals: list[ProxyError] = [
        HostNotAllowed("h"),
        PayloadTooLarge("p"),
        RateLimited("r", 1.0, "rule"),
        NoCredentials("n"),
        BadRequest("b"),
    ]
    assert [error.attempts for error in refusals] == [0] * len(refusals)


@pytest.mark.parametrize(
    ("steps", "limit", "replayable", "expected"),
    [
        # fast path: the first attempt ends it
        ([UpstreamUnavailable("reset")], 1, True, 1),
        ([UpstreamTimeout("slow")], 3, False, 1),
        ([NoCredentials("none")], 3, True, 0),
        # the tenacity path: attempts run out, or a later attempt fails before sending
        ([UpstreamUnavailable("reset")], 2, True, 2),
        ([UpstreamTimeout("slow"), UpstreamUnavailable("reset")], 4, True, 4),
        ([UpstreamUnavailable("reset"), NoCredentials("expired")], 3, True, 1),
        ([answer(503), UpstreamTimeout("slow"), NoCredentials("expired")], 3, True, 2),
        # the pipeline's limiter refuses the retry inside send: it never left
        ([answer(503), RateLimited("over", 1.0, "rule")], 3, True, 1),
    ],
    ids=[
        "fast-connection",
        "fast-not-replayable",
        "fast-before-send",
        "limit-2",
        "limit-4",
        "second-before-send",
        "third-before-send",
        "retry-rate-limited",
    ],
)
async def test_every_raise_carries_the_attempts_that_were_sent(
    steps: list[Step], limit: int, replayable: bool, expected: int
) -> None:
    h = Harness(RetryConfig(max_attempts=limit))
    send = ScriptedSend(h.clock, steps)
    with pytest.raises(ProxyError) as raised:
        await h.runner.run(EC2_DESCRIBE, send, replayable=replayable)
    assert raised.value.attempts == expected
    counted = sum(
        h.attempts("ec2", "DescribeInstances", outcome)
        for outcome in ("connection", "timeout", "error", "success")
    )
    assert counted == expected  # the header agrees with upstream_attempts_total


async def test_exhausted_quota_raise_carries_the_attempts() -> None:
    h = Harness(RetryConfig(quota=14))
    send = ScriptedSend(h.clock, [UpstreamUnavailable("reset")])
    with pytest.raises(UpstreamUnavailable) as raised:
        await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    # one retry (14 tokens) fits, the next does not
    assert raised.value.attempts == 2
    assert h.value("throttle_proxy_retry_quota_exhausted_total", service="ec2") == 1


async def test_empty_quota_returns_the_error_at_once() -> None:
    h = Harness(RetryConfig(quota=20))
    send = ScriptedSend(h.clock, [answer(500)])
    first = await h.runner.run(S3_GET, send, replayable=True)
    # 20 tokens: one retry (14) fits, the second (14) does not.
    assert first.attempts == 2
    assert h.value("throttle_proxy_retry_quota_exhausted_total", service="s3") == 1
    second = await h.runner.run(S3_GET, ScriptedSend(h.clock, [answer(500)]), replayable=True)
    assert second.attempts == 1
    assert second.response.status == 500
    assert h.value("throttle_proxy_retry_quota_exhausted_total", service="s3") == 2
    assert h.runner.quota.available("s3") == 6
    assert h.quota_gauge("s3") == 6
    assert len(h.slept) == 1


async def test_quota_drains_and_refills_across_requests() -> None:
    h = Harness(RetryConfig(quota=30))
    for _ in range(6):  # 6 throttled-then-ok requests: each nets 0 (5 out, 5 back)
        send = ScriptedSend(h.clock, [answer(429), answer(200)])
        assert (await h.runner.run(EC2_DESCRIBE, send, replayable=True)).attempts == 2
    assert h.runner.quota.available("ec2") == 30
    for _ in range(6):  # throttled to the end: 2 retries each until the quota is gone
        await h.runner.run(EC2_DESCRIBE, ScriptedSend(h.clock, [answer(429)]), True)
    assert h.runner.quota.available("ec2") == 0
    assert h.value("throttle_proxy_retry_quota_exhausted_total", service="ec2") == 3
    assert h.retries("ec2", "throttling") == 6 + 6


async def test_no_backoff_past_the_deadline() -> None:
    h = Harness(RetryConfig(max_total_time=2.0), rand=0.99)
    send = ScriptedSend(h.clock, [answer(503, "SlowDown")], took=0.4)
    result = await h.runner.run(S3_GET, send, replayable=True)
    # t=0.4 +0.99 s backoff -> 1.39; attempt 2 ends at 1.79; 1.98 more would end past 2.0.
    assert result.attempts == 2
    assert h.slept == pytest.approx([0.99])
    assert h.runner.quota.available("s3") == 495  # the refused retry took nothing


async def test_x_amz_retry_after_stretches_the_backoff() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(429, **{"x-amz-retry-after": "3000"}), answer(200)])
    await h.runner.run(EC2_DESCRIBE, send, replayable=True)
    assert h.slept == pytest.approx([3.0])


async def test_cancelled_backoff_stops_the_loop() -> None:
    h = Harness()
    send = ScriptedSend(h.clock, [answer(503, "SlowDown"), answer(200)])

    async def cancelled_sleep(seconds: float) -> None:
        raise asyncio.CancelledError

    h.runner.sleep = cancelled_sleep
    with pytest.raises(asyncio.CancelledError):
        await h.runner.run(S3_GET, send, replayable=True)
    assert send.numbers == [1]


async def test_cancelling_the_request_task_mid_attempt() -> None:
    h = Harness()
    started = asyncio.Event()
    calls: list[int] = []

    async def hanging_send(number: int) -> UpstreamResponse:
        calls.append(number)
        started.set()
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    task = asyncio.create_task(h.runner.run(S3_GET, hanging_send, replayable=True))
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert calls == [1]
    assert h.slept == []


async def test_labels_stay_bounded_whatever_clients_and_servers_send() -> None:
    h = Harness()
    garbage = Operation("ec2", "DROP TABLE; <script>", protocol="ec2")
    send = ScriptedSend(h.clock, [answer(429, "WhateverTheServerSays"), answer(200)])
    await h.runner.run(garbage, send, replayable=True)
    assert h.attempts("ec2", "other", "throttled") == 1
    assert h.attempts("ec2", "other", "success") == 1
    throttled = [
        sample.labels
        for family in h.metrics.registry.collect()
        for sample in family.samples
        if sample.name == "throttle_proxy_upstream_throttled_total"
    ]
    assert throttled == [{"service": "ec2", "operation": "other", "error_code": "other"}]


async def test_update_config_keeps_quota_and_changes_attempts() -> None:
    h = Harness()
    await h.runner.run(S3_GET, ScriptedSend(h.clock, [answer(500)]), replayable=True)
    assert h.runner.quota.available("s3") == 500 - 28
    h.runner.update_config(RetryConfig(max_attempts=5, quota=1000))
    assert h.runner.quota.available("s3") == 1000 - 28
    assert h.quota_gauge("s3") == 1000 - 28
    send = ScriptedSend(h.clock, [answer(500)])
    result = await h.runner.run(S3_GET, send, replayable=True)
    assert result.attempts == 5
