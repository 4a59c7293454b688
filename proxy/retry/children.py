"""Metric children looked up once per label tuple instead of once per attempt.

prometheus_client's `labels()` validates and stringifies its arguments and takes the metric's
lock on every call; the retry loop calls it several times per request. The labels are bounded
(service, operation label, outcome, reason), so the children are kept in a dict keyed by the
label tuple. The dict is capped all the same: past `MAX_CACHED_CHILDREN` a lookup falls back
to `labels()` uncached, so a flood of odd services cannot grow it without end. Only for
metrics whose children are never `remove()`d: a removed child kept here would count unseen.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

MAX_CACHED_CHILDREN = 4096

Metric = TypeVar("Metric", Counter, Gauge, Histogram)


class ChildCache(Generic[Metric]):
    """The children of one labelled metric, by label values (in the metric's label order)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Metric) -> None:
        self._metric: Metric = metric
        self._children: dict[tuple[str, ...], Metric] = {}

    def child(self, labels: tuple[str, ...]) -> Metric:
        """The child for `labels`, created by `labels()` the first time it is asked for."""
        found = self._children.get(labels)
        if found is not None:
            return found
        created: Metric = self._metric.labels(*labels)
        if len(self._children) < MAX_CACHED_CHILDREN:
            self._children[labels] = created
        return created
