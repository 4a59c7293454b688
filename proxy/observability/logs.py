"""Structured JSON logs through structlog, configured once at start-up.

A redaction processor (proxy.observability.redaction) runs last-but-one on every event, so no
secret or session token reaches a log line at any level, whatever a caller passed in.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import FilteringBoundLogger

from proxy.observability.redaction import REDACTED, redact_secrets
from proxy.observability.requestlog import use_stream

__all__ = [
    "LOG_LEVELS",
    "REDACTED",
    "REQUEST_LOG_LEVELS",
    "configure_logging",
    "get_logger",
    "redact_secrets",
]

# The log levels a config or the CLI may name, in order; the one list every module asks.
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Levels at which one line per request is written (above them it is not even built).
REQUEST_LOG_LEVELS = frozenset({"debug", "info"})


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
