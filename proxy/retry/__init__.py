"""Retries: verdicts, capped full-jitter backoff, the retry quota and the attempt loop."""

from proxy.aws.errorcodes import error_code
from proxy.retry.backoff import BackoffPolicy, full_jitter, retry_delay, server_hint
from proxy.retry.loop import AttemptResult, AttemptRunner, max_attempts_for
from proxy.retry.quota import RetryQuota
from proxy.retry.verdicts import RetryVerdict, judge_exception, judge_response

__all__ = [
    "AttemptResult",
    "AttemptRunner",
    "BackoffPolicy",
    "RetryQuota",
    "RetryVerdict",
    "error_code",
    "full_jitter",
    "judge_exception",
    "judge_response",
    "max_attempts_for",
    "retry_delay",
    "server_hint",
]
