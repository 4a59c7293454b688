"""Whether an upstream answer is a success, worth another attempt, or final.

Pure: the SDKs' standard retry mode (shared/REFERENCE.md §2). Retried: HTTP 500/502/503/504,
429, the throttling codes (whatever the status: many arrive as 400), the transient codes,
connection errors and timeouts. Never retried: other 4xx, 501, 3xx.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from proxy.aws.errorcodes import error_code
from proxy.errors import UpstreamTimeout, UpstreamUnavailable

VerdictKind = Literal["success", "retryable", "final"]
RetryReason = Literal["throttling", "transient", "connection", "timeout"]

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
# 501 Not Implemented will not start working on a second try, whatever its body says.
NEVER_RETRIED_STATUSES = frozenset({501})
OTHER_CODE = "other"


@dataclass(frozen=True, slots=True)
class RetryVerdict:
    """The judgement of one attempt: `reason` is set exactly when `kind` is 'retryable'."""

    kind: VerdictKind
    reason: RetryReason | None = None
    error_code: str | None = None

    @property
    def is_throttle(self) -> bool:
        return self.reason == "throttling"

    @property
    def is_retryable(self) -> bool:
        return self.kind == "retryable"


SUCCESS = RetryVerdict("success")
CONNECTION_FAILED = RetryVerdict("retryable", "connection")
TIMED_OUT = RetryVerdict("retryable", "timeout")
FINAL_ERROR = RetryVerdict("final")


def judge_response(status: int, headers: Mapping[str, str], body: bytes | None) -> RetryVerdict:
    """The verdict for an answer with this status; `body` is the error body (None for 2xx)."""
    if status < 300:
        return SUCCESS
    code = error_code(headers, body)
    return judge_status_and_code(status, code)


def judge_status_and_code(status: int, code: str | None) -> RetryVerdict:
    """The verdict for an error answer whose code (if any) has already been read."""
    if status < 300:
        return SUCCESS
    if status in NEVER_RETRIED_STATUSES:
        return RetryVerdict("final", None, code)
    if code in THROTTLING_CODES or status == 429:
        return RetryVerdict("retryable", "throttling", code)
    if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
        return RetryVerdict("retryable", "transient", code)
    return RetryVerdict("final", None, code)


def judge_exception(exc: BaseException) -> RetryVerdict:
    """Connection failures and timeouts are retryable; any other exception is final."""
    if isinstance(exc, UpstreamTimeout):
        return TIMED_OUT
    if isinstance(exc, UpstreamUnavailable):
        return CONNECTION_FAILED
    return FINAL_ERROR


def throttle_code_label(code: str | None) -> str:
    """A bounded `error_code` label: a known throttling code, else 'other'."""
    return code if code in THROTTLING_CODES else OTHER_CODE


def attempt_outcome(verdict: RetryVerdict, status: int | None) -> str:
    """The bounded `outcome` label of one attempt (None status: no HTTP answer)."""
    if verdict is SUCCESS:
        return "success"  # a 2xx answer (judge_response's first check): most attempts
    if verdict.reason == "throttling":
        return "throttled"
    if verdict.reason in ("connection", "timeout"):
        return str(verdict.reason)
    if status is None:
        return "error"
    if status < 400:
        return "success"
    if status < 500:
        return "client_error"
    return "error"
