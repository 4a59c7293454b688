"""The hot-path metrics export exactly what prometheus_client's Counter and Histogram would."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.observability.hotmetrics import HotCounter, HotHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OBSERVED = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 7.5, 59.9, 60.0, 61.0, 1e9, 0.01, -1.0]


def exposition(registry: CollectorRegistry) -> str:
    """The text format with the _created timestamps blanked (they differ by microseconds)."""
    text = generate_latest(registry).decode()
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text)


def test_a_counter_exports_what_prometheus_clients_does() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("x_requests_total", "Requests.", ["service", "status"], registry=theirs)
    hot = HotCounter("x_requests_total", "Requests.", ["service", "status"], registry=ours)
    for service, status, amount in [("ec2", "2xx", 1), ("s3", "5xx", 2.5), ("ec2", "2xx", 3)]:
        reference.labels(service, status).inc(amount)
        hot.labels(service, status).inc(amount)
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("x_requests_total", {"service": "ec2", "status": "2xx"}) == 4


def test_a_histogram_exports_what_prometheus_clients_does() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Time.", ["rule"], buckets=BUCKETS, registry=theirs)
    hot = HotHistogram("x_seconds", "Time.", ["rule"], buckets=BUCKETS, registry=ours)
    for index, value in enumerate(OBSERVED):
        rule = ("a", "b")[index % 2]
        reference.labels(rule).observe(value)
        hot.labels(rule).observe(value)
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("x_seconds_count", {"rule": "a"}) == 7
    assert ours.get_sample_value("x_seconds_bucket", {"rule": "b", "le": "0.01"}) == 3


def test_a_nan_observation_is_counted_as_prometheus_client_counts_it() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Time.", ["rule"], buckets=BUCKETS, registry=theirs)
    hot = HotHistogram("x_seconds", "Time.", ["rule"], buckets=BUCKETS, registry=ours)
    for value in (0.5, float("nan"), 2.0):
        reference.labels("a").observe(value)
        hot.labels("a").observe(value)
    assert exposition(ours) == exposition(theirs)  # in the sum (NaN), in no bucket


def test_empty_families_export_their_help_and_type_only() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    Counter("x_total", "X.", ["a"], registry=theirs)
    Histogram("y", "Y.", ["a"], buckets=BUCKETS, registry=theirs)
    HotCounter("x_total", "X.", ["a"], registry=ours)
    HotHistogram("y", "Y.", ["a"], buckets=BUCKETS, registry=ours)
    assert exposition(ours) == exposition(theirs)


def test_misuse_is_refused_as_prometheus_client_refuses_it() -> None:
    registry = CollectorRegistry()
    counter = HotCounter("x_total", "X.", ["a", "b"], registry=registry)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("1", "2").inc(-1)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("x_total", "again", ["a"], registry=registry)
