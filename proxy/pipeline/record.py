"""The record of one request, whatever happened to it: the metrics, the run report's entry
and the one log line (at info and debug only; above them it is not even built)."""

from __future__ import annotations

import time

from proxy.aws.operations import Operation
from proxy.observability.hotmetrics import HotCounterChild, HotHistogramChild
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics, status_class
from proxy.observability.requestlog import write_request_line
from proxy.pipeline.context import RequestContext
from proxy.report.recorder import RunRecorder

log = get_logger("proxy.request")
# Series looked up, by what their labels are made of: (service, the operation's service and
# name, status). Names are the client's, so the map is bounded: when full it starts afresh.
_SeriesKey = tuple[str, str | None, str | None, int]
MAX_SERIES = 4096


class _Series:
    """What one kind of request updates: its metric children and its operation label."""

    __slots__ = ("duration", "operation", "requests")

    def __init__(self, metrics: Metrics, service: str, op: Operation | None, status: int) -> None:
        self.operation = op.label if op else "other"
        self.requests: HotCounterChild = metrics.requests_total.labels(
            service, self.operation, status_class(status)
        )
        self.duration: HotHistogramChild = metrics.request_duration_seconds.labels(
            service, self.operation
        )


class RequestRecord:
    """Writes each finished request's record; holds the metric children it looked up."""

    def __init__(self, metrics: Metrics, recorder: RunRecorder | None, log_requests: bool) -> None:
        self._metrics = metrics
        self.recorder = recorder
        self._log_requests = log_requests
        self._series: dict[_SeriesKey, _Series] = {}

    def __call__(self, ctx: RequestContext) -> None:
        duration = time.perf_counter() - ctx.started
        target, op, status = ctx.target, ctx.operation, ctx.status
        service = target.endpoint.service if target else "unknown"
        key = (service, op.service, op.name, status) if op else (service, None, None, status)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key, service, op, status)
        series.requests.inc()
        series.duration.observe(duration)
        if self.recorder is not None:
            refused = ctx.error == "rate-limited"
            self.recorder.request(service, series.operation, status, duration, ctx.waited, refused)
        if not self._log_requests:
            return
        write_request_line(
            log,
            request_id=ctx.request_id,
            method=ctx.exchange.method,
            host=target.host_header if target else None,
            service=service,
            operation=op.name if op else None,
            status=status,
            duration_ms=duration * 1000,
            attempts=ctx.attempts,
            waited_ms=ctx.waited * 1000,
            aws_request_id=ctx.aws_request_id,
            error=ctx.error,
        )

    def _new_series(
        self, key: _SeriesKey, service: str, op: Operation | None, status: int
    ) -> _Series:
        if len(self._series) >= MAX_SERIES:
            self._series.clear()
        series = self._series[key] = _Series(self._metrics, service, op, status)
        return series
