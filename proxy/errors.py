"""The proxy's own error tree. Each error knows the HTTP answer it becomes.

ProxyError
 ├── BadRequest              400 bad-request      (malformed request from the client)
 ├── HostNotAllowed          403 host-not-allowed (outside allow_hosts and routes)
 ├── MethodNotAllowed        405 connect-refused  (CONNECT cannot be signed)
 ├── PayloadTooLarge         413 body-too-large
 ├── ClientTimeout           408 client-timeout   (headers stalled: the client's fault)
 │    └── ClientBodyTimeout  408 client-body-timeout (the client stopped sending its body)
 ├── HeaderTooLarge          431 header-too-large (over connections.max_header_bytes/max_headers)
 ├── VersionNotSupported     505 http-version-not-supported (only HTTP/1.0 and 1.1 are spoken)
 ├── ClientClosed            499 client-closed    (never written: the client went away)
 ├── Overloaded              503 (reason per cap, with Retry-After: the body budget, connections)
 ├── NoCredentials           503 no-credentials   (the chain yielded nothing)
 ├── MfaRequired             503 mfa-required
 ├── RateLimited             (service's own throttle) rate-limited
 ├── PoolExhausted           503 upstream-pool-exhausted (no pool slot in time: not an attempt)
 ├── UpstreamUnavailable     502 upstream-unavailable (connect/reset)       ┐ reached the
 ├── UpstreamBadResponse     502 upstream-bad-response (not HTTP/1.1)      │ upstream: an
 └── UpstreamTimeout         504 upstream-timeout                          ┘ attempt
CredentialError is separate: a provider's own failure, turned into NoCredentials by the chain.
"""

from __future__ import annotations


class ProxyError(Exception):
    """An error the proxy answers itself, with `x-throttle-proxy-error: <reason>`."""

    status: int = 500
    reason: str = "internal-error"
    # Upstream attempts made before this error ended the request. 0 for refusals (nothing was
    # sent: no `x-throttle-proxy-attempts`); the retry loop sets it when attempts were made.
    attempts: int = 0
    # True when the request went out before this error: it counts as an upstream attempt.
    reached_upstream: bool = False
    # The error code in the service's format; None: derived from `reason` (HostNotAllowed).
    code: str | None = None
    # Seconds a client should wait before trying again (sent as Retry-After), when known.
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ProxyError):
    status = 400
    reason = "bad-request"


class HostNotAllowed(ProxyError):
    status = 403
    reason = "host-not-allowed"


class MethodNotAllowed(ProxyError):
    status = 405
    reason = "connect-refused"


class PayloadTooLarge(ProxyError):
    status = 413
    reason = "body-too-large"


class ClientBodyIncomplete(BadRequest):
    """The client ended its body early (fewer bytes than declared, or a broken chunk)."""

    reason = "client-body-incomplete"


class ClientTimeout(ProxyError):
    """The client stopped sending its headers or body (nginx's 408)."""

    status = 408
    reason = "client-timeout"


class ClientClosed(ProxyError):
    """The client went away (or stopped reading past send_timeout): nothing can be sent."""

    status = 499  # nginx's convention for the log line and metrics
    reason = "client-closed"


class ClientBodyTimeout(ClientTimeout):
    """The client stopped sending its body (connections.body_timeout, or mid-upload)."""

    reason = "client-body-timeout"


class HeaderTooLarge(ProxyError):
    status = 431
    reason = "header-too-large"


class VersionNotSupported(ProxyError):
    status = 505
    reason = "http-version-not-supported"


class Overloaded(ProxyError):
    """A shared capacity is spent (the buffered-body budget, the connection cap)."""

    status = 503

    def __init__(self, message: str, reason: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class NoCredentials(ProxyError):
    status = 503
    reason = "no-credentials"


class MfaRequired(NoCredentials):
    reason = "mfa-required"


class RateLimited(ProxyError):
    """Over a client-side limit; rendered in the service's own throttling format."""

    status = 503
    reason = "rate-limited"

    def __init__(self, message: str, retry_after: float, rule: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rule = rule


class PoolExhausted(ProxyError):
    """Every upstream pool slot stayed busy: nothing was sent, so it is no upstream attempt
    and no retry reason (a retry would only queue again)."""

    status = 503
    reason = "upstream-pool-exhausted"


class UpstreamUnavailable(ProxyError):
    status = 502
    reason = "upstream-unavailable"
    reached_upstream = True


class UpstreamBadResponse(ProxyError):
    """The upstream answered with something that is not well-framed HTTP/1.1; final."""

    status = 502
    reason = "upstream-bad-response"
    reached_upstream = True


class UpstreamTimeout(ProxyError):
    status = 504
    reason = "upstream-timeout"
    reached_upstream = True


class CredentialError(Exception):
    """A provider found its source but it was broken: stops the chain (botocore semantics)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
