"""Counters and histograms updated on every request, exported exactly as prometheus_client's.

A prometheus_client child takes a lock and re-checks that it is observable on every update:
about 1 us per counter increment and 2.2 us per histogram observation here, for threads the
proxy does not have (every update and every scrape runs on the one event-loop thread). The
metrics every request updates (requests, their duration, rate-limit decisions and waits) are
these instead: plain numbers, read by a collector when Prometheus scrapes, under the same
names, help, labels and buckets, with the same `_total`, `_bucket`, `_count`, `_sum` and
`_created` samples (tests/unit/test_hotmetrics.py compares the two expositions).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# How prometheus_client spells a bucket bound (`le`); typed here, the library's is not.
_bound_text: Callable[[float], str] = floatToGoString


class HotCounterChild:
    """One label set's count."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class HotHistogramChild:
    """One label set's observations: a count per bucket (not cumulative) and their sum."""

    __slots__ = ("_upper", "counts", "created", "sum")

    def __init__(self, upper: tuple[float, ...]) -> None:
        self._upper = upper
        self.counts = [0] * len(upper)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount != amount:
            return  # NaN: in the sum, in no bucket (and so not in _count), as prometheus_client
        # The first bucket whose upper bound is >= amount, as prometheus_client counts it.
        self.counts[bisect_left(self._upper, amount)] += 1


class _Family:
    """What the two kinds share: a name, help, label names, children by label values."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)

    def _key(self, values: tuple[object, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        return tuple(str(value) for value in values)

    def describe(self) -> list[Metric]:
        # Lets the registry refuse a second metric of the same name, as it does for its own.
        return list(self._families([]))

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError

    def _families(self, rows: list[tuple[tuple[str, ...], object]]) -> Iterator[Metric]:
        raise NotImplementedError


class HotCounter(_Family):
    """A labelled counter (`name` ends in `_total`, as prometheus_client's Counter takes it)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames)
        self._children: dict[tuple[str, ...], HotCounterChild] = {}
        registry.register(self)  # last: the registry calls describe()

    def labels(self, *values: object) -> HotCounterChild:
        key = self._key(values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HotCounterChild()
        return child

    def collect(self) -> Iterator[Metric]:
        return self._families(list(self._children.items()))

    def _families(self, rows: list[tuple[tuple[str, ...], object]]) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in rows:
            assert isinstance(child, HotCounterChild)
            family.add_metric(key, child.value, created=child.created)
        yield family


class HotHistogram(_Family):
    """A labelled histogram with fixed buckets (+Inf added, as prometheus_client does)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        upper = tuple(float(bound) for bound in buckets)
        self._upper = upper if upper and upper[-1] == math.inf else (*upper, math.inf)
        self._bounds = [_bound_text(bound) for bound in self._upper]
        self._children: dict[tuple[str, ...], HotHistogramChild] = {}
        registry.register(self)  # last: the registry calls describe()

    def labels(self, *values: object) -> HotHistogramChild:
        key = self._key(values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HotHistogramChild(self._upper)
        return child

    def collect(self) -> Iterator[Metric]:
        return self._families(list(self._children.items()))

    def _families(self, rows: list[tuple[tuple[str, ...], object]]) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created: list[Sample] = []
        for key, child in rows:
            assert isinstance(child, HotHistogramChild)
            cumulative, buckets = 0, []
            for bound, count in zip(self._bounds, child.counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric(key, buckets, child.sum)
            labels = dict(zip(self.labelnames, key, strict=True))
            created.append(Sample(self.name + "_created", labels, child.created))
        # prometheus_client lists each child's _created after its _sum.
        family.samples = _interleave_created(family.samples, created, len(self._bounds) + 2)
        yield family


def _interleave_created(
    samples: list[Sample], created: list[Sample], per_child: int
) -> list[Sample]:
    ordered: list[Sample] = []
    for index, stamp in enumerate(created):
        ordered.extend(samples[index * per_child : (index + 1) * per_child])
        ordered.append(stamp)
    return ordered
