"""The listener's shared state and defences: the connection cap, the timeouts' one timer, the
body budget, and the metrics and rate-limited log lines that say when a defence acted.

Deadlines are plain numbers on each connection; one timer, every `tick` seconds, compares them
with the clock (a timer per request would cost every request; this costs one pass per tick).
Refusals and timeouts are logged at most once per LOG_EVERY seconds each, with a count, never
a line (or a traceback) per connection.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.aws.errors import ERROR_HEADER
from proxy.config.model import ConnectionsConfig
from proxy.errors import ClientBodyTimeout
from proxy.front.budget import BodyBudget
from proxy.front.exchange import Exchange
from proxy.front.protocol import FrontConnection
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics

log = get_logger("proxy.front")
LOG_EVERY = 10.0
_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Handler = Callable[[Exchange], Awaitable[None]]


def _plain_answer(status: str, reason: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"{ERROR_HEADER}: {reason}\r\n{extra}Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _answers(settings: ConnectionsConfig) -> tuple[bytes, bytes]:
    """The connection cap's 503 and the header timeout's 408, written once per config."""
    # Written before any request is read, so in no service's format: with no body, a 503 is a
    # generic error every SDK parses for any protocol, and retries (a text body made botocore's
    # query and EC2 parsers raise, the JS SDK's JSON ones too). The header names the reason.
    refusal = _plain_answer(
        "503 Service Unavailable", "too-many-connections", "", "Retry-After: 1\r\n"
    )
    header_timeout = _plain_answer(
        "408 Request Timeout",
        "client-timeout",
        f"ClientTimeout: request headers not received within {settings.header_timeout:g}s "
        "(connections.header_timeout)\n",
    )
    return refusal, header_timeout


def _tick(settings: ConnectionsConfig) -> float:
    """How often deadlines are checked: a fifth of the shortest timeout, 20 ms to 1 s."""
    shortest = min(
        settings.header_timeout,
        settings.idle_timeout,
        settings.body_timeout,
        settings.send_timeout,
    )
    return min(1.0, max(0.02, shortest / 5))


class _Throttled:
    """One log line per interval for an event that may happen thousands of times a second."""

    def __init__(self, event: str, level: str = "warning") -> None:
        self.event = event
        self.level = level
        self.count = 0
        self.next_at = 0.0

    def hit(self, now: float, **fields: Any) -> None:
        self.count += 1
        if now >= self.next_at:
            getattr(log, self.level)(self.event, count=self.count, every_s=LOG_EVERY, **fields)
            self.count = 0
            self.next_at = now + LOG_EVERY


class Front:
    """Everything the connections of one listener share."""

    def __init__(self, settings: ConnectionsConfig, budget: int, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.budget = BodyBudget(budget, metrics.buffered_body_bytes)
        self.handler: Handler | None = None
        self.draining = False
        self.connections: set[FrontConnection] = set()
        self._loop = asyncio.get_running_loop()
        self.now = self._loop.time
        self._timer: asyncio.TimerHandle | None = None
        self._previous_handler: Any = None  # the loop's exception handler before ours
        self._open_gauge = metrics.connections_open
        self._refused_cap = metrics.connections_refused_total.labels("max-connections")
        self._refused_fds = metrics.connections_refused_total.labels("out-of-fds")
        self._timeouts = {
            phase: metrics.client_timeouts_total.labels(phase)
            for phase in ("header", "idle", "body", "send")
        }
        self._cap_log = _Throttled("connections-refused")
        self._fds_log = _Throttled("accept-failed", "error")
        self._timeout_log = _Throttled("client-timeouts", "info")
        self.refusal_answer, self.header_timeout_answer = _answers(settings)
        self.tick = _tick(settings)

    def update(self, settings: ConnectionsConfig, budget: int) -> None:
        """A reload: new timeouts and caps from the next check on (nothing is cut for it)."""
        self.settings = settings
        self.budget.limit = budget
        self.tick = _tick(settings)
        self.refusal_answer, self.header_timeout_answer = _answers(settings)

    def protocol(self) -> FrontConnection:
        return FrontConnection(self)

    def start(self, handler: Handler) -> None:
        self.handler = handler
        self._timer = self._loop.call_later(self.tick, self._sweep)
        # asyncio and uvloop report accept() failures (out of file descriptors) through the
        # loop's exception handler, each with a traceback: count them and log once in a while.
        previous = self._loop.get_exception_handler()

        def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS:
                self._refused_fds.inc()
                self._fds_log.hit(self.now(), error=exc.strerror or str(exc))
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        self._previous_handler = previous
        self._loop.set_exception_handler(on_loop_error)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._loop.set_exception_handler(self._previous_handler)

    def admit(self, conn: FrontConnection) -> bool:
        if len(self.connections) >= self.settings.max_connections:
            self._refused_cap.inc()
            self._cap_log.hit(self.now(), max_connections=self.settings.max_connections)
            return False
        self.connections.add(conn)
        self._open_gauge.inc()
        return True

    def forget(self, conn: FrontConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._open_gauge.dec()

    def timed_out(self, phase: str) -> None:
        self._timeouts[phase].inc()
        self._timeout_log.hit(self.now(), last_phase=phase)

    def body_timeout_error(self) -> ClientBodyTimeout:
        return ClientBodyTimeout(
            f"no request body bytes for {self.settings.body_timeout:g}s (connections.body_timeout)"
        )

    def close_idle(self) -> None:
        """Drain: connections waiting for a next request are closed now."""
        for conn in list(self.connections):
            if conn.phase == "idle":
                conn.close()

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    def _sweep(self) -> None:
        now = self.now()
        for conn in list(self.connections):
            conn.check(now)
        self._timer = self._loop.call_later(self.tick, self._sweep)
