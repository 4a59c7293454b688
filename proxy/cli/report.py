"""`throttle-proxy report`: the running proxy's run report, as a table, JSON or an HTML page."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from proxy.report.html import render_html
from proxy.report.table import render_table

DEFAULT_ADMIN = "http://127.0.0.1:9090"
EXIT_UNREACHABLE = 1


def add_report_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = subparsers.add_parser(
        "report", help="print the running proxy's load-test report (from its admin listener)"
    )
    report.add_argument("--admin", default=DEFAULT_ADMIN, help=f"admin URL ({DEFAULT_ADMIN})")
    report.add_argument("--format", choices=("table", "json", "html"), default="table")
    report.add_argument("--output", "-o", help="write to this file instead of stdout")
    report.set_defaults(handler=_report)


def fetch_report(admin: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET {admin}/report as parsed JSON."""
    if not admin.startswith(("http://", "https://")):
        raise ValueError(f"--admin must be an http(s) URL, got {admin!r}")
    url = f"{admin.rstrip('/')}/report"
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - http(s) checked
        data: dict[str, Any] = json.loads(answer.read())
    return data


def _report(args: argparse.Namespace) -> int:
    try:
        report = fetch_report(args.admin)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"cannot read the report from {args.admin}/report: {reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.format == "json":
        text = json.dumps(report, indent=1) + "\n"
    elif args.format == "html":
        text = render_html(report)
    else:
        text = render_table(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0
