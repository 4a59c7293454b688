"""JSON logs: one object per line, with level and time, and no secret in any of them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from proxy.observability.logs import REDACTED, configure_logging, get_logger, redact_secrets

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue//////////wEaDExampleToken"
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AUTHORIZATION = (
    f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20150830/us-east-1/iam/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date, Signature={SIGNATURE}"
)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_output() -> Iterator[tuple[io.StringIO, Lines]]:
    """Logging configured onto a StringIO; a reader that parses every line as JSON."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    try:
        yield stream, lines
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.fixture
def logged(log_output: tuple[io.StringIO, Lines]) -> Lines:
    """Debug-level logging: every event reaches the output."""
    stream, lines = log_output
    configure_logging("debug", stream)
    return lines


def only(lines: Lines) -> dict[str, Any]:
    events = lines()
    assert len(events) == 1, events
    return events[0]


def test_each_line_is_json_with_level_and_timestamp(logged: Lines) -> None:
    log = get_logger("tests")
    log.info("first", status=200)
    log.warning("second", attempts=3, waited_ms=1.5)
    log.error("third", kept=None)
    events = logged()
    assert [e["event"] for e in events] == ["first", "second", "third"]
    assert [e["level"] for e in events] == ["info", "warning", "error"]
    for event in events:
        assert event["component"] == "tests"
        assert TIMESTAMP.match(event["timestamp"]), event["timestamp"]
    assert (events[0]["status"], events[1]["attempts"], events[2]["kept"]) == (200, 3, None)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("WARNING", ["warning", "error"]),
        ("error", ["error"]),
        ("nonsense", ["info", "warning", "error"]),
    ],
)
def test_level_filters_events(
    log_output: tuple[io.StringIO, Lines], level: str, expected: list[str]
) -> None:
    stream, lines = log_output
    configure_logging(level, stream)
    log = get_logger("tests")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["level"] for e in lines()] == expected


@pytest.mark.parametrize(
    "key",
    [
        "secret_access_key",
        "SecretAccessKey",
        "aws_secret_access_key",
        "session_token",
        "SessionToken",
        "Authorization",
        "authorization",
        "x-amz-security-token",
        "X-Amz-Security-Token",
        "password",
        "signature",
        "credentials",
    ],
)
def test_secret_named_keys_are_redacted(logged: Lines, key: str) -> None:
    get_logger("tests").info("event", **{key: SECRET})
    event = only(logged)
    assert event[key] == REDACTED


def test_secret_shaped_values_are_redacted_wherever_they_are(logged: Lines) -> None:
    get_logger("tests").warning(
        f"process said aws_secret_access_key = {SECRET} and aws_session_token={TOKEN}",
        header=AUTHORIZATION,
        url=f"https://bucket.s3.amazonaws.com/k?X-Amz-Signature={SIGNATURE}&x=1",
        nested={
            "request": {"headers": {"Authorization": AUTHORIZATION, "X-Amz-Security-Token": TOKEN}},
            "attempts": [
                {"session_token": TOKEN},
                f"Signature={SIGNATURE}",
                ("in", f"a tuple Signature={SIGNATURE}"),
            ],
        },
        items=[[f"Signature={SIGNATURE}"]],
    )
    event = only(logged)
    raw = json.dumps(event)
    for secret in (SECRET, TOKEN, SIGNATURE, KEY_ID):
        assert secret not in raw
    assert event["event"] == (
        f"process said aws_secret_access_key = {REDACTED} and aws_session_token={REDACTED}"
    )
    assert event["header"] == (
        f"AWS4-HMAC-SHA256 Credential={REDACTED}/20150830/us-east-1/iam/aws4_request, "
        f"SignedHeaders=content-type;host;x-amz-date, Signature={REDACTED}"
    )
    assert event["url"] == f"https://bucket.s3.amazonaws.com/k?X-Amz-Signature={REDACTED}&x=1"
    assert event["nested"]["request"]["headers"] == {
        "Authorization": REDACTED,
        "X-Amz-Security-Token": REDACTED,
    }
    assert event["nested"]["attempts"] == [
        {"session_token": REDACTED},
        f"Signature={REDACTED}",
        ["in", f"a tuple Signature={REDACTED}"],
    ]
    assert event["items"] == [[f"Signature={REDACTED}"]]


def test_ordinary_values_and_token_file_paths_survive(logged: Lines) -> None:
    token_file = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    get_logger("credentials").info(
        "credentials-loaded",
        token_file=token_file,
        web_identity_token_file=token_file,
        role_arn="arn:aws:iam::123456789012:role/app",
        provider="web-identity",
        expires_in=3599.5,
        query="Action=DescribeInstances&Version=2016-11-15",
        nested={"token_file": token_file, "count": 2, "flags": [True, None]},
    )
    event = only(logged)
    assert event["token_file"] == token_file
    assert event["web_identity_token_file"] == token_file
    assert event["role_arn"] == "arn:aws:iam::123456789012:role/app"
    assert event["provider"] == "web-identity"
    assert event["expires_in"] == 3599.5
    assert event["query"] == "Action=DescribeInstances&Version=2016-11-15"
    assert event["nested"] == {"token_file": token_file, "count": 2, "flags": [True, None]}


