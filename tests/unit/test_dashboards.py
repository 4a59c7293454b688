"""The Grafana dashboard and the Prometheus alerts only use metrics the proxy exports.

Every `throttle_proxy_*` name in every expression must be a series the registry exposes
(counters as `_total`, histograms as `_bucket`/`_sum`/`_count`), and every label an expression
groups by, filters on or prints in an annotation must be one of that metric's labels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.observability.hotmetrics import HotCounter, HotHistogram
from proxy.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "throttle-proxy.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

METRIC_NAME = re.compile(r"\bthrottle_proxy_\w+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
ANNOTATION_LABEL = re.compile(r"\$labels\.(\w+)")
# Labels Prometheus or histograms add themselves.
IMPLICIT_LABELS = {"le", "job", "instance", "namespace", "pod", "container"}


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, as the proxy's /metrics would expose them."""
    series: dict[str, set[str]] = {}
    metrics = Metrics()
    for collector in metrics.__dict__.values():
        if isinstance(collector, HotCounter | HotHistogram):
            labels, name = set(collector.labelnames), collector.name
            kind = "counter" if isinstance(collector, HotCounter) else "histogram"
        elif hasattr(collector, "_labelnames"):  # prometheus_client's own kinds
            labels = set(collector._labelnames)
            name = collector._name
            kind = collector._type
        else:
            continue
        if kind == "counter":
            series[name + "_total"] = labels
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                series[name + suffix] = labels
        else:
            series[name] = labels
    # Cross-check against the registry itself: nothing exported is missed above.
    families = {f.name for f in metrics.registry.collect()}
    assert {re.sub(r"_(total|bucket|sum|count)$", "", s) for s in series} >= families
    return series


SERIES = exported_series()


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(board["panels"])
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            found.append((f"${variable['name']}", variable["definition"]))
    return found


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}, "a plain Prometheus rule file: only `groups:`"
    return [rule for group in document["groups"] for rule in group["rules"]]


ALL_EXPRS = dashboard_exprs() + [(rule["alert"], rule["expr"]) for rule in alert_rules()]


def test_the_series_list_is_real() -> None:
    assert "throttle_proxy_requests_total" in SERIES
    assert "throttle_proxy_request_duration_seconds_bucket" in SERIES
    assert "throttle_proxy_requests" not in SERIES  # counters are only exposed as _total
    assert "throttle_proxy_retry_quota_available" in SERIES
    assert SERIES["throttle_proxy_retries_total"] == {"service", "reason"}


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_every_expression_names_exported_metrics(where: str, expr: str) -> None:
    names = METRIC_NAME.findall(expr)
    assert names, f"{where}: no throttle_proxy_ metric in {expr!r}"
    unknown = sorted(set(names) - set(SERIES))
    assert not unknown, f"{where}: not exported by the proxy: {unknown}"


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_every_label_used_exists_on_the_metrics(where: str, expr: str) -> None:
    available = set().union(*(SERIES[n] for n in METRIC_NAME.findall(expr))) | IMPLICIT_LABELS
    used = {
        label.strip()
        for group in GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }
    used |= set(MATCHER.findall(expr))
    assert used <= available, f"{where}: unknown labels {sorted(used - available)}"


def test_alert_annotations_print_real_labels() -> None:
    for rule in alert_rules():
        available = set().union(*(SERIES[n] for n in METRIC_NAME.findall(rule["expr"])))
        text = json.dumps(rule.get("annotations", {}))
        printed = set(ANNOTATION_LABEL.findall(text))
        assert printed <= available, f"{rule['alert']}: {sorted(printed - available)}"


def test_the_alerts_the_issue_asks_for() -> None:
    by_metric = {
        name: rule["alert"] for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])
    }
    for needed in (
        "throttle_proxy_upstream_throttled_total",  # sustained throttling
        "throttle_proxy_retry_quota_exhausted_total",  # exhausted budget
        "throttle_proxy_credentials_expiry_timestamp_seconds",  # close to expiry
        "throttle_proxy_ratelimit_decisions_total",  # limiter refusals
    ):
        assert needed in by_metric, f"no alert on {needed}"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    used = {name for _, expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    for needed in (
        "throttle_proxy_requests_total",
        "throttle_proxy_request_duration_seconds_bucket",
        "throttle_proxy_upstream_throttled_total",
        "throttle_proxy_retries_total",
        "throttle_proxy_ratelimit_decisions_total",
        "throttle_proxy_ratelimit_wait_seconds_bucket",
        "throttle_proxy_retry_quota_available",
        "throttle_proxy_retry_quota_exhausted_total",
        "throttle_proxy_credentials_expiry_timestamp_seconds",
    ):
        assert needed in used, f"the dashboard does not show {needed}"
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs
    assert "histogram_quantile(0.99," in exprs


def test_dashboard_panels_are_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] == "throttle-proxy"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
