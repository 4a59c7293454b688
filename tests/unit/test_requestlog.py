"""The fast per-request line is byte for byte what structlog's chain writes, redaction included."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest

from proxy.observability import requestlog
from proxy.observability.logs import configure_logging, get_logger
from proxy.observability.redaction import is_secret_key
from proxy.observability.requestlog import write_request_line

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
SIGNED_URL = "https://h/?X-Amz-Signature=" + "a" * 64
AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20150830/us-east-1/iam/aws4_request"
)


def both_lines(fields: dict[str, Any]) -> tuple[str, str]:
    """(structlog's line, the fast line) for `fields`, timestamps blanked."""
    slow, fast = io.StringIO(), io.StringIO()
    logger = get_logger("proxy.request")
    configure_logging("info", slow)
    requestlog.use_stream(None)  # through structlog
    write_request_line(logger, **fields)
    configure_logging("info", fast)
    write_request_line(logger, **fields)
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
    assert '"duration_ms": 1.25, "attempts": 1, "waited_ms": 0.0,' in fast
    assert fast.endswith('"event": "request", "level": "info", "timestamp": "T"}\n')


@pytest.mark.parametrize(
    "changes",
    [
        {"aws_request_id": SIGNED_URL},
        {"host": AUTHORIZATION, "operation": None, "aws_request_id": None},
        {"method": "G\u00c9T", "host": None, "error": "upstream-timeout", "status": 504},
        {"error": "bad ?X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&x=1", "attempts": 3},
        {"duration_ms": float("nan"), "waited_ms": float("inf")},
        {"duration_ms": 2.675, "waited_ms": 1e13 + 0.125},
    ],
)
def test_values_and_redaction_match_structlog(changes: dict[str, Any]) -> None:
    slow, fast = both_lines({**FIELDS, **changes})
    assert fast == slow
    assert "AKIAIOSFODNN7EXAMPLE" not in fast
    assert "a" * 64 not in fast
    assert "FwoGZXIvYXdzEXAMPLE" not in fast


def test_a_repeated_host_is_redacted_each_time() -> None:
    # The method/host/service/operation part is remembered: it must be the redacted one.
    _, first = both_lines({**FIELDS, "host": AUTHORIZATION})
    _, second = both_lines({**FIELDS, "host": AUTHORIZATION})
    assert first == second
    assert "AKIAIOSFODNN7EXAMPLE" not in second


def test_the_remembered_parts_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestlog, "_MAX_MIDDLES", 8)
    for index in range(50):
        _, fast = both_lines({**FIELDS, "host": f"h{index}.example"})
        assert f'"host": "h{index}.example"' in fast
        assert len(requestlog._middles) <= 8


def test_a_host_no_dns_name_could_be_is_written_but_not_remembered() -> None:
    # A wildcard host route takes Host headers up to max_header_bytes: remembering 1024 of
    # 64 KiB held 120 MB; such a line is built afresh, and is the same line.
    requestlog._middles.clear()
    for index in range(20):
        host = f"h{index}" + "a" * 60_000 + ".internal.example"
        slow, fast = both_lines({**FIELDS, "host": host})
        assert fast == slow
        assert f'"host": "{host}"' in fast
    assert all(len(key[1] or "") <= 300 for key in requestlog._middles)
    _, fast = both_lines(FIELDS)
    assert (FIELDS["method"], FIELDS["host"], FIELDS["service"], FIELDS["operation"]) in (
        requestlog._middles
    )


def test_no_key_of_the_line_is_one_redaction_would_blank() -> None:
    # structlog's chain would write "[redacted]" under such a key; the fast line writes values.
    assert [key for key in FIELDS if is_secret_key(key)] == []


def test_times_are_written_as_round_to_hundredths_and_repr_would() -> None:
    rng = random.Random(10)
    values = [0.0, -0.0, 0.004, 0.005, 0.015, 0.125, 0.375, 1.005, 2.675, 9.995, 99.995]
    values += [1e12 + 0.005, 9.99e12, 1e13, 1e15 + 0.3, 1e17, -1.0]
    values += [rng.uniform(0, 10) for _ in range(2000)]
    values += [rng.uniform(0, 1e6) for _ in range(2000)]
    values += [rng.randrange(0, 10**7) / 1000 for _ in range(2000)]  # exact-ish ties
    for value in values:
        assert requestlog._hundredths(value) == json.dumps(round(value, 2)), value
