"""py-spy record of a running process under load, summarised as where the CPU time goes.

py-spy writes collapsed stacks (`frame;frame;frame count`, frames `func (file:line)`); the
summary gives self time per function, inclusive time per function, and time per package
(the file of the innermost frame), each as a share of all samples.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.harness import PYTHON

PY_SPY = PYTHON.parent / "py-spy"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Innermost-frame file fragments → the area of the stack it belongs to, first match wins.
_AREAS = (
    ("proxy/signing", "proxy: signing"),
    ("proxy/pipeline", "proxy: pipeline"),
    ("proxy/front", "proxy: front (listener)"),
    ("proxy/upstream", "proxy: upstream client"),
    ("proxy/aws/headers", "proxy: header filtering"),
    ("proxy/aws/routing", "proxy: routing"),
    ("proxy/aws/operations", "proxy: classify"),
    ("proxy/ratelimit", "proxy: rate limiter"),
    ("proxy/retry", "proxy: retry loop"),
    ("proxy/observability", "proxy: logs and metrics"),
    ("proxy/", "proxy: other modules"),
    ("structlog", "structlog"),
    ("prometheus_client", "prometheus_client"),
    ("httptools", "httptools"),
    ("aiohttp/web_", "aiohttp server"),
    ("aiohttp/client", "aiohttp client"),
    ("aiohttp/connector", "aiohttp client pool"),
    ("aiohttp/http_writer", "aiohttp http writer"),
    ("aiohttp/", "aiohttp other"),
    ("multidict", "multidict"),
    ("yarl", "yarl"),
    ("asyncio/", "asyncio event loop"),
    ("uvloop", "uvloop"),
    ("logging/", "stdlib logging"),
    ("json/", "stdlib json"),
)


# Frames every sample passes through (interpreter start-up, the loop itself): 100% inclusive,
# so they say nothing and are left out of the inclusive list.
_LOOP_FRAMES = (
    "<module> ",
    "_run_module_as_main ",
    "_run_code ",
    "main (proxy/cli/main.py)",
    "main (<string>)",
    "_run (proxy/cli/main.py)",
    "Runner.run ",
    "run (asyncio/runners.py)",
    "BaseEventLoop.run_until_complete ",
    "BaseEventLoop.run_forever ",
    "BaseEventLoop._run_once ",
    "Handle._run ",
    "serve_forever ",
)


def _frame_label(frame: str) -> tuple[str, str]:
    """(`func (short/file.py)`, full file) for one collapsed-stack frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    file = match.group("file")
    short = "/".join(Path(file).parts[-2:]) if file else "?"
    return f"{match.group('func')} ({short})", file


def _area(file: str) -> str:
    for fragment, area in _AREAS:
        if fragment in file:
            return area
    return "other (stdlib, interpreter)"


def summarise_collapsed(text: str, top: int = 15) -> str:
    """Self, inclusive and per-area shares from py-spy's collapsed-stack output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_label(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        leaf, leaf_file = frames[-1]
        self_time[leaf] += count
        areas[_area(leaf_file)] += count
        for label in {label for label, _ in frames}:
            inclusive[label] += count
    if total == 0:
        return "no samples (is the process busy, and may py-spy ptrace it?)"
    lines = [f"{total} samples"]
    lines.append("by area (innermost frame):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in areas.most_common()]
    lines.append(f"top {top} functions by self time:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    lines.append(f"top {top} functions by inclusive time (below the event loop):")
    interesting = [
        (name, n) for name, n in inclusive.most_common() if not name.startswith(_LOOP_FRAMES)
    ]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in interesting[:top]]
    return "\n".join(lines)


def profile_process(
    pid: int,
    seconds: float,
    output: Path,
    load: Callable[[], object],
    rate: int = 250,
) -> str:
    """Record `pid` for `seconds` into `output` while `load()` runs; return the summary."""
    duration = max(1, round(seconds))
    log = output.with_suffix(".log")
    with log.open("wb") as log_file:
        recorder = subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=log_file,
            stderr=log_file,
        )
        try:
            load()
            recorder.wait(timeout=duration + 30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait(timeout=10)
    if not output.exists():
        raise RuntimeError(f"py-spy wrote nothing: {log.read_text(errors='replace')}")
    return summarise_collapsed(output.read_text(encoding="utf-8"))
