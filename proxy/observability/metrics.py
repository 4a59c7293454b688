"""Every Prometheus metric the proxy exports, created once per proxy in its own registry.

Labels come only from bounded sets: service, operation (a known name or `other`), rule name,
reason, outcome, status class, error code (a known code or `other`). Never bucket, key,
prefix, request id or anything else a client controls.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy.observability.hotmetrics import HotCounter, HotHistogram

PREFIX = "throttle_proxy_"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BACKOFF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    """The proxy's metrics; pass one instance to every component through its constructor."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Updated by every request (and every attempt): the lock-free kind
        # (proxy.observability.hotmetrics).
        self.requests_total = HotCounter(
            PREFIX + "requests_total",
            "Requests answered to clients.",
            ["service", "operation", "status_class"],
            registry=r,
        )
        self.request_duration_seconds = HotHistogram(
            PREFIX + "request_duration_seconds",
            "Time from request received to response headers sent, including waits and retries.",
            ["service", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_attempts_total = HotCounter(
            PREFIX + "upstream_attempts_total",
            "Attempts sent upstream, by outcome (success, throttled, error, client_error, "
            "connection, timeout).",
            ["service", "operation", "outcome"],
            registry=r,
        )
        self.upstream_pool_wait_seconds = Histogram(
            PREFIX + "upstream_pool_wait_seconds",
            "Time requests waited for a free upstream pool slot (only requests that found the "
            "pool full; not an upstream attempt).",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.retries_total = Counter(
            PREFIX + "retries_total",
            "Retries made, by reason (throttling, transient, connection, timeout).",
            ["service", "reason"],
            registry=r,
        )
        self.retry_backoff_seconds = Histogram(
            PREFIX + "retry_backoff_seconds",
            "Backoff slept before a retry.",
            ["service"],
            buckets=BACKOFF_BUCKETS,
            registry=r,
        )
        self.retry_quota_exhausted_total = Counter(
            PREFIX + "retry_quota_exhausted_total",
            "Retries not made because the service's retry quota was empty.",
            ["service"],
            registry=r,
        )
        self.retry_quota_available = Gauge(
            PREFIX + "retry_quota_available",
            "Tokens left in the service's retry quota.",
            ["service"],
            registry=r,
        )
        self.upstream_throttled_total = Counter(
            PREFIX + "upstream_throttled_total",
            "Throttling errors answered by AWS.",
            ["service", "operation", "error_code"],
            registry=r,
        )
        self.ratelimit_decisions_total = HotCounter(
            PREFIX + "ratelimit_decisions_total",
            "Client-side rate-limit decisions (allowed, delayed, rejected; shadow_* in shadow "
            "mode).",
            ["rule", "decision"],
            registry=r,
        )
        self.ratelimit_wait_seconds = HotHistogram(
            PREFIX + "ratelimit_wait_seconds",
            "Time requests waited for a rate-limit token.",
            ["rule"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.ratelimit_queue_depth = Gauge(
            PREFIX + "ratelimit_queue_depth",
            "Requests waiting for a token of the rule.",
            ["rule"],
            registry=r,
        )
        self.ratelimit_rate = Gauge(
            PREFIX + "ratelimit_rate",
            "The rule's current rate in tokens per second (lowered by adaptive rules).",
            ["rule"],
            registry=r,
        )
        self.ratelimit_backend_errors_total = Counter(
            PREFIX + "ratelimit_backend_errors_total",
            "Errors talking to the shared (Redis) limiter.",
            ["backend"],
            registry=r,
        )
        self.credentials_refresh_total = Counter(
            PREFIX + "credentials_refresh_total",
            "Credential loads and refreshes, by identity (configured name), provider and result.",
            ["identity", "provider", "result"],
            registry=r,
        )
        self.credentials_expiry_timestamp_seconds = Gauge(
            PREFIX + "credentials_expiry_timestamp_seconds",
            "When each identity's current credentials expire (0 when they do not).",
            ["identity", "provider"],
            registry=r,
        )
        self.credentials_mfa_required = Gauge(
            PREFIX + "credentials_mfa_required",
            "1 when the session needs a new MFA code to refresh.",
            registry=r,
        )
        self.proxy_errors_total = Counter(
            PREFIX + "errors_total",
            "Responses the proxy made itself, by reason.",
            ["reason"],
            registry=r,
        )
        self.faults_injected_total = Counter(
            PREFIX + "faults_injected_total",
            "Faults injected by fault rules (load tests), by rule and kind.",
            ["rule", "kind"],
            registry=r,
        )
        self.inflight_requests = Gauge(
            PREFIX + "inflight_requests",
            "Requests being handled now.",
            registry=r,
        )
        # The client side's defences (proxy.front).
        self.connections_open = Gauge(
            PREFIX + "connections_open",
            "Client connections open on the proxy listener.",
            registry=r,
        )
        self.connections_refused_total = Counter(
            PREFIX + "connections_refused_total",
            "Client connections refused, by reason (max-connections, out-of-fds).",
            ["reason"],
            registry=r,
        )
        self.client_timeouts_total = Counter(
            PREFIX + "client_timeouts_total",
            "Client connections or requests ended by a timeout, by phase (header, idle, body, "
            "send).",
            ["phase"],
            registry=r,
        )
        self.buffered_body_bytes = Gauge(
            PREFIX + "buffered_body_bytes",
            "Bytes of request bodies held in memory now, against buffered_body_budget.",
            registry=r,
        )
