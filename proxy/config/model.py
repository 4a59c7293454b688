"""The YAML config, parsed once into frozen dataclasses.

Every section has one dataclass and one parse function. Unknown keys are errors; every error
names the file and the key path (`proxy.yaml: limits[2].rate: expected a number, got str`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from proxy.config import readers as cp
from proxy.config.guards import load_yaml_file
from proxy.config.readers import ConfigError
from proxy.config.routes import Route, parse_routes
from proxy.faults.model import FaultRule, fault_rules, fault_seed
from proxy.observability.logs import LOG_LEVELS

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]

DEFAULT_ALLOW_HOSTS = ("*.amazonaws.com", "*.amazonaws.com.cn", "*.api.aws")
LIMIT_SCOPES = ("none", "operation", "bucket", "prefix")
# wait: queue up to max_wait (a client-side limit); enforce: refuse at once with the
# service's throttling error, as AWS does (the load-test stand-in for AWS).
LIMIT_MODES = ("wait", "enforce")
# What one budget of a rule counts, as AWS counts it: per account and region by default.
BUDGET_SCOPES = ("account-region", "region", "global")
# What one request costs a rule: one token (AWS's request buckets), or one per resource it
# acts on (EC2's resource buckets: instances terminated, started, stopped or launched).
LIMIT_COSTS = ("requests", "resources")


@dataclass(frozen=True)
class CredentialsConfig:
    profile: str | None = None
    advisory_refresh: float = 15 * 60.0
    mandatory_refresh: float = 10 * 60.0
    process_timeout: float = 30.0


@dataclass(frozen=True)
class LimitRule:
    name: str
    service: str
    rate: float
    burst: float
    operations: tuple[str, ...] = ()
    per: str = "none"
    prefix_depth: int = 1
    adaptive: bool = False
    shadow: bool = False
    scope: str = "account-region"
    # EC2: True covers only unfiltered, unpaginated calls; False only the others; None both.
    unfiltered: bool | None = None
    cost: str = "requests"


@dataclass(frozen=True)
class LimitPolicy:
    max_wait: float = 5.0
    max_queue: int = 10_000
    idle_expiry: float = 60.0
    mode: str = "wait"


@dataclass(frozen=True)
class RedisConfig:
    url: str
    key_prefix: str = "throttle-proxy"
    timeout: float = 0.25
    fail_open: bool = True
    cluster: bool = False
    lease_interval: float = 0.05  # slices of rate x this many seconds (0: no slices)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int | None = None
    base_delay: float | None = None  # None: the SDK's base (50 ms; DynamoDB 25 ms)
    throttle_base_delay: float = 1.0
    max_backoff: float = 20.0
    quota: int = 500
    max_total_time: float = 60.0
    honor_retry_after: bool = False
    service_max_attempts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UpstreamConfig:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_size: int = 256
    verify_tls: bool = True
    ca_bundle: str | None = None


@dataclass(frozen=True)
class ConnectionsConfig:
    """The client side's defences (proxy.front), nginx's and Envoy's usual ones."""

    header_timeout: float = 10.0  # request line and headers must arrive within this
    idle_timeout: float = 75.0  # keep-alive connection with no request
    body_timeout: float = 60.0  # longest gap between two reads of a client body
    send_timeout: float = 60.0  # longest gap between two writes a client accepts
    max_connections: int = 4096
    max_header_bytes: int = 64 * 1024  # request line plus all headers
    max_headers: int = 100


@dataclass(frozen=True)
class Config:
    source: str = "<defaults>"
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    admin_listen: tuple[str, int] = ("127.0.0.1", 9090)
    region: str = "us-east-1"
    log_level: str = "info"
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    allow_hosts: tuple[str, ...] = DEFAULT_ALLOW_HOSTS
    routes: tuple[Route, ...] = ()
    limits: tuple[LimitRule, ...] = ()
    include_default_limits: bool = False
    limit_policy: LimitPolicy = field(default_factory=LimitPolicy)
    redis: RedisConfig | None = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    max_buffered_body: int = 8 * 1024 * 1024
    # Non-S3 bodies past max_buffered_body are spooled to disk up to this size: the largest
    # documented request of the common services (DynamoDB 16 MB) fits.
    max_body: int = 32 * 1024 * 1024
    spool_dir: str | None = None  # None: the system temp dir
    spool_budget: int = 1024 * 1024 * 1024
    connections: ConnectionsConfig = field(default_factory=ConnectionsConfig)
    buffered_body_budget: int = 256 * 1024 * 1024  # all buffered request bodies together
    unsigned_payload: bool = False
    shutdown_grace: float = 20.0
    faults: tuple[FaultRule, ...] = ()
    fault_seed: int | None = None
    admin_token_file: str | None = None


