"""The run report as plain data: what `GET /report` serves and `throttle-proxy report` prints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from proxy.report.recorder import TIMELINE_COLUMNS, RunRecorder

ROW_COUNTS = (
    "requests",
    "admitted_at_once",
    "delayed",
    "refused_locally",
    "throttled_by_aws",
    "faults_injected",
    "retries",
    "errors",
)


def build_report(
    recorder: RunRecorder,
    quota_left: Callable[[str], int],
    faults: list[dict[str, object]],
) -> dict[str, Any]:
    """The report since the recorder's start or last reset (times in seconds)."""
    operations: list[dict[str, Any]] = []
    for (service, operation), row in sorted(recorder.rows.items()):
        entry: dict[str, Any] = {"service": service, "operation": operation}
        entry.update({name: getattr(row, name) for name in ROW_COUNTS})
        entry["retry_quota_left"] = quota_left(service)
        entry["latency_p50"] = row.latency.quantile(0.50)
        entry["latency_p99"] = row.latency.quantile(0.99)
        entry["wait_p50"] = row.wait.quantile(0.50)
        entry["wait_p99"] = row.wait.quantile(0.99)
        operations.append(entry)
    totals = {name: sum(op[name] for op in operations) for name in ROW_COUNTS}
    return {
        "since": datetime.fromtimestamp(recorder.started_wall, UTC).isoformat(),
        "elapsed_seconds": round(recorder.elapsed(), 3),
        "totals": totals,
        "operations": operations,
        "faults": faults,
        "timeline": {
            "columns": list(TIMELINE_COLUMNS),
            "points": [list(point) for point in recorder.timeline],
        },
    }
