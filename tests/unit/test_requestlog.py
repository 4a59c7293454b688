"""The fast per-request line is byte for byte what structlog's chain writes, redaction included."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from proxy.observability import requestlog
from proxy.observability.logs import configure_logging, get_logger, write_request_line

FIELDS: dict[str, Any] = {
    "request_id": "1a2b3c4d-1f",
    "method": "GET",
    "host": "ec2.us-east-1.amazonaws.com",
    "service": "ec2",
    "operation": "DescribeInstances",
    "status": 200,
    "duration_ms": 1.25,
    "attempts": 1,
    "waited_ms": 0.0,
    "aws_request_id": 'id with "quotes", \\ and caf\u00e9\n',
    "error": None,
}


def both_lines(fields: dict[str, Any]) -> tuple[str, str]:
    """(structlog's line, the fast line) for `fields`, timestamps blanked."""
    slow, fast = io.StringIO(), io.StringIO()
    logger = get_logger("proxy.request")
    configure_logging("info", slow)
    requestlog.use_stream(None)  # through structlog
    write_request_line(logger, fields)
    configure_logging("info", fast)
    write_request_line(logger, fields)
    lines = []
    for stream in (slow, fast):
        text = stream.getvalue()
        assert text.endswith("}\n")
        assert text.count("\n") == 1
        event = json.loads(text)
        lines.append(text.replace(event["timestamp"], "T"))
    return lines[0], lines[1]


def test_the_fast_line_is_structlogs_line() -> None:
    slow, fast = both_lines(FIELDS)
    assert fast == slow
    assert fast.startswith('{"component": "proxy.request", "request_id": "1a2b3c4d-1f",')
    assert fast.endswith('"event": "request", "level": "info", "timestamp": "T"}\n')


@pytest.mark.parametrize(
    "value",
    [
        "https://h/?X-Amz-Signature=" + "a" * 64,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20150830/us-east-1/iam/aws4_request",
        float("nan"),
        True,
        10**20,
        ["a", 1],
    ],
)
def test_values_and_redaction_match_structlog(value: object) -> None:
    slow, fast = both_lines({**FIELDS, "aws_request_id": value, "session_token": "secret"})
    assert fast == slow
    assert "AKIAIOSFODNN7EXAMPLE" not in fast
    assert '"session_token": "[redacted]"' in fast
