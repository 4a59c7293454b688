"""Metric children looked up once per label tuple instead of once per attempt.

A `labels()` call validates and stringifies its arguments (and prometheus_client's takes the
metric's lock) on every call; the retry loop needs a child several times per request. The
labels are bounded (service, operation label, outcome, reason), so the children are kept in a
dict keyed by the label tuple. The dict is capped all the same: past `MAX_CACHED_CHILDREN` a
lookup falls back to `labels()` uncached, so a flood of odd services cannot grow it without
end. Only for metrics whose children are never `remove()`d: a removed child kept here would
count unseen.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

MAX_CACHED_CHILDREN = 4096

Child = TypeVar("Child")
Child_co = TypeVar("Child_co", covariant=True)


class Labelled(Protocol[Child_co]):
    """A labelled metric: prometheus_client's kinds, or the hot ones of proxy.observability."""

    def labels(self, *values: str) -> Child_co: ...


class ChildCache(Generic[Child]):
    """The children of one labelled metric, by label values (in the metric's label order)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Labelled[Child]) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Child] = {}

    def child(self, labels: tuple[str, ...]) -> Child:
        """The child for `labels`, created by `labels()` the first time it is asked for."""
        found = self._children.get(labels)
        if found is not None:
            return found
        created = self._metric.labels(*labels)
        if len(self._children) < MAX_CACHED_CHILDREN:
            self._children[labels] = created
        return created
