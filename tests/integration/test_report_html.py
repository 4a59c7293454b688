"""The run report: recorder quantiles and timeline, the table, and the HTML page rendered by a
real headless Chromium (screenshot and DOM), which must need nothing from the network."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

from proxy.report.html import render_html
from proxy.report.recorder import LogHistogram, RunRecorder
from proxy.report.summary import build_report
from proxy.report.table import render_table
from tests.fakes.clock import FakeClock

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def a_run() -> RunRecorder:
    """Ninety seconds of traffic: a ramp, throttles and faults in the middle, some waiting."""
    clock = FakeClock()
    recorder = RunRecorder(clock)
    for second in range(90):
        for i in range(10 + second):
            throttled = 30 <= second < 60 and i % 4 == 0
            if throttled:
                recorder.throttled("dynamodb", "PutItem")
                recorder.fault("dynamodb", "PutItem")
                recorder.retried("dynamodb", "PutItem")
            waited = 0.002 * (i % 5) if second > 45 else 0.0
            recorder.request("dynamodb", "PutItem", 200, 0.004 + 0.0001 * i, waited, False)
        recorder.request("ec2", "DescribeInstances", 503, 0.001, 0.0, True)
        clock.advance(1.0)
    return recorder


def test_histogram_quantiles_are_within_five_percent() -> None:
    histogram = LogHistogram()
    for value in range(1, 1001):
        histogram.add(value / 1000)  # 1 ms .. 1 s
    for _ in range(1000):
        histogram.add(0.0)
    assert histogram.quantile(0.25) == 0.0
    assert 0.500 <= histogram.quantile(0.75) <= 0.500 * 1.05
    assert 0.980 <= histogram.quantile(0.99) <= 0.980 * 1.05
    assert LogHistogram().quantile(0.5) == 0.0


def test_recorder_keeps_a_bounded_timeline() -> None:
    clock = FakeClock()
    recorder = RunRecorder(clock, window=60)
    for _ in range(100):
        recorder.request("s3", "GetObject", 200, 0.01, 0.0, False)
        clock.advance(1.0)
    assert len(recorder.timeline) == 60
    assert recorder.timeline[0][0] == 40.0  # the oldest seconds fell off
    report = build_report(recorder, lambda _: 500, [])
    assert report["totals"]["requests"] == 100  # the counts are the whole run's


def test_table_has_a_row_per_operation_and_totals() -> None:
    report = build_report(a_run(), lambda service: 495 if service == "dynamodb" else 500, [])
    lines = render_table(report).splitlines()
    assert lines[0].startswith("run report since 2015-08-30T12:36:00+00:00 (90.0 s)")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    requests = sum(10 + s for s in range(90))
    assert rows["dynamodb"][:10] == [
        "dynamodb",
        "PutItem",
        str(requests),
        str(requests - sum(1 for s in range(46, 90) for i in range(10 + s) if i % 5)),
        str(sum(1 for s in range(46, 90) for i in range(10 + s) if i % 5)),
        "0",
        str(sum(1 for s in range(30, 60) for i in range(10 + s) if i % 4 == 0)),
        rows["dynamodb"][6],  # faults: as throttled
        rows["dynamodb"][6],  # retries: as throttled
        "495",
    ]
    assert rows["ec2"][2:6] == ["90", "0", "0", "90"]
    assert rows["total"][1] == str(requests + 90)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """(width, height, decompressed scanlines) of a PNG, read with the standard library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat = 8, b""
    width = height = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunk = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps)")
def test_html_report_renders_its_charts_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = render_html(build_report(a_run(), lambda _: 500, [{"name": "ddb", "kind": "throttle"}]))
    # Self-contained: nothing to fetch (the SVG namespace is a name, not a request).
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)
    html = tmp_path / "report.html"
    html.write_text(page, encoding="utf-8")
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
    ]
    png = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        shot = subprocess.run(
            [*common, f"--user-data-dir={profile}", f"--screenshot={png}", html.as_uri()],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert shot.returncode == 0, shot.stderr[-2000:]
    width, height, pixels = png_pixels(png)
    assert (width, height) == (1200, 900)
    # Non-trivial: the charts and table make many distinct byte values, a blank page a few.
    assert len(set(pixels)) > 50
    assert pixels.count(b"\xff\xff\xff") < len(pixels) // 3  # not mostly white
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [*common, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
            capture_output=True,
            timeout=60,
            check=False,
            text=True,
        )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in ("chart-rate", "chart-wait"):
        assert f'id="{chart}"' in dom.stdout
    assert dom.stdout.count('class="series"') >= 6
    assert 'data-series="throttled_by_aws"' in dom.stdout
    assert '<table id="operations">' in dom.stdout
