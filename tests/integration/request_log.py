"""When the proxy itself asked its limiter and admitted each request, read from its request
log lines, for timing tests that bound the limiter's decisions rather than their effects.

A request line is written once the request is done, with its end (`timestamp`), its
`duration_ms` and its `waited_ms`: the pipeline starts the clock of `duration_ms`, then runs
only quick synchronous stages before it asks the limiter, so `asked` (end - duration) is the
ask, and `admitted` (asked + waited) the moment the limiter admitted it. Arrivals at a fake
upstream come later by however long a loaded machine takes to send them, and a stall bunches
arrivals of requests that were admitted at the pace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from tests.polling import eventually
from tests.servers import ProxyProcess


@dataclass(frozen=True)
class LoggedRequest:
    operation: str | None
    status: int
    asked: float  # seconds since the epoch, on the proxy's clock
    waited: float

    @property
    def admitted(self) -> float:
        return self.asked + self.waited


def _epoch(timestamp: str) -> float:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=UTC).timestamp()


def event_times(proxy: ProxyProcess, event: str) -> list[float]:
    """When the proxy logged each `event` line (e.g. "reloaded": the new config in force)."""
    marker = f'"event": "{event}"'
    return [
        _epoch(json.loads(line)["timestamp"])
        for line in proxy.log_text().splitlines()
        if marker in line
    ]


def logged_requests(proxy: ProxyProcess) -> list[LoggedRequest]:
    """Every request line the proxy has written so far."""
    found = []
    for line in proxy.log_text().splitlines():
        if '"event": "request"' not in line:
            continue
        fields = json.loads(line)
        asked = _epoch(fields["timestamp"]) - fields["duration_ms"] / 1000
        found.append(
            LoggedRequest(fields["operation"], fields["status"], asked, fields["waited_ms"] / 1000)
        )
    return found


async def all_logged(proxy: ProxyProcess, count: int) -> list[LoggedRequest]:
    """The request lines once `count` of them are written (polled, bounded: a line is written
    just after its answer, so the client may see the answer first)."""
    assert await eventually(lambda: len(logged_requests(proxy)) >= count, 10)
    return logged_requests(proxy)


def most_in_window(times: list[float], window: float) -> int:
    """The most of the sorted `times` that fall in any window of `window` seconds."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] < t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
