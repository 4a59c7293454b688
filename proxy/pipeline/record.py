"""The record of one request, whatever happened to it: the metrics, the run report's entry
and the one log line (at info and debug only; above them it is not even built)."""

from __future__ import annotations

import time

from proxy.observability.hotmetrics import HotCounterChild, HotHistogramChild
from proxy.observability.logs import get_logger, write_request_line
from proxy.observability.metrics import Metrics, status_class
from proxy.pipeline.context import RequestContext
from proxy.report.recorder import RunRecorder

log = get_logger("proxy.request")


class RequestRecord:
    """Writes each finished request's record; holds the metric children it looked up."""

    def __init__(self, metrics: Metrics, recorder: RunRecorder | None, log_requests: bool) -> None:
        self._metrics = metrics
        self.recorder = recorder
        self._log_requests = log_requests
        self._children: dict[tuple[str, str, str], tuple[HotCounterChild, HotHistogramChild]] = {}

    def __call__(self, ctx: RequestContext) -> None:
        duration = time.perf_counter() - ctx.started
        target, op = ctx.target, ctx.operation
        service = target.endpoint.service if target else "unknown"
        operation = op.label if op else "other"
        key = (service, operation, status_class(ctx.status))
        children = self._children.get(key)
        if children is None:
            # Look each series up once (the labels are bounded, so this map is too).
            children = (
                self._metrics.requests_total.labels(*key),
                self._metrics.request_duration_seconds.labels(service, operation),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(duration)
        if self.recorder is not None:
            refused = ctx.error == "rate-limited"
            self.recorder.request(service, operation, ctx.status, duration, ctx.waited, refused)
        if not self._log_requests:
            return
        write_request_line(
            log,
            {
                "request_id": ctx.request_id,
                "method": ctx.exchange.method,
                "host": target.host_header if target else None,
                "service": service,
                "operation": op.name if op else None,
                "status": ctx.status,
                "duration_ms": round(duration * 1000, 2),
                "attempts": ctx.attempts,
                "waited_ms": round(ctx.waited * 1000, 2),
                "aws_request_id": ctx.aws_request_id,
                "error": ctx.error,
            },
        )