_TOP_KEYS = {
    "faults",
    "fault_seed",
    "admin_token_file",
    "listen",
    "admin_listen",
    "region",
    "log_level",
    "credentials",
    "allow_hosts",
    "routes",
    "limits",
    "include_default_limits",
    "limit_policy",
    "redis",
    "retry",
    "upstream",
    "max_buffered_body",
    "max_body",
    "spool_dir",
    "spool_budget",
    "connections",
    "buffered_body_budget",
    "unsigned_payload",
    "shutdown_grace",
}


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError naming the file and key."""
    file = str(path)
    # Size, aliases, depth and huge integers are refused before anything expands.
    raw = load_yaml_file(path)
    try:
        return parse_config(raw, source=file)
    except ConfigError as exc:
        raise exc.in_file(file) from None


def parse_config(raw: object, source: str = "<config>") -> Config:
    top = cp.mapping(raw, "")
    if "max_header_size" in top:  # the one key issue 10 renamed: say where it went
        raise ConfigError("max_header_size", "renamed to connections.max_header_bytes")
    cp.reject_unknown(top, _TOP_KEYS, "")
    defaults = Config()
    log_level = cp.string(top.get("log_level", defaults.log_level), "log_level").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError("log_level", f"expected one of {', '.join(LOG_LEVELS)}")
    max_buffered_body = cp.size(
        top.get("max_buffered_body", defaults.max_buffered_body), "max_buffered_body"
    )
    max_body = cp.size(top.get("max_body", defaults.max_body), "max_body")
    if max_body < max_buffered_body:
        raise ConfigError(
            "max_body", f"must be at least max_buffered_body ({max_buffered_body} bytes)"
        )
    spool_budget = cp.size(top.get("spool_budget", defaults.spool_budget), "spool_budget")
    if max_body > max_buffered_body and spool_budget < max_body:
        # Else a body the budget could never hold gets 503 "try again" forever.
        raise ConfigError("spool_budget", f"must be at least max_body ({max_body} bytes)")
    buffered_body_budget = cp.size(
        top.get("buffered_body_budget", defaults.buffered_body_budget), "buffered_body_budget"
    )
    if buffered_body_budget < max_buffered_body:
        # Else every chunked body (it reserves max_buffered_body) gets 503 "try again" forever.
        raise ConfigError(
            "buffered_body_budget",
            f"must be at least max_buffered_body ({max_buffered_body} bytes)",
        )
    return Config(
        source=source,
        listen=cp.listen_address(top["listen"], "listen") if "listen" in top else defaults.listen,
        admin_listen=(
            cp.listen_address(top["admin_listen"], "admin_listen")
            if "admin_listen" in top
            else defaults.admin_listen
        ),
        region=cp.string(top.get("region", defaults.region), "region"),
        log_level=log_level,
        credentials=_credentials(top.get("credentials"), "credentials"),
        # Compared with the request's host as the router normalises it (lower case, no
        # trailing dot): `My-Api.Example.com.` must not silently never match.
        allow_hosts=tuple(
            entry.lower().removesuffix(".")
            for entry in cp.string_list(
                top.get("allow_hosts", list(DEFAULT_ALLOW_HOSTS)), "allow_hosts"
            )
        ),
        routes=parse_routes(top.get("routes"), "routes"),
        limits=_limits(top.get("limits"), "limits"),
        include_default_limits=cp.boolean(
            top.get("include_default_limits", False), "include_default_limits"
        ),
        limit_policy=_limit_policy(top.get("limit_policy"), "limit_policy"),
        redis=_redis(top.get("redis"), "redis"),
        retry=_retry(top.get("retry"), "retry"),
        upstream=_upstream(top.get("upstream"), "upstream"),
        max_buffered_body=max_buffered_body,
        max_body=max_body,
        spool_dir=cp.optional_string(top.get("spool_dir"), "spool_dir"),
        spool_budget=spool_budget,
        connections=_connections(top.get("connections"), "connections"),
        buffered_body_budget=buffered_body_budget,
        unsigned_payload=cp.boolean(top.get("unsigned_payload", False), "unsigned_payload"),
        shutdown_grace=cp.duration(
            top.get("shutdown_grace", defaults.shutdown_grace), "shutdown_grace"
        ),
        faults=fault_rules(top.get("faults"), "faults"),
        fault_seed=fault_seed(top.get("fault_seed"), "fault_seed"),
        admin_token_file=cp.optional_string(top.get("admin_token_file"), "admin_token_file"),
    )


def _connections(raw: object, path: str) -> ConnectionsConfig:
    section = cp.mapping(raw, path)
    d = ConnectionsConfig()
    cp.reject_unknown(section, set(vars(d)), path)

    def timeout(key: str) -> float:
        return cp.duration(section.get(key, getattr(d, key)), f"{path}.{key}", False)

    def count(key: str) -> int:
        return cp.integer(section.get(key, getattr(d, key)), f"{path}.{key}", 1)

    header_bytes = cp.size(
        section.get("max_header_bytes", d.max_header_bytes), f"{path}.max_header_bytes"
    )
    if header_bytes < 256:
        raise ConfigError(f"{path}.max_header_bytes", f"must be at least 256, got {header_bytes}")
    return ConnectionsConfig(
        header_timeout=timeout("header_timeout"),
        idle_timeout=timeout("idle_timeout"),
        body_timeout=timeout("body_timeout"),
        send_timeout=timeout("send_timeout"),
        max_connections=count("max_connections"),
        max_header_bytes=header_bytes,
        max_headers=count("max_headers"),
    )


def _credentials(raw: object, path: str) -> CredentialsConfig:
    section = cp.mapping(raw, path)
    cp.reject_unknown(
        section, {"profile", "advisory_refresh", "mandatory_refresh", "process_timeout"}, path
    )
    d = CredentialsConfig()
    advisory = cp.duration(
        section.get("advisory_refresh", d.advisory_refresh), f"{path}.advisory_refresh"
    )
    mandatory = cp.duration(
        section.get("mandatory_refresh", d.mandatory_refresh), f"{path}.mandatory_refresh"
    )
    if mandatory > advisory:
        raise ConfigError(f"{path}.mandatory_refresh", "must not be longer than advisory_refresh")
    return CredentialsConfig(
        profile=cp.optional_string(section.get("profile"), f"{path}.profile"),
        advisory_refresh=advisory,
        mandatory_refresh=mandatory,
        process_timeout=cp.duration(
            section.get("process_timeout", d.process_timeout), f"{path}.process_timeout", False
        ),
    )


_LIMIT_KEYS = {
    "name",
    "service",
    "operations",
    "rate",
    "burst",
    "per",
    "prefix_depth",
    "adaptive",
    "shadow",
    "scope",
    "unfiltered",
    "cost",
}


def limit_rule(raw: object, path: str) -> LimitRule:
    section = cp.mapping(raw, path)
    cp.reject_unknown(section, _LIMIT_KEYS, path)
    for required in ("name", "service", "rate"):
        if required not in section:
            raise ConfigError(f"{path}.{required}", "is required")
    rate = cp.number(section["rate"], f"{path}.rate", positive=True)
    burst = cp.number(section.get("burst", max(rate, 1.0)), f"{path}.burst", minimum=1)
    per = cp.string(section.get("per", "none"), f"{path}.per")
    if per not in LIMIT_SCOPES:
        raise ConfigError(
            f"{path}.per", f"expected one of {', '.join(LIMIT_SCOPES)}, got {cp.shown(per)}"
        )
    scope = cp.string(section.get("scope", "account-region"), f"{path}.scope")
    if scope not in BUDGET_SCOPES:
        raise ConfigError(
            f"{path}.scope", f"expected one of {', '.join(BUDGET_SCOPES)}, got {cp.shown(scope)}"
        )
    cost = cp.string(section.get("cost", "requests"), f"{path}.cost")
    if cost not in LIMIT_COSTS:
        raise ConfigError(
            f"{path}.cost", f"expected one of {', '.join(LIMIT_COSTS)}, got {cp.shown(cost)}"
        )
    operations = (
        cp.string_list(section["operations"], f"{path}.operations")
        if "operations" in section
        else ()
    )
    return LimitRule(
        name=cp.string(section["name"], f"{path}.name"),
        service=cp.string(section["service"], f"{path}.service").lower(),
        rate=rate,
        burst=burst,
        operations=operations,
        per=per,
        prefix_depth=cp.integer(section.get("prefix_depth", 1), f"{path}.prefix_depth", 0),
        adaptive=cp.boolean(section.get("adaptive", False), f"{path}.adaptive"),
        shadow=cp.boolean(section.get("shadow", False), f"{path}.shadow"),
        scope=scope,
        unfiltered=None
        if section.get("unfiltered") is None
        else cp.boolean(section["unfiltered"], f"{path}.unfiltered"),
        cost=cost,
    )


def _limits(raw: object, path: str) -> tuple[LimitRule, ...]:
    return cp.named_items(raw, path, limit_rule)


def _limit_policy(raw: object, path: str) -> LimitPolicy:
    section = cp.mapping(raw, path)
    cp.reject_unknown(section, {"max_wait", "max_queue", "idle_expiry", "mode"}, path)
    d = LimitPolicy()
    mode = cp.string(section.get("mode", d.mode), f"{path}.mode")
    if mode not in LIMIT_MODES:
        raise ConfigError(
            f"{path}.mode", f"expected one of {', '.join(LIMIT_MODES)}, got {cp.shown(mode)}"
        )
    if mode == "enforce" and "max_wait" in section:
        raise ConfigError(f"{path}.max_wait", "does not apply to mode enforce (it never waits)")
    return LimitPolicy(
        mode=mode,
        # Enforcing is waiting for nothing: the limiters refuse whenever a token is not there.
        max_wait=0.0
        if mode == "enforce"
        else cp.duration(section.get("max_wait", d.max_wait), f"{path}.max_wait"),
        max_queue=cp.integer(section.get("max_queue", d.max_queue), f"{path}.max_queue", 0),
        idle_expiry=cp.duration(
            section.get("idle_expiry", d.idle_expiry), f"{path}.idle_expiry", False
        ),
    )


def _redis(raw: object, path: str) -> RedisConfig | None:
    if raw is None:
        return None
    section = cp.mapping(raw, path)
    known = {"url", "key_prefix", "timeout", "fail_open", "cluster", "lease_interval"}
    cp.reject_unknown(section, known, path)
    if "url" not in section:
        raise ConfigError(f"{path}.url", "is required")
    url = cp.string(section["url"], f"{path}.url")
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        raise ConfigError(
            f"{path}.url",
            f"expected redis://, rediss://, unix:// or redis+cluster://, got {cp.shown(url)}",
        )
    cluster = cp.boolean(section.get("cluster", False), f"{path}.cluster")
    if scheme.endswith("+cluster"):
        cluster, url = True, url.replace("+cluster", "", 1)
    if cluster and scheme.startswith("unix"):
        raise ConfigError(f"{path}.cluster", "Redis Cluster needs a redis:// or rediss:// URL")
    d = RedisConfig(url=url)
    return RedisConfig(
        url=url,
        key_prefix=cp.string(section.get("key_prefix", d.key_prefix), f"{path}.key_prefix"),
        timeout=cp.duration(section.get("timeout", d.timeout), f"{path}.timeout", False),
        fail_open=cp.boolean(section.get("fail_open", d.fail_open), f"{path}.fail_open"),
        cluster=cluster,
        lease_interval=cp.duration(
            section.get("lease_interval", d.lease_interval), f"{path}.lease_interval", True
        ),
    )


_RETRY_KEYS = {
    "max_attempts",
    "base_delay",
    "throttle_base_delay",
    "max_backoff",
    "quota",
    "max_total_time",
    "honor_retry_after",
    "services",
}


def _retry(raw: object, path: str) -> RetryConfig:
    section = cp.mapping(raw, path)
    cp.reject_unknown(section, _RETRY_KEYS, path)
    d = RetryConfig()
    max_attempts = section.get("max_attempts")
    per_service: dict[str, int] = {}
    services = cp.mapping(section.get("services"), f"{path}.services")
    for name, value in services.items():
        svc_path = f"{path}.services.{name}"
        svc = cp.mapping(value, svc_path)
        cp.reject_unknown(svc, {"max_attempts"}, svc_path)
        if "max_attempts" in svc:
            per_service[name.lower()] = cp.integer(
                svc["max_attempts"], f"{svc_path}.max_attempts", 1
            )
    return RetryConfig(
        max_attempts=None
        if max_attempts is None
        else cp.integer(max_attempts, f"{path}.max_attempts", 1),
        base_delay=None
        if "base_delay" not in section
        else cp.duration(section["base_delay"], f"{path}.base_delay"),
        throttle_base_delay=cp.duration(
            section.get("throttle_base_delay", d.throttle_base_delay), f"{path}.throttle_base_delay"
        ),
        max_backoff=cp.duration(section.get("max_backoff", d.max_backoff), f"{path}.max_backoff"),
        quota=cp.integer(section.get("quota", d.quota), f"{path}.quota", 0),
        max_total_time=cp.duration(
            section.get("max_total_time", d.max_total_time), f"{path}.max_total_time", False
        ),
        honor_retry_after=cp.boolean(
            section.get("honor_retry_after", d.honor_retry_after), f"{path}.honor_retry_after"
        ),
        service_max_attempts=per_service,
    )


def _upstream(raw: object, path: str) -> UpstreamConfig:
    section = cp.mapping(raw, path)
    cp.reject_unknown(
        section, {"connect_timeout", "read_timeout", "pool_size", "verify_tls", "ca_bundle"}, path
    )
    d = UpstreamConfig()
    return UpstreamConfig(
        connect_timeout=cp.duration(
            section.get("connect_timeout", d.connect_timeout), f"{path}.connect_timeout", False
        ),
        read_timeout=cp.duration(
            section.get("read_timeout", d.read_timeout), f"{path}.read_timeout", False
        ),
        pool_size=cp.integer(section.get("pool_size", d.pool_size), f"{path}.pool_size", 1),
        verify_tls=cp.boolean(section.get("verify_tls", d.verify_tls), f"{path}.verify_tls"),
        ca_bundle=cp.optional_string(section.get("ca_bundle"), f"{path}.ca_bundle"),
    )
