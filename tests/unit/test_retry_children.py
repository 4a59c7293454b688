"""The metric child cache: one `labels()` call per label tuple, exported values unchanged."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import Counter, Histogram

from proxy.aws.operations import Operation
from proxy.config.model import RetryConfig
from proxy.observability.hotmetrics import HotCounter
from proxy.observability.metrics import Metrics
from proxy.retry import AttemptRunner
from proxy.retry import children as children_module
from proxy.retry.children import ChildCache
from proxy.upstream.client import UpstreamResponse
from tests.fakes.clock import FakeClock

EC2_DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2")


class CountingLabels:
    """Wraps a metric's `labels` to count the calls that reach prometheus_client."""

    def __init__(self, metric: Counter | Histogram | HotCounter) -> None:
        self.calls = 0
        self._labels = metric.labels

    def __call__(self, *values: str) -> object:
        self.calls += 1
        return self._labels(*values)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_same_child_comes_back_and_counts_where_labels_would() -> None:
    metrics = Metrics()
    cache = ChildCache(metrics.retries_total)
    first = cache.child(("ec2", "throttling"))
    assert cache.child(("ec2", "throttling")) is first
    assert first is metrics.retries_total.labels("ec2", "throttling")
    first.inc()
    cache.child(("ec2", "throttling")).inc(2)
    cache.child(("s3", "transient")).inc()
    assert sample(metrics, "throttle_proxy_retries_total", service="ec2", reason="throttling") == 3
    assert sample(metrics, "throttle_proxy_retries_total", service="s3", reason="transient") == 1


def test_past_the_cap_lookups_still_work_uncached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(children_module, "MAX_CACHED_CHILDREN", 2)
    metrics = Metrics()
    counting = CountingLabels(metrics.retry_backoff_seconds)
    monkeypatch.setattr(metrics.retry_backoff_seconds, "labels", counting)
    cache = ChildCache(metrics.retry_backoff_seconds)
    for service in ("a", "b", "c", "c", "a"):
        cache.child((service,)).observe(0.5)
    assert counting.calls == 4  # a, b cached; c asked twice
    assert sample(metrics, "throttle_proxy_retry_backoff_seconds_count", service="c") == 2
    assert sample(metrics, "throttle_proxy_retry_backoff_seconds_count", service="a") == 2


async def test_the_loop_asks_prometheus_once_per_label_tuple(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = Metrics()
    counting = CountingLabels(metrics.upstream_attempts_total)
    monkeypatch.setattr(metrics.upstream_attempts_total, "labels", counting)
    runner = AttemptRunner(RetryConfig(), metrics, clock=FakeClock())
    ok = UpstreamResponse(200, CIMultiDictProxy(CIMultiDict()), None, None)

    async def send(_: int) -> UpstreamResponse:
        return ok

    for _ in range(50):
        await runner.run(EC2_DESCRIBE, send, replayable=True)
    assert counting.calls == 1
    assert (
        sample(
            metrics,
            "throttle_proxy_upstream_attempts_total",
            service="ec2",
            operation="DescribeInstances",
            outcome="success",
        )
        == 50
    )
