"""The run report as one self-contained HTML page: inline CSS and SVG, nothing fetched.

Two charts drawn from the per-second timeline (request rate with throttles, refusals and
faults; rate-limit wait, mean and max), then the per-operation table. Made for attaching to a
load-test result, so it opens offline in any browser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from proxy.report.table import COLUMNS, cell

_WIDTH, _HEIGHT, _PAD = 1100, 260, 40
_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:bold}
svg{background:#fafafa;border:1px solid #ddd}.legend span{margin-right:16px}
.axis{stroke:#999;stroke-width:1}.label{font-size:11px;fill:#555}
"""
# (timeline column, colour, legend) per line of each chart.
_RATE_LINES = (
    ("requests", "#1f77b4", "requests/s"),
    ("throttled_by_aws", "#d62728", "throttled by AWS/s"),
    ("refused_locally", "#ff7f0e", "refused locally/s"),
    ("faults_injected", "#9467bd", "faults injected/s"),
)
_WAIT_LINES = (("wait_mean", "#2ca02c", "mean wait (ms)"), ("wait_max", "#8c564b", "max wait (ms)"))


def _series(report: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    columns: list[str] = report["timeline"]["columns"]
    points: list[list[float]] = report["timeline"]["points"]
    at = {name: i for i, name in enumerate(columns)}
    series: dict[str, list[tuple[float, float]]] = {}
    for name in columns[1:]:
        series[name] = [(p[0], p[at[name]]) for p in points]
    series["wait_max"] = [(p[0], p[at["wait_max"]] * 1000) for p in points]
    series["wait_mean"] = [
        (p[0], p[at["wait_sum"]] / p[at["requests"]] * 1000 if p[at["requests"]] else 0.0)
        for p in points
    ]
    return series


def _chart(
    chart_id: str,
    title: str,
    lines: Sequence[tuple[str, str, str]],
    series: Mapping[str, list[tuple[float, float]]],
) -> str:
    xs = [x for name, _, _ in lines for x, _ in series[name]]
    ys = [y for name, _, _ in lines for _, y in series[name]]
    x_max = max(xs, default=0.0) or 1.0
    y_max = max(ys, default=0.0) or 1.0
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD

    def scaled(x: float, y: float) -> str:
        return f"{_PAD + x / x_max * inner_w:.1f},{_HEIGHT - _PAD - y / y_max * inner_h:.1f}"

    parts = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<line class="axis" x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" '
        f'y2="{_HEIGHT - _PAD}"/>',
        f'<line class="axis" x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_HEIGHT - _PAD}"/>',
        f'<text class="label" x="{_PAD}" y="{_PAD - 8}">{y_max:g}</text>',
        f'<text class="label" x="{_WIDTH - _PAD}" y="{_HEIGHT - _PAD + 16}" '
        f'text-anchor="end">{x_max:g} s</text>',
    ]
    for name, colour, legend in lines:
        points = " ".join(scaled(x, y) for x, y in series[name])
        if len(series[name]) == 1:  # one second of data: a dot, not an invisible line
            x, y = series[name][0]
            cx, cy = scaled(x, y).split(",")
            parts.append(f'<circle class="series" cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
        parts.append(
            f'<polyline class="series" data-series="{name}" fill="none" stroke="{colour}" '
            f'stroke-width="2" points="{points}"><title>{escape(legend)}</title></polyline>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span style="color:{colour}">&#9632; {escape(text)}</span>' for _, colour, text in lines
    )
    return f'<h2>{escape(title)}</h2><div class="legend">{legend}</div>' + "".join(parts)


def _table(report: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{escape(heading)}</th>" for heading, _, _ in COLUMNS)
    body = []
    for op in report["operations"]:
        cells = "".join(
            f'<td class="{kind}">{escape(cell(op[key], kind))}</td>' for _, key, kind in COLUMNS
        )
        body.append(f"<tr>{cells}</tr>")
    totals = report["totals"]
    total_cells = "".join(
        f'<td class="{kind}">'
        + (
            "total"
            if key == "service"
            else escape(cell(totals[key], kind))
            if key in totals
            else ""
        )
        + "</td>"
        for _, key, kind in COLUMNS
    )
    body.append(f'<tr class="total">{total_cells}</tr>')
    return f'<table id="operations"><tr>{head}</tr>{"".join(body)}</table>'


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page; the report's JSON rides along in a script tag for tools to read."""
    series = _series(report)
    data = json.dumps(report).replace("</", "<\\/")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>throttle-proxy run report</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>throttle-proxy run report</h1><p>since {escape(report['since'])}, "
        f"{report['elapsed_seconds']:.1f} s; {report['totals']['requests']} requests</p>"
        + _chart("chart-rate", "Request rate and throttles", _RATE_LINES, series)
        + _chart("chart-wait", "Rate-limit wait", _WAIT_LINES, series)
        + "<h2>Per service and operation</h2>"
        + _table(report)
        + f'<script type="application/json" id="report-data">{data}</script>'
        + "</body></html>\n"
    )