def test_bound_context_is_redacted_too(logged: Lines) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1", session_token=TOKEN)
    get_logger("tests").info("request")
    event = only(logged)
    assert event["request_id"] == "r-1"
    assert event["session_token"] == REDACTED


def test_exception_text_is_redacted(logged: Lines) -> None:
    log = get_logger("tests")
    try:
        raise RuntimeError(f"refresh failed: aws_secret_access_key={SECRET}")
    except RuntimeError:
        log.exception("credentials-refresher-error")
    event = only(logged)
    assert event["level"] == "error"
    assert "RuntimeError: refresh failed: aws_secret_access_key=[redacted]" in event["exception"]
    assert SECRET not in json.dumps(event)


def test_redact_secrets_is_a_plain_processor() -> None:
    event: dict[str, Any] = {
        "event": "x",
        "Token": TOKEN,
        "headers": {"authorization": AUTHORIZATION, "Content-Type": "text/xml"},
        "n": 5,
    }
    result = redact_secrets(None, "info", event)
    assert result == {
        "event": "x",
        "Token": REDACTED,
        "headers": {"authorization": REDACTED, "Content-Type": "text/xml"},
        "n": 5,
    }


def test_logger_created_before_configuration_follows_it(
    log_output: tuple[io.StringIO, Lines],
) -> None:
    stream, lines = log_output
    early = get_logger("early")
    configure_logging("info", stream)
    early.info("late-configured", password=SECRET)
    assert lines() == [
        {
            "component": "early",
            "password": REDACTED,
            "event": "late-configured",
            "level": "info",
            "timestamp": lines()[0]["timestamp"],
        }
    ]


def test_session_token_in_a_query_string_is_redacted(logged: Lines) -> None:
    get_logger("pipeline").debug(
        "upstream-attempt",
        target=f"/key?X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIGNATURE}",
    )
    assert TOKEN not in json.dumps(only(logged))


def test_upper_case_secret_assignment_is_redacted(logged: Lines) -> None:
    get_logger("credentials").warning(
        "credentials-refresh-failed",
        error=f"credential_process: exited 1: AWS_SECRET_ACCESS_KEY={SECRET} is invalid",
    )
    assert SECRET not in json.dumps(only(logged))


def test_sse_c_customer_key_header_is_redacted(logged: Lines) -> None:
    customer_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    get_logger("pipeline").debug(
        "upstream-attempt",
        headers={
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": customer_key,
        },
    )
    assert customer_key not in json.dumps(only(logged))


CLIENT_QUERY_SECRETS = {
    "X-Amz-Signature": SIGNATURE,
    "X-Amz-Credential": f"{KEY_ID}%2F20150830%2Fus-east-1%2Fs3%2Faws4_request",
    "X-Amz-Security-Token": "FwoGclientTOKEN%2Bwith%2Fescapes",
    "Signature": "bWFkZSUyQnVwJTJGc2lnJTNE",
    "AWSAccessKeyId": "AKIAI44QH8DHBEXAMPLE",
    "SecurityToken": "v2clientTOKEN",
}


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_client_auth_never_reaches_a_captured_event(level: str) -> None:
    query = "&".join(f"{k}={v}" for k, v in CLIENT_QUERY_SECRETS.items())
    headers = {
        "Cookie": "session=cookie-secret-value",
        "Authorization": AUTHORIZATION,
        "Proxy-Authorization": "Basic cHJveHktc2VjcmV0",
        "X-Amz-Security-Token": TOKEN,
        "User-Agent": "app/1.0",
    }
    with structlog.testing.capture_logs(processors=[redact_secrets]) as events:
        getattr(get_logger("tests"), level)(
            "upstream-attempt",
            target=f"/bucket/key?X-Amz-Date=20150830T123600Z&{query}&versionId=7",
            headers=headers,
            pairs=[("Cookie", "pair-cookie-value"), ("X-Amz-Date", "20150830T123600Z")],
            # A name spelled with an escape is still the same parameter to AWS.
            url="http://h/k?X-Amz-%53ignature=encoded-name-secret",
        )
    raw = json.dumps(events)
    for secret in [
        *CLIENT_QUERY_SECRETS.values(),
        "cookie-secret-value",
        "pair-cookie-value",
        "cHJveHktc2VjcmV0",
        TOKEN,
        SIGNATURE,
        KEY_ID,
        "encoded-name-secret",
    ]:
        assert secret not in raw, secret
    event = events[0]
    assert event["target"] == (
        "/bucket/key?X-Amz-Date=20150830T123600Z&"
        + "&".join(f"{k}={REDACTED}" for k in CLIENT_QUERY_SECRETS)
        + "&versionId=7"
    )
    assert event["headers"]["User-Agent"] == "app/1.0"
    assert event["pairs"] == [["Cookie", REDACTED], ["X-Amz-Date", "20150830T123600Z"]]
