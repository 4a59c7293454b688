"""Structured JSON logs through structlog, configured once at start-up.

A redaction processor runs last-but-one on every event, so no secret or session token reaches a
log line at any level, whatever a caller passed in.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any, TextIO
from urllib.parse import unquote

import structlog
from structlog.typing import FilteringBoundLogger

from proxy.observability.requestlog import log_request, use_stream
from proxy.signing.queryauth import SECRET_PARAMETERS

# The log levels a config or the CLI may name, in order; the one list every module asks.
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Levels at which one line per request is written (above them it is not even built).
REQUEST_LOG_LEVELS = frozenset({"debug", "info"})

# Keys whose values are never logged, whatever they hold.
_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|authorization|signature|credential|customer-key|cookie)",
    re.IGNORECASE,
)
# Values that look like secrets wherever they appear: SigV4 signatures, AWS session tokens and
# `Credential=AKID/...` scopes inside an Authorization header.
_SECRET_VALUES = re.compile(
    r"(Signature=)[0-9a-f]{64}|(Credential=)[A-Z0-9]{16,128}|"
    r"(aws_secret_access_key\s*=\s*)\S+|(aws_session_token\s*=\s*)\S+|"
    r"(X-Amz-Security-Token=)[^&\s]+|(X-Amz-Signature=)[^&\s]+",
    re.IGNORECASE,
)
# A query parameter in a logged target or URL: `?name=value` / `&name=value` (or a bare query).
_QUERY_PARAMETER = re.compile(r"(?:(?<=[?&])|^)([^=&?#\s]+)=([^&#\s]*)")
REDACTED = "[redacted]"


def _query_parameter(match: re.Match[str]) -> str:
    # Names compared decoded and case-folded, as AWS reads them: `X-Amz-%53ignature` too.
    if unquote(match[1]).lower() in SECRET_PARAMETERS:
        return f"{match[1]}={REDACTED}"
    return match[0]


def _scrub_text(value: str) -> str:
    if "=" not in value:  # every secret-shaped pattern has one; most log values do not
        return value
    value = _SECRET_VALUES.sub(lambda m: next(g for g in m.groups() if g) + REDACTED, value)
    return _QUERY_PARAMETER.sub(_query_parameter, value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_key(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and _is_secret_key(value[0]):
            return [value[0], REDACTED]  # a (name, value) header pair
        return [_scrub(v) for v in value]
    return value


@lru_cache(maxsize=1024)
def _is_secret_key(key: object) -> bool:
    # `token_file` names a path, not a token; keep it visible.
    return isinstance(key, str) and bool(_SECRET_KEYS.search(key)) and not key.endswith("_file")


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank secret-named keys and secret-shaped values."""
    for key in list(event_dict):
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog JSON output on `stream` (stderr by default). Call once at start-up."""
    numeric = LOG_LEVELS.get(level.lower(), logging.INFO)
    use_stream(stream or sys.stderr)  # the per-request line: same stream, same shape
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    # aiohttp's own loggers (bad requests from clients, etc.) go through the same level.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=stream or sys.stderr)


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose events carry `logger=<name>`."""
    # Lazy: the logger takes its processors from configure_logging even when created before it.
    logger: FilteringBoundLogger = structlog.get_logger(component=name)
    return logger


def write_request_line(logger: FilteringBoundLogger, fields: dict[str, Any]) -> None:
    """The per-request line at info, fast (see proxy.observability.requestlog), redacted."""
    log_request(logger, fields, _is_secret_key, _scrub, _scrub_text)
