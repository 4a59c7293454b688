"""The run report as an aligned text table, for a terminal or a CI log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# (heading, key, kind): kind "n" a count, "s" seconds shown in ms.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("service", "service", "text"),
    ("operation", "operation", "text"),
    ("requests", "requests", "n"),
    ("at once", "admitted_at_once", "n"),
    ("delayed", "delayed", "n"),
    ("refused", "refused_locally", "n"),
    ("throttled", "throttled_by_aws", "n"),
    ("faults", "faults_injected", "n"),
    ("retries", "retries", "n"),
    ("quota left", "retry_quota_left", "n"),
    ("p50 ms", "latency_p50", "s"),
    ("p99 ms", "latency_p99", "s"),
    ("wait p50 ms", "wait_p50", "s"),
    ("wait p99 ms", "wait_p99", "s"),
)


def cell(value: object, kind: str) -> str:
    if kind == "s":
        return f"{float(value) * 1000:.1f}"  # type: ignore[arg-type]
    return str(value)


def total_cell(totals: Mapping[str, Any], key: str, kind: str) -> str:
    """The totals row's cell: counts add up, the rest (quantiles, quota) do not."""
    if key == "service":
        return "total"
    return cell(totals[key], kind) if key in totals else ""


def render_table(report: Mapping[str, Any]) -> str:
    """Header line, one row per service and operation, then the totals."""
    rows: list[Sequence[str]] = [[heading for heading, _, _ in COLUMNS]]
    for op in report["operations"]:
        rows.append([cell(op[key], kind) for _, key, kind in COLUMNS])
    totals = report["totals"]
    rows.append([total_cell(totals, key, kind) for _, key, kind in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        f"run report since {report['since']} ({report['elapsed_seconds']:.1f} s)",
    ]
    for row in rows:
        lines.append(
            "  ".join(
                text.ljust(width) if COLUMNS[i][2] == "text" else text.rjust(width)
                for i, (text, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines) + "\n"
