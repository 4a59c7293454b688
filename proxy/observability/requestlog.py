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
_write_soon: Callable[[str], int] | None = None
_second, _second_text = -1, ""
_component = '{"component": "proxy.request"'


def use_stream(stream: TextIO | None) -> None:
    """Write request lines to `stream` (configure_logging does this); None: via structlog.

    A stream with a `write_soon` (the running proxy's TurnFlushedStream) takes the lines for
    the end of the event-loop turn; any other is written and flushed line by line."""
    global _stream, _write_soon
    _stream = stream
    _write_soon = getattr(stream, "write_soon", None)


def log_request(
    logger: FilteringBoundLogger,
    fields: Mapping[str, Any],
    redact_key: Callable[[str], bool],
    redact_value: Callable[[Any], Any],
    redact_text: Callable[[str], str],
) -> None:
    """Write the request line for `fields` (the caller has checked the level is info or below).

    `redact_key(key)` says whether a key is secret; `redact_value(value)` scrubs a value, and
    `redact_text` a string value (what `redact_value` does with one, without asking its type)."""
    stream = _stream
    if stream is None or stream.closed:
        logger.info(REQUEST_EVENT, **fields)
        return
    parts = [_component]
    append = parts.append
    for key, value in fields.items():
        prefix = _key_prefixes.get(key)
        if prefix is None:
            prefix = _key_prefix(key, redact_key)
        if prefix is _REDACTED_KEY:
            append(f', {encode_basestring_ascii(key)}: "[redacted]"')
        elif type(value) is str:
            append(prefix + encode_basestring_ascii(redact_text(value)))
        elif value is None:
            append(prefix + "null")
        elif type(value) is int:
            append(prefix + int.__repr__(value))
        elif type(value) is float and math.isfinite(value):
            append(prefix + float.__repr__(value))
        else:
            append(prefix + _json(redact_value(value)))
    append(f', "event": "request", "level": "info", "timestamp": "{_timestamp()}"}}\n')
    if _write_soon is not None:
        _write_soon("".join(parts))
    else:
        stream.write("".join(parts))
        stream.flush()


# `, "key": ` for each key seen, or _REDACTED_KEY for a secret one: the request line's keys are
# a handful of fixed names, so each is encoded and judged once (bounded: unknown keys beyond
# the limit are judged on every line instead of remembered).
_REDACTED_KEY = "[redacted]"
_key_prefixes: dict[str, str] = {}
_MAX_KEYS = 256


def _key_prefix(key: str, redact_key: Callable[[str], bool]) -> str:
    prefix = _REDACTED_KEY if redact_key(key) else f", {encode_basestring_ascii(key)}: "
    if len(_key_prefixes) < _MAX_KEYS:
        _key_prefixes[key] = prefix
    return prefix


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
