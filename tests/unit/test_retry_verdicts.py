"""The retry verdict table of the SDKs' standard mode (shared/REFERENCE.md §2)."""

from __future__ import annotations

import asyncio
import json

import pytest
from multidict import CIMultiDict

from proxy.errors import NoCredentials, UpstreamTimeout, UpstreamUnavailable
from proxy.retry.verdicts import (
    THROTTLING_CODES,
    TRANSIENT_CODES,
    RetryVerdict,
    attempt_outcome,
    judge_exception,
    judge_response,
    judge_status_and_code,
    throttle_code_label,
)

NO_HEADERS: CIMultiDict[str] = CIMultiDict()


def json_error(code: str) -> bytes:
    return json.dumps({"__type": f"com.amazonaws.x#{code}", "message": "m"}).encode()


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
@pytest.mark.parametrize("status", [400, 403, 429, 500, 503])
def test_every_throttling_code_is_retried_as_throttling(code: str, status: int) -> None:
    verdict = judge_response(status, NO_HEADERS, json_error(code))
    assert verdict == RetryVerdict("retryable", "throttling", code)
    assert verdict.is_throttle


@pytest.mark.parametrize("code", sorted(TRANSIENT_CODES - THROTTLING_CODES))
def test_transient_codes_are_retried_at_400(code: str) -> None:
    assert judge_response(400, NO_HEADERS, json_error(code)) == RetryVerdict(
        "retryable", "transient", code
    )


def test_prior_request_not_complete_counts_as_a_throttle() -> None:
    # It is in both lists; as a throttle its retry costs 5 tokens and uses the 1 s base.
    verdict = judge_response(400, NO_HEADERS, json_error("PriorRequestNotComplete"))
    assert verdict.reason == "throttling"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("body", [b"", b"<html><body>Bad Gateway</body></html>", None])
def test_transient_statuses_without_a_code(status: int, body: bytes | None) -> None:
    assert judge_response(status, NO_HEADERS, body) == RetryVerdict("retryable", "transient", None)


def test_5xx_with_a_non_throttling_code_is_transient() -> None:
    body = b"<Error><Code>InternalError</Code></Error>"
    assert judge_response(500, NO_HEADERS, body) == RetryVerdict(
        "retryable", "transient", "InternalError"
    )


def test_429_without_a_code_is_a_throttle() -> None:
    assert judge_response(429, NO_HEADERS, b"") == RetryVerdict("retryable", "throttling", None)


@pytest.mark.parametrize("body", [b"", json_error("ThrottlingException")])
def test_501_is_never_retried(body: bytes) -> None:
    assert judge_response(501, NO_HEADERS, body).kind == "final"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "ValidationException"),
        (400, "InvalidParameterValue"),
        (403, "AccessDenied"),
        (403, "SignatureDoesNotMatch"),
        (401, "AuthFailure"),
        (404, "NoSuchKey"),
        (404, None),
        (409, "ConditionalCheckFailedException"),
        (413, None),
        (505, None),
    ],
)
def test_other_errors_are_final(status: int, code: str | None) -> None:
    body = json_error(code) if code else b""
    assert judge_response(status, NO_HEADERS, body) == RetryVerdict("final", None, code)


@pytest.mark.parametrize("status", [200, 204, 206])
def test_success(status: int) -> None:
    assert judge_response(status, NO_HEADERS, None) == RetryVerdict("success")


def test_3xx_is_final() -> None:
    assert judge_status_and_code(304, None).kind == "final"
    assert judge_status_and_code(307, None).kind == "final"


def test_exceptions() -> None:
    assert judge_exception(UpstreamUnavailable("reset")) == RetryVerdict("retryable", "connection")
    assert judge_exception(UpstreamTimeout("slow")) == RetryVerdict("retryable", "timeout")
    assert judge_exception(NoCredentials("none")).kind == "final"
    assert judge_exception(asyncio.CancelledError()).kind == "final"


def test_throttle_code_label_is_bounded() -> None:
    assert throttle_code_label("SlowDown") == "SlowDown"
    assert throttle_code_label(None) == "other"
    assert throttle_code_label("MadeUpByAClient") == "other"


@pytest.mark.parametrize(
    ("verdict", "status", "outcome"),
    [
        (RetryVerdict("success"), 200, "success"),
        (RetryVerdict("final"), 304, "success"),
        (RetryVerdict("retryable", "throttling", "SlowDown"), 503, "throttled"),
        (RetryVerdict("retryable", "throttling", "Throttling"), 400, "throttled"),
        (RetryVerdict("retryable", "transient"), 500, "error"),
        (RetryVerdict("final"), 501, "error"),
        (RetryVerdict("final", None, "AccessDenied"), 403, "client_error"),
        (RetryVerdict("retryable", "connection"), None, "connection"),
        (RetryVerdict("retryable", "timeout"), None, "timeout"),
    ],
)
def test_attempt_outcome(verdict: RetryVerdict, status: int | None, outcome: str) -> None:
    assert attempt_outcome(verdict, status) == outcome
