"""The one log line per request, written straight to the log stream.

The line is exactly what structlog's chain would write for `log.info("request", **fields)` on
the `proxy.request` logger (same keys in the same order, same JSON, the same redaction), built
without the chain: structlog's processors and `json.dumps` of the whole event were a fifth of
the proxy's CPU per request in the throughput benchmark's profile. Values go through the same
redaction as every other event (`redact_value`), so the fast path can leak nothing the slow one
would not. Until `configure_logging` names a stream (tests, library use), the line goes through
structlog as any other event.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from structlog.typing import FilteringBoundLogger

REQUEST_EVENT = "request"
_stream: TextIO | None = None
_second, _second_text = -1, ""
_component = '{"component": "proxy.request"'


def use_stream(stream: TextIO | None) -> None:
    """Write request lines to `stream` (configure_logging does this); None: via structlog."""
    global _stream
    _stream = stream


def log_request(
    logger: FilteringBoundLogger,
    fields: Mapping[str, Any],
    redact_key: Callable[[str], bool],
    redact_value: Callable[[Any], Any],
) -> None:
    """Write the request line for `fields` (the caller has checked the level is info or below).

    `redact_key(key)` says whether a key is secret; `redact_value(value)` scrubs a value."""
    stream = _stream
    if stream is None or stream.closed:
        logger.info(REQUEST_EVENT, **fields)
        return
    parts = [_component]
    for key, value in fields.items():
        shown = '"[redacted]"' if redact_key(key) else _json(redact_value(value))
        parts.append(f", {encode_basestring_ascii(key)}: {shown}")
    parts.append(f', "event": "request", "level": "info", "timestamp": "{_timestamp()}"}}\n')
    stream.write("".join(parts))
    stream.flush()


def _timestamp() -> str:
    """Now in UTC as ISO 8601 with microseconds (`2026-12-01T09:22:29.257869Z`); the date and
    time part is formatted once a second (datetime.now().isoformat() cost more than the rest
    of the line together)."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second, _second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second_text}.{int((now - second) * 1_000_000):06d}Z"


def _json(value: Any) -> str:
    """`value` as json.dumps writes it (ensure_ascii, NaN allowed, repr for the rest)."""
    if isinstance(value, str):
        return str(encode_basestring_ascii(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value, default=repr)
