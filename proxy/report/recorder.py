"""What a load-test run did, per service and operation, since start or since the last reset.

Fed from the same places that feed the metrics, one call each: the pipeline's end-of-request
recording (requests, local decisions, latency, wait), the attempt loop's throttle and retry
hooks, and the fault stage's injections; so its counts are the metrics' counts, split by
operation and restartable (`POST /report/reset`) without touching the cumulative metrics.
Memory is bounded: rows only for bounded labels (service, operation label), quantiles from
log-spaced histograms, and a per-second timeline over the last `window` seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from proxy.clock import Clock

# Log-spaced histogram: 5% wide buckets from 0.1 ms up; a quantile is a bucket's upper edge,
# so it is at most 5% high. Zeros (most waits) are counted apart.
_SMALLEST = 1e-4
_GROWTH = 1.05
_LOG_GROWTH = math.log(_GROWTH)
DEFAULT_WINDOW = 30 * 60  # seconds of timeline kept


@dataclass(slots=True)
class LogHistogram:
    """Counts of positive values in 5%-wide buckets; quantiles from them."""

    zeros: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0

    def add(self, value: float) -> None:
        self.count += 1
        if value <= 0:
            self.zeros += 1
            return
        index = max(0, math.ceil(math.log(value / _SMALLEST) / _LOG_GROWTH))
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1) as the upper edge of its bucket; 0.0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return _SMALLEST * _GROWTH**index
        return _SMALLEST * _GROWTH ** max(self.buckets)


@dataclass(slots=True)
class OperationStats:
    """One (service, operation) row of the report."""

    requests: int = 0
    admitted_at_once: int = 0
    delayed: int = 0
    refused_locally: int = 0
    throttled_by_aws: int = 0
    faults_injected: int = 0
    retries: int = 0
    errors: int = 0  # answers with status >= 400 (injected and refused ones included)
    latency: LogHistogram = field(default_factory=LogHistogram)
    wait: LogHistogram = field(default_factory=LogHistogram)


# Timeline columns, one row per second that saw anything.
TIMELINE_COLUMNS = (
    "second",
    "requests",
    "throttled_by_aws",
    "refused_locally",
    "faults_injected",
    "retries",
    "errors",
    "wait_max",
    "wait_sum",
)
_COUNT_COLUMNS = {name: i for i, name in enumerate(TIMELINE_COLUMNS)}


class RunRecorder:
    """Per-operation counters and quantiles, plus a bounded per-second timeline."""

    def __init__(self, clock: Clock, window: int = DEFAULT_WINDOW) -> None:
        self._clock = clock
        self._window = window
        self.reset()

    def reset(self) -> None:
        """Start a new run: every count and the timeline from zero, now."""
        self.started_wall = self._clock.time()
        self.started = self._clock.monotonic()
        self.rows: dict[tuple[str, str], OperationStats] = {}
        self.timeline: deque[list[float]] = deque(maxlen=self._window)

    def elapsed(self) -> float:
        """Seconds since the start or the last reset."""
        return self._clock.monotonic() - self.started

    def _row(self, service: str, operation: str) -> OperationStats:
        key = (service, operation)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = OperationStats()
        return row

    def _second(self) -> list[float]:
        second = int(self._clock.monotonic() - self.started)
        timeline = self.timeline
        if timeline and timeline[-1][0] == second:
            return timeline[-1]
        point = [float(second)] + [0.0] * (len(TIMELINE_COLUMNS) - 1)
        timeline.append(point)
        return point

    def _count(self, column: str, amount: float = 1.0) -> None:
        self._second()[_COUNT_COLUMNS[column]] += amount

    # -- the feeds ----------------------------------------------------------------------------

    def request(
        self,
        service: str,
        operation: str,
        status: int,
        duration: float,
        waited: float,
        refused: bool,
    ) -> None:
        """One request answered (the pipeline's end-of-request recording)."""
        row = self._row(service, operation)
        row.requests += 1
        if refused:
            row.refused_locally += 1
        elif waited > 0:
            row.delayed += 1
        else:
            row.admitted_at_once += 1
        failed = status >= 400
        if failed:
            row.errors += 1
        row.latency.add(duration)
        row.wait.add(waited)
        point = self._second()
        point[1] += 1
        if refused:
            point[3] += 1
        if failed:
            point[6] += 1
        point[7] = max(point[7], waited)
        point[8] += waited

    def throttled(self, service: str, operation: str) -> None:
        """An attempt answered with a throttle (AWS's, or an injected one at upstream)."""
        self._row(service, operation).throttled_by_aws += 1
        self._count("throttled_by_aws")

    def retried(self, service: str, operation: str) -> None:
        self._row(service, operation).retries += 1
        self._count("retries")

    def fault(self, service: str, operation: str) -> None:
        self._row(service, operation).faults_injected += 1
        self._count("faults_injected")
