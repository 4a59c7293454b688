"""The one log line per request, written straight to the log stream.

The line is exactly what structlog's chain would write for `log.info("request", **fields)` on
the `proxy.request` logger (same keys in the same order, same JSON, the same redaction), built
without the chain: structlog's processors and `json.dumps` of the whole event were a fifth of
the proxy's CPU per request in the throughput benchmark's profile. The keys are fixed, so the
line is one f-string with the keys already in it; each text value goes through the same
redaction as every other event (`scrub_text`), so the fast path can leak nothing the slow one
would not. Until `configure_logging` names a stream (tests, library use), the line goes
through structlog as any other event.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import TextIO

from structlog.typing import FilteringBoundLogger

from proxy.aws.hostgrammar import MAX_MEMO_AUTHORITY
from proxy.observability.redaction import scrub_text

REQUEST_EVENT = "request"
_stream: TextIO | None = None
_write_soon: Callable[[str], int] | None = None
_second, _second_text = -1, ""


def use_stream(stream: TextIO | None) -> None:
    """Write request lines to `stream` (configure_logging does this); None: via structlog.

    A stream with a `write_soon` (the running proxy's TurnFlushedStream) takes the lines for
    the end of the event-loop turn; any other is written and flushed line by line."""
    global _stream, _write_soon
    _stream = stream
    _write_soon = getattr(stream, "write_soon", None)


def write_request_line(
    logger: FilteringBoundLogger,
    *,
    request_id: str,
    method: str,
    host: str | None,
    service: str,
    operation: str | None,
    status: int,
    duration_ms: float,
    attempts: int,
    waited_ms: float,
    aws_request_id: str | None,
    error: str | None,
) -> None:
    """Write the request line (the caller has checked the level is info or below); the two
    times are logged rounded to hundredths of a millisecond."""
    stream, write_soon = _stream, _write_soon
    if write_soon is None and (stream is None or stream.closed):
        # (A TurnFlushedStream drops what it gathered once its target is closed.)
        logger.info(
            REQUEST_EVENT,
            request_id=request_id,
            method=method,
            host=host,
            service=service,
            operation=operation,
            status=status,
            duration_ms=round(duration_ms, 2),
            attempts=attempts,
            waited_ms=round(waited_ms, 2),
            aws_request_id=aws_request_id,
            error=error,
        )
        return
    middle = _middles.get((method, host, service, operation))
    if middle is None:
        middle = _middle(method, host, service, operation)
    line = (
        f'{{"component": "proxy.request", "request_id": {_text(request_id)}, {middle}, '
        f'"status": {status}, "duration_ms": {_hundredths(duration_ms)}, '
        f'"attempts": {attempts}, "waited_ms": {_hundredths(waited_ms)}, '
        f'"aws_request_id": {"null" if aws_request_id is None else _text(aws_request_id)}, '
        f'"error": {"null" if error is None else _text(error)}, '
        f'"event": "request", "level": "info", "timestamp": "{_timestamp()}"}}\n'
    )
    if write_soon is not None:
        write_soon(line)
    else:
        assert stream is not None
        stream.write(line)
        stream.flush()


def _text(value: str) -> str:
    """A string value as json.dumps writes it (ensure_ascii), redacted."""
    return encode_basestring_ascii(scrub_text(value))


# The method, host, service and operation of a line, rendered: a handful of combinations
# repeat across requests, so each is encoded and redacted once. Bounded (hosts are the
# client's): when full it starts afresh, which costs time, never a different line.
_middles: dict[tuple[str, str | None, str, str | None], str] = {}
_MAX_MIDDLES = 1024
# Only hosts that fit a DNS name and a port are remembered: a wildcard host route takes any
# Host header up to max_header_bytes, and 1024 distinct 64 KiB ones held 120 MB here.


def _middle(method: str, host: str | None, service: str, operation: str | None) -> str:
    text = (
        f'"method": {_text(method)}, "host": {"null" if host is None else _text(host)}, '
        f'"service": {_text(service)}, '
        f'"operation": {"null" if operation is None else _text(operation)}'
    )
    if host is not None and len(host) > MAX_MEMO_AUTHORITY:
        return text
    if len(_middles) >= _MAX_MIDDLES:
        _middles.clear()
    _middles[(method, host, service, operation)] = text
    return text


def _hundredths(value: float) -> str:
    """`round(value, 2)` as json.dumps writes it (`1.5`, `0.0`, `12.34`, `NaN`).

    Formatted to two places directly, with the one trailing zero repr would not write
    dropped: the same text for every value below 1e13 (where a float's repr still has two
    decimals to give), in a third of the work of round() and repr()."""
    if -1e13 < value < 1e13:
        text = f"{value:.2f}"
        return text[:-1] if text[-1] == "0" else text
    rounded = round(value, 2)
    return float.__repr__(rounded) if math.isfinite(rounded) else json.dumps(rounded)


def _timestamp() -> str:
    """Now in UTC as ISO 8601 with microseconds (`2026-12-01T09:22:29.257869Z`); the date and
    time part is formatted once a second (datetime.now().isoformat() cost more than the rest
    of the line together)."""
    global _second, _second_text
    micros = time.time_ns() // 1000
    second = micros // 1_000_000
    if second != _second:
        _second, _second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    # The last six digits of the microseconds since the epoch: those within the second, with
    # their leading zeros (cheaper than a `:06d` format).
    return f"{_second_text}.{str(micros)[-6:]}Z"
