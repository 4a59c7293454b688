"""The attempt loop over a real UpstreamClient against the scripted fake upstream.

Attempts are counted where they land (at the upstream) for every verdict: each protocol's
throttling format, transient 5xx with empty and HTML bodies, codes that are never retried,
connection resets and timeouts, the deadline, and exact metric values.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import RetryConfig, UpstreamConfig
from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.observability.metrics import Metrics
from proxy.retry import AttemptResult, AttemptRunner
from proxy.upstream.client import UpstreamClient, UpstreamResponse
from proxy.upstream.http1 import Origin
from tests.fakes.scripted_upstream import (
    RESET,
    SCRIPT_HEADER,
    Reply,
    ScriptedUpstream,
    error,
    ok,
)

FAST = RetryConfig(base_delay=0.005, throttle_base_delay=0.01, max_backoff=0.05)
EC2 = Operation("ec2", "DescribeInstances", protocol="ec2")
DDB = Operation("dynamodb", "GetItem", protocol="json")
S3 = Operation("s3", "GetObject", bucket="b", key="k", protocol="rest-xml")
STS = Operation("sts", "GetCallerIdentity", protocol="query")
LAMBDA = Operation("lambda", "Invoke", protocol="rest-json")


@dataclass
class Rig:
    upstream: ScriptedUpstream
    url: str
    client: UpstreamClient
    metrics: Metrics
    runner: AttemptRunner

    async def run(
        self,
        op: Operation,
        script: str,
        method: str = "POST",
        replayable: bool = True,
        deadline: float | None = None,
    ) -> AttemptResult:
        async def send(number: int) -> UpstreamResponse:
            headers = [("Host", "upstream"), (SCRIPT_HEADER, script), ("x-attempt", str(number))]
            body = b"Action=Test" if method == "POST" else None
            origin = Origin("http", "127.0.0.1", int(self.url.rsplit(":", 1)[1]))
            return await self.client.send(method, origin, "/", headers, body)

        result = await self.runner.run(op, send, replayable, deadline)
        result.response.release()
        return result

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    upstream = ScriptedUpstream()
    client = UpstreamClient(UpstreamConfig(connect_timeout=1.0, read_timeout=0.3))
    metrics = Metrics()
    runner = AttemptRunner(FAST, metrics, clock=SystemClock())
    async with upstream.running() as url:
        yield Rig(upstream, url, client, metrics, runner)
        await client.close()


THROTTLES_THEN_OK = [
    (STS, error(400, "Throttling", "query")),
    (EC2, error(503, "RequestLimitExceeded", "ec2")),
    (DDB, error(400, "ProvisionedThroughputExceededException", "json")),
    (LAMBDA, error(429, "TooManyRequestsException", "rest-json")),
    (S3, error(503, "SlowDown", "rest-xml")),
    (S3, error(429, None, "empty")),
]


@pytest.mark.parametrize(
    ("op", "throttle"), THROTTLES_THEN_OK, ids=[r.error_format for _, r in THROTTLES_THEN_OK]
)
async def test_throttles_in_every_format_are_retried(
    rig: Rig, op: Operation, throttle: Reply
) -> None:
    rig.upstream.script("t", throttle, throttle, ok())
    result = await rig.run(op, "t")
    assert result.response.status == 200
    assert result.attempts == 3
    assert [a.header("x-attempt") for a in rig.upstream.attempts_of("t")] == ["1", "2", "3"]
    label = throttle.code or "other"
    assert (
        rig.sample(
            "throttle_proxy_upstream_throttled_total",
            service=op.service,
            operation=op.name or "",
            error_code=label,
        )
        == 2
    )
    assert rig.sample("throttle_proxy_retries_total", service=op.service, reason="throttling") == 2


@pytest.mark.parametrize(
    "reply",
    [
        error(500, None, "empty"),
        error(502, None, "html"),
        error(503, None, "html"),
        error(504, None, "empty"),
        error(500, "InternalError", "rest-xml"),
        error(400, "RequestTimeout", "rest-xml"),
    ],
    ids=["500-empty", "502-html", "503-html", "504-empty", "500-InternalError", "RequestTimeout"],
)
async def test_transient_errors_are_retried(rig: Rig, reply: Reply) -> None:
    rig.upstream.script("t", reply, ok())
    result = await rig.run(S3, "t")
    assert (result.response.status, result.attempts) == (200, 2)
    assert len(rig.upstream.attempts_of("t")) == 2
    assert rig.sample("throttle_proxy_retries_total", service="s3", reason="transient") == 1


@pytest.mark.parametrize(
    "reply",
    [
        error(501, None, "empty"),
        error(403, "AccessDenied", "rest-xml"),
        error(403, "SignatureDoesNotMatch", "query"),
        error(404, "NoSuchKey", "rest-xml"),
        error(400, "ValidationException", "json"),
        error(401, "AuthFailure", "ec2"),
    ],
    ids=lambda r: f"{r.status}-{r.code}",
)
async def test_final_errors_are_sent_once(rig: Rig, reply: Reply) -> None:
    rig.upstream.script("t", reply, ok())
    result = await rig.run(EC2, "t")
    assert (result.response.status, result.attempts) == (reply.status, 1)
    assert len(rig.upstream.attempts_of("t")) == 1
    assert result.verdict.error_code == reply.code


async def test_dynamodb_throttled_to_the_end_makes_four_attempts(rig: Rig) -> None:
    rig.upstream.script("t", error(400, "ThrottlingException", "json"))
    result = await rig.run(DDB, "t")
    assert (result.response.status, result.attempts) == (400, 4)
    assert len(rig.upstream.attempts_of("t")) == 4
    assert (
        rig.sample(
            "throttle_proxy_upstream_attempts_total",
            service="dynamodb",
            operation="GetItem",
            outcome="throttled",
        )
        == 4
    )
    assert rig.runner.quota.available("dynamodb") == 500 - 3 * 5


async def test_connection_reset_then_success(rig: Rig) -> None:
    rig.upstream.script("t", RESET, ok())
    result = await rig.run(EC2, "t")
    assert (result.response.status, result.attempts) == (200, 2)
    assert len(rig.upstream.attempts_of("t")) == 2
    assert (
        rig.sample(
            "throttle_proxy_upstream_attempts_total",
            service="ec2",
            operation="DescribeInstances",
            outcome="connection",
        )
        == 1
    )


async def test_resets_to_the_end_raise_with_the_attempt_count(rig: Rig) -> None:
    rig.upstream.script("t", RESET)
    with pytest.raises(UpstreamUnavailable) as raised:
        await rig.run(EC2, "t")
    assert raised.value.attempts == 3
    assert len(rig.upstream.attempts_of("t")) == 3


async def test_resets_on_idempotent_methods_reach_the_upstream_once_per_attempt(rig: Rig) -> None:
    rig.upstream.script("t", RESET)
    with pytest.raises(UpstreamUnavailable):
        await rig.run(S3, "t", method="GET")
    assert len(rig.upstream.attempts_of("t")) == 3


async def test_timeouts_are_retried(rig: Rig) -> None:
    rig.upstream.script("t", Reply(delay=0.6), ok())
    result = await rig.run(EC2, "t")
    assert (result.response.status, result.attempts) == (200, 2)
    assert rig.sample("throttle_proxy_retries_total", service="ec2", reason="timeout") == 1


async def test_timeouts_to_the_end_raise(rig: Rig) -> None:
    rig.upstream.script("t", Reply(delay=0.6))
    with pytest.raises(UpstreamTimeout) as raised:
        await rig.run(EC2, "t")
    assert raised.value.attempts == 3


async def test_body_that_cannot_be_replayed_is_sent_once(rig: Rig) -> None:
    rig.upstream.script("t", error(503, "SlowDown", "rest-xml"), ok())
    result = await rig.run(S3, "t", replayable=False)
    assert (result.response.status, result.attempts) == (503, 1)
    assert len(rig.upstream.attempts_of("t")) == 1


async def test_x_amz_retry_after_is_waited_for(rig: Rig) -> None:
    rig.upstream.script("t", error(503, "SlowDown", "rest-xml", amz_retry_after_ms=300), ok())
    await rig.run(S3, "t")
    first, second = rig.upstream.attempts_of("t")
    # jitter <= 10 ms, hint 300 ms: max(t, min(0.3, t + 5)) = 0.3 s
    assert 0.29 <= second.received_at - first.received_at < 0.6


class ReadingClock(SystemClock):
    """The system clock, remembering the last monotonic reading it gave the loop."""

    last = 0.0

    def monotonic(self) -> float:
        self.last = super().monotonic()
        return self.last


async def test_the_deadline_stops_the_loop(rig: Rig) -> None:
    # max_attempts far above what fits in the deadline: only the deadline ends this loop.
    slow_config = RetryConfig(
        max_attempts=20,
        base_delay=0.4,
        throttle_base_delay=0.4,
        max_backoff=0.4,
        max_total_time=2.0,
    )
    rig.runner.update_config(slow_config)
    clock = ReadingClock()
    rig.runner.clock = clock
    # Each backoff's planned end, on the loop's own reading of the clock (the one it compared
    # with the deadline): the loop's decisions, which a loaded machine cannot move, rather
    # than when the attempts landed (which it delays).
    planned_ends: list[float] = []

    async def planned_sleep(delay: float) -> None:
        planned_ends.append(clock.last + delay)
        await asyncio.sleep(delay)

    rig.runner.sleep = planned_sleep
    rig.upstream.script("t", error(500, None, "empty", delay=0.2))
    deadline = rig.runner.deadline()
    assert deadline is not None
    result = await rig.run(S3, "t", deadline=deadline)
    # Attempts take 0.2 s, backoffs up to 0.4 s: the second attempt is planned by 0.6 s, well
    # inside the 2 s (a loaded machine has 1.4 s to spare).
    assert result.attempts >= 2
    # Every retry waited a backoff planned to end by the deadline: no attempt was started
    # on a backoff that crosses it.
    assert len(planned_ends) == result.attempts - 1
    assert all(end <= deadline for end in planned_ends), (planned_ends, deadline)
    # The deadline ended the loop: neither max_attempts (20 attempts need 4 s) nor the quota.
    assert result.attempts < 20
    assert rig.sample("throttle_proxy_retry_quota_exhausted_total", service="s3") == 0
    assert len(rig.upstream.attempts_of("t")) == result.attempts


async def test_metrics_of_a_mixed_request_are_exact(rig: Rig) -> None:
    rig.upstream.script(
        "t", error(503, "RequestLimitExceeded", "ec2"), RESET, error(500, None, "html")
    )
    result = await rig.run(EC2, "t")
    assert (result.response.status, result.attempts) == (500, 3)

    def attempts(outcome: str) -> float:
        return rig.sample(
            "throttle_proxy_upstream_attempts_total",
            service="ec2",
            operation="DescribeInstances",
            outcome=outcome,
        )

    assert (attempts("throttled"), attempts("connection"), attempts("error")) == (1, 1, 1)
    assert rig.sample("throttle_proxy_retries_total", service="ec2", reason="throttling") == 1
    assert rig.sample("throttle_proxy_retries_total", service="ec2", reason="connection") == 1
    assert rig.sample("throttle_proxy_retry_backoff_seconds_count", service="ec2") == 2
    assert rig.sample("throttle_proxy_retry_quota_available", service="ec2") == 500 - 5 - 14
