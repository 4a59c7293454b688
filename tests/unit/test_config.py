"""Config parsing: every value reader, every section, every error message word for word, and the
defaults the README documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from proxy.config import readers as cp
from proxy.config.model import (
    DEFAULT_ALLOW_HOSTS,
    Config,
    ConfigError,
    ConnectionsConfig,
    CredentialsConfig,
    LimitPolicy,
    LimitRule,
    RetryConfig,
    UpstreamConfig,
    load_config,
    parse_config,
)
from proxy.config.routes import Route
from proxy.config.summary import summary

README = Path(__file__).resolve().parents[2] / "README.md"

TOP_KEYS = (
    "admin_listen, admin_token_file, allow_hosts, buffered_body_budget, connections, "
    "credentials, fault_seed, faults, include_default_limits, limit_policy, limits, listen, "
    "log_level, max_body, max_buffered_body, redis, region, retry, routes, shutdown_grace, "
    "spool_budget, spool_dir, unsigned_payload, upstream"
)
ROUTE = "routes:\n  - {path_prefix: /s3, upstream: 'http://127.0.0.1:9000', service: s3"
LIMIT = "limits:\n  - {name: a, service: ec2, rate: 5"


def write(tmp_path: Path, text: str, name: str = "proxy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == caught.value.render()
    return caught.value.render()


# --- value readers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("250ms", 0.25),
        ("2m", 120.0),
        ("5s", 5.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 30 s ", 30.0),
        ("10", 10.0),
        (5, 5.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_durations_are_seconds(raw: object, seconds: float) -> None:
    value = cp.duration(raw, "d")
    assert value == pytest.approx(seconds)
    assert isinstance(value, float)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("5 parsecs", "expected a duration like 5s or 250ms, got '5 parsecs'"),
        ("5S", "expected a duration like 5s or 250ms, got '5S'"),
        ("-5s", "expected a duration like 5s or 250ms, got '-5s'"),
        ("", "expected a duration like 5s or 250ms, got ''"),
        (None, "expected a duration like 5s or 250ms, got None"),
        ([5], "expected a duration like 5s or 250ms, got [5]"),
        (True, "expected a duration like 5s or 250ms, got bool"),
        (-1, "must be greater than 0, got -1"),
    ],
)
def test_bad_durations_say_what_was_given(raw: object, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cp.duration(raw, "a.b")
    assert caught.value.render() == f"<config>: a.b: {reason}"


def test_zero_duration_refused_where_zero_means_nothing() -> None:
    with pytest.raises(ConfigError) as caught:
        cp.duration("0s", "t", allow_zero=False)
    assert caught.value.reason == "must be greater than 0, got '0s'"
    assert cp.duration("0s", "t") == 0.0


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("8MiB", 8 * 1024 * 1024),
        ("64KiB", 65536),
        ("1GiB", 1024**3),
        ("2KB", 2000),
        ("3MB", 3_000_000),
        ("1GB", 10**9),
        ("512B", 512),
        ("100", 100),
        (" 4 KiB ", 4096),
        (0, 0),
        (1234, 1234),
    ],
)
def test_sizes_are_bytes(raw: object, size: int) -> None:
    assert cp.size(raw, "s") == size


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("8 mib", "'8 mib'"), ("1.5MiB", "'1.5MiB'"), (-1, "-1"), (1.5, "1.5"), (True, "True")],
)
def test_bad_sizes_say_what_was_given(raw: object, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cp.size(raw, "max_buffered_body")
    assert caught.value.render() == (
        f"<config>: max_buffered_body: expected a size like 8MiB or a byte count, got {shown}"
    )


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:9000", ("::1", 9000)),
        (":8081", ("127.0.0.1", 8081)),
        (8082, ("127.0.0.1", 8082)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_listen_addresses(raw: object, address: tuple[str, int]) -> None:
    assert cp.listen_address(raw, "listen") == address


def test_config_error_renders_without_a_path_for_whole_file_problems() -> None:
    assert ConfigError("", "cannot read: gone", "f.yaml").render() == "f.yaml: cannot read: gone"
    moved = ConfigError("a.b", "bad").in_file("x.yaml")
    assert (moved.file, moved.path, moved.reason) == ("x.yaml", "a.b", "bad")
    assert str(moved) == "x.yaml: a.b: bad"


# --- whole files ----------------------------------------------------------------------------


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path)
    assert config == Config(source=str(path))


def test_every_section_parses(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
listen: 0.0.0.0:18080
admin_listen: 19090
region: eu-west-1
log_level: DEBUG
credentials:
  profile: dev
  advisory_refresh: 20m
  mandatory_refresh: 2m
  process_timeout: 1500ms
allow_hosts: ["*.amazonaws.com", "sts.example.internal"]
routes:
  - host: Storage.Example
    upstream: https://s3.eu-west-1.amazonaws.com/
  - path_prefix: /ddb
    upstream: http://127.0.0.1:8000
    service: dynamodb
    region: us-west-2
include_default_limits: true
limits:
  - name: describe
    service: EC2
    operations: [Describe*]
    rate: 2.5
  - name: s3-prefix
    service: s3
    rate: 100
    burst: 200
    per: prefix
    prefix_depth: 2
    adaptive: true
    shadow: true
limit_policy: {max_wait: 250ms, max_queue: 0, idle_expiry: 2m}
redis: {url: "rediss://:pw@cache:6380/0", key_prefix: tp, timeout: 100ms, fail_open: false,
        lease_interval: 20ms}
retry:
  max_attempts: 5
  base_delay: 10ms
  throttle_base_delay: 2s
  max_backoff: 1m
  quota: 0
  max_total_time: 90s
  honor_retry_after: true
  services:
    DynamoDB: {max_attempts: 4}
    s3: {}
upstream:
  connect_timeout: 1s
  read_timeout: 2m
  pool_size: 8
  verify_tls: false
  ca_bundle: /etc/ca.pem
max_buffered_body: 1MiB
connections:
  header_timeout: 3s
  idle_timeout: 2m
  body_timeout: 250ms
  send_timeout: 7
  max_connections: 50
  max_header_bytes: 32KiB
  max_headers: 20
buffered_body_budget: 64MiB
unsigned_payload: true
shutdown_grace: 45s
""",
    )
    assert config.listen == ("0.0.0.0", 18080)
    assert config.admin_listen == ("127.0.0.1", 19090)
    assert config.region == "eu-west-1"
    assert config.log_level == "debug"
    assert config.credentials == CredentialsConfig("dev", 1200.0, 120.0, 1.5)
    assert config.allow_hosts == ("*.amazonaws.com", "sts.example.internal")
    assert config.routes == (
        Route(upstream="https://s3.eu-west-1.amazonaws.com", host="storage.example"),
        Route(
            upstream="http://127.0.0.1:8000",
            path_prefix="/ddb",
            service="dynamodb",
            region="us-west-2",
        ),
    )
    assert config.routes[1].upstream_scheme == "http"
    assert config.routes[1].upstream_host == "127.0.0.1"
    assert config.include_default_limits is True
    assert config.limits == (
        LimitRule(name="describe", service="ec2", rate=2.5, burst=2.5, operations=("Describe*",)),
        LimitRule(
            name="s3-prefix",
            service="s3",
            rate=100.0,
            burst=200.0,
            per="prefix",
            prefix_depth=2,
            adaptive=True,
            shadow=True,
        ),
    )
    assert config.limit_policy == LimitPolicy(0.25, 0, 120.0)
    assert config.redis is not None
    assert (config.redis.url, config.redis.key_prefix) == ("rediss://:pw@cache:6380/0", "tp")
    assert (config.redis.timeout, config.redis.fail_open) == (0.1, False)
    assert config.redis.lease_interval == 0.02
    assert config.retry == RetryConfig(
        max_attempts=5,
        base_delay=0.01,
        throttle_base_delay=2.0,
        max_backoff=60.0,
        quota=0,
        max_total_time=90.0,
        honor_retry_after=True,
        service_max_attempts={"dynamodb": 4},
    )
    assert config.upstream == UpstreamConfig(1.0, 120.0, 8, False, "/etc/ca.pem")
    assert config.max_buffered_body == 1024 * 1024
    assert config.connections == ConnectionsConfig(3.0, 120.0, 0.25, 7.0, 50, 32 * 1024, 20)
    assert config.buffered_body_budget == 64 * 1024 * 1024
    assert config.unsigned_payload is True
    assert config.shutdown_grace == 45.0
    assert config.source.endswith("proxy.yaml")


def test_burst_defaults_to_rate_but_never_below_one() -> None:
    config = parse_config(
        {
            "limits": [
                {"name": "slow", "service": "sts", "rate": 0.2},
                {"name": "fast", "service": "sts", "rate": 40},
            ]
        }
    )
    assert [rule.burst for rule in config.limits] == [1.0, 40.0]
    assert [rule.per for rule in config.limits] == ["none", "none"]


def test_null_sections_are_their_defaults() -> None:
    config = parse_config(
        {"credentials": None, "routes": None, "limits": None, "redis": None, "retry": None}
    )
    assert config == Config(source="<config>")


def test_summary_masks_the_redis_password() -> None:
    config = parse_config({"redis": {"url": "redis://user:hunter2@cache:6379/0"}})
    shown = summary(config)
    assert shown["redis"] == "redis://user:****@cache:6379/0"
    assert "hunter2" not in repr(shown)
    assert summary(parse_config({"redis": {"url": "redis://cache"}}))["redis"] == "redis://cache"


def test_summary_lists_the_effective_settings() -> None:
    config = parse_config(
        {
            "listen": "0.0.0.0:8080",
            "routes": [{"path_prefix": "/x", "upstream": "http://h:1", "service": "s3"}],
            "limits": [{"name": "a", "service": "ec2", "rate": 1}],
        }
    )
    assert summary(config) == {
        "listen": "0.0.0.0:8080",
        "admin_listen": "127.0.0.1:9090",
        "region": "us-east-1",
        "allow_hosts": list(DEFAULT_ALLOW_HOSTS),
        "routes": [{"upstream": "http://h:1", "path_prefix": "/x", "service": "s3"}],
        "limits": 1,
        "redis": None,
        "retry": {"max_attempts": None, "quota": 500},
    }


# --- every error message, word for word -------------------------------------------------------

BAD_CONFIGS: list[tuple[str, str]] = [
    # whole-file shape
    ("- a\n- b\n", "expected a mapping, got list"),
    ("just a string\n", "expected a mapping, got str"),
    ("1: x\n", "keys must be strings, got 1"),
    # unknown keys, top level and in each section
    ("bogus: 1\n", f"bogus: unknown key (known keys: {TOP_KEYS})"),
    (
        "credentials: {ttl: 5}\n",
        "credentials.ttl: unknown key (known keys: advisory_refresh, mandatory_refresh, "
        "process_timeout, profile)",
    ),
    (
        f"{ROUTE}, port: 1}}\n",
        "routes[0].port: unknown key (known keys: credentials, host, path_prefix, region, "
        "service, upstream)",
    ),
    (
        f"{LIMIT}, window: x}}\n",
        "limits[0].window: unknown key (known keys: adaptive, burst, cost, name, operations, "
        "per, prefix_depth, rate, scope, service, shadow, unfiltered)",
    ),
    (
        f"{LIMIT}, unfiltered: maybe}}\n",
        "limits[0].unfiltered: expected true or false, got str",
    ),
    (
        f"{LIMIT}, cost: instances}}\n",
        "limits[0].cost: expected one of requests, resources, got 'instances'",
    ),
    (f"{LIMIT}, cost: 3}}\n", "limits[0].cost: expected a non-empty string, got int"),
    (
        f"{LIMIT}, scope: account}}\n",
        "limits[0].scope: expected one of account-region, region, global, got 'account'",
    ),
    (
        f"{ROUTE}, credentials: {{role_session_name: x}}}}\n",
        "routes[0].credentials: needs exactly one of role_arn or profile",
    ),
    (
        f"{ROUTE}, credentials: {{role_arn: 'arn:aws:iam::12:role/x'}}}}\n",
        "routes[0].credentials.role_arn: expected arn:aws:iam::<12-digit account>:role/<name>, "
        "got 'arn:aws:iam::12:role/x'",
    ),
    (
        f"{ROUTE}, credentials: {{profile: p, source_profile: q}}}}\n",
        "routes[0].credentials.source_profile: goes with role_arn, not profile",
    ),
    (
        f"{ROUTE}, credentials: {{profile: p, name: default}}}}\n",
        "routes[0].credentials.name: 'default' is the top-level credentials' name",
    ),
    (
        f"{ROUTE}, credentials: {{profile: p, name: 'a b'}}}}\n",
        "routes[0].credentials.name: expected letters, digits, '_', '.', '-', got 'a b'",
    ),
    (
        f"{ROUTE}, credentials: {{profile: p, name: x}}}}\n"
        "  - {host: b.example.com, upstream: 'https://b.example.com', "
        "credentials: {profile: q, name: x}}\n",
        "routes[1].credentials.name: identity 'x' is described differently at routes[0]",
    ),
    (
        "redis: {url: 'unix:///tmp/r.sock', cluster: true}\n",
        "redis.cluster: Redis Cluster needs a redis:// or rediss:// URL",
    ),
    (
        "limit_policy: {max_waiting: 1}\n",
        "limit_policy.max_waiting: unknown key (known keys: idle_expiry, max_queue, max_wait, "
        "mode)",
    ),
    (
        "redis: {url: 'redis://h', db: 1}\n",
        "redis.db: unknown key (known keys: cluster, fail_open, key_prefix, lease_interval, "
        "timeout, url)",
    ),
    (
        "retry: {attempts: 3}\n",
        "retry.attempts: unknown key (known keys: base_delay, honor_retry_after, max_attempts, "
        "max_backoff, max_total_time, quota, services, throttle_base_delay)",
    ),
    (
        "retry: {services: {s3: {attempts: 2}}}\n",
        "retry.services.s3.attempts: unknown key (known keys: max_attempts)",
    ),
    (
        "upstream: {timeout: 1}\n",
        "upstream.timeout: unknown key (known keys: ca_bundle, connect_timeout, pool_size, "
        "read_timeout, verify_tls)",
    ),
    # wrong types
    ("region: 5\n", "region: expected a non-empty string, got int"),
    ("region: ''\n", "region: expected a non-empty string, got str"),
    ("region:\n", "region: expected a non-empty string, got null"),
    ("credentials: 5\n", "credentials: expected a mapping, got int"),
    ("credentials: {profile: 7}\n", "credentials.profile: expected a non-empty string, got int"),
    ("allow_hosts: '*.amazonaws.com'\n", "allow_hosts: expected a list of strings, got str"),
    ("allow_hosts: ['a', 1]\n", "allow_hosts[1]: expected a non-empty string, got int"),
    ("routes: {host: a}\n", "routes: expected a list, got dict"),
    ("routes: [x]\n", "routes[0]: expected a mapping, got str"),
    ("limits: 5\n", "limits: expected a list, got int"),
    (f"{LIMIT}}}\n  - 7\n", "limits[1]: expected a mapping, got int"),
    (
        "limits:\n  - {name: a, service: ec2, rate: fast}\n",
        "limits[0].rate: expected a number, got str",
    ),
    (f"{LIMIT}, burst: many}}\n", "limits[0].burst: expected a number, got str"),
    (
        "limits:\n  - {name: a, service: ec2, rate: true}\n",
        "limits[0].rate: expected a number, got bool",
    ),
    (f"{LIMIT}, burst: 0.5}}\n", "limits[0].burst: must be at least 1, got 0.5"),
    (
        f"{LIMIT}, operations: Describe*}}\n",
        "limits[0].operations: expected a list of strings, got str",
    ),
    (f"{LIMIT}, prefix_depth: 1.5}}\n", "limits[0].prefix_depth: expected an integer, got float"),
    (f"{LIMIT}, prefix_depth: -1}}\n", "limits[0].prefix_depth: must be at least 0, got -1"),
    (f"{LIMIT}, adaptive: 1}}\n", "limits[0].adaptive: expected true or false, got int"),
    (f"{LIMIT}, shadow: 'yes'}}\n", "limits[0].shadow: expected true or false, got str"),
    (
        "limits:\n  - {name: 5, service: ec2, rate: 1}\n",
        "limits[0].name: expected a non-empty string, got int",
    ),
    ("include_default_limits: 1\n", "include_default_limits: expected true or false, got int"),
    ("unsigned_payload: 'true'\n", "unsigned_payload: expected true or false, got str"),
    ("limit_policy: {max_queue: 1.5}\n", "limit_policy.max_queue: expected an integer, got float"),
    ("limit_policy: {max_queue: -1}\n", "limit_policy.max_queue: must be at least 0, got -1"),
    ("retry: {max_attempts: 0}\n", "retry.max_attempts: must be at least 1, got 0"),
    ("retry: {max_attempts: true}\n", "retry.max_attempts: expected an integer, got bool"),
    ("retry: {quota: lots}\n", "retry.quota: expected an integer, got str"),
    ("retry: {honor_retry_after: 0}\n", "retry.honor_retry_after: expected true or false, got int"),
    ("upstream: {pool_size: 0}\n", "upstream.pool_size: must be at least 1, got 0"),
    ("upstream: {verify_tls: 'no'}\n", "upstream.verify_tls: expected true or false, got str"),
    ("upstream: {ca_bundle: ''}\n", "upstream.ca_bundle: expected a non-empty string, got str"),
    # durations
    (
        "shutdown_grace: 5 parsecs\n",
        "shutdown_grace: expected a duration like 5s or 250ms, got '5 parsecs'",
    ),
    ("shutdown_grace: true\n", "shutdown_grace: expected a duration like 5s or 250ms, got bool"),
    ("limit_policy: {max_wait: -1}\n", "limit_policy.max_wait: must be greater than 0, got -1"),
    ("limit_policy: {idle_expiry: 0}\n", "limit_policy.idle_expiry: must be greater than 0, got 0"),
    (
        "credentials: {advisory_refresh: soon}\n",
        "credentials.advisory_refresh: expected a duration like 5s or 250ms, got 'soon'",
    ),
    (
        "credentials: {process_timeout: 0s}\n",
        "credentials.process_timeout: must be greater than 0, got '0s'",
    ),
    ("redis: {url: 'redis://h', timeout: 0}\n", "redis.timeout: must be greater than 0, got 0"),
    (
        "redis: {url: 'redis://h', lease_interval: -1s}\n",
        "redis.lease_interval: expected a duration like 5s or 250ms, got '-1s'",
    ),
    (
        "retry: {base_delay: 1 fortnight}\n",
        "retry.base_delay: expected a duration like 5s or 250ms, got '1 fortnight'",
    ),
    (
        "retry: {max_backoff: [1]}\n",
        "retry.max_backoff: expected a duration like 5s or 250ms, got [1]",
    ),
    ("retry: {max_total_time: 0}\n", "retry.max_total_time: must be greater than 0, got 0"),
    (
        "upstream: {connect_timeout: 0ms}\n",
        "upstream.connect_timeout: must be greater than 0, got '0ms'",
    ),
    (
        "upstream: {read_timeout: 1d}\n",
        "upstream.read_timeout: expected a duration like 5s or 250ms, got '1d'",
    ),
    # sizes
    (
        "max_buffered_body: 8 mib\n",
        "max_buffered_body: expected a size like 8MiB or a byte count, got '8 mib'",
    ),
    (
        "max_buffered_body: -1\n",
        "max_buffered_body: expected a size like 8MiB or a byte count, got -1",
    ),
    (
        "max_buffered_body: 1MiB\nmax_body: 512KiB\n",
        "max_body: must be at least max_buffered_body (1048576 bytes)",
    ),
    ("spool_budget: lots\n", "spool_budget: expected a size like 8MiB or a byte count, got 'lots'"),
    (
        "max_body: 32MiB\nspool_budget: 16MiB\n",
        "spool_budget: must be at least max_body (33554432 bytes)",
    ),
    # Under max_buffered_body, every chunked body (it reserves max_buffered_body) and every
    # body between the two would get 503 "try again shortly", forever.
    (
        "buffered_body_budget: 4MiB\n",
        "buffered_body_budget: must be at least max_buffered_body (8388608 bytes)",
    ),
    (
        "max_buffered_body: 1MiB\nbuffered_body_budget: 512KiB\n",
        "buffered_body_budget: must be at least max_buffered_body (1048576 bytes)",
    ),
    ("spool_dir: 7\n", "spool_dir: expected a non-empty string, got int"),
    (
        "connections: {max_header_bytes: 1.5KiB}\n",
        "connections.max_header_bytes: expected a size like 8MiB or a byte count, got '1.5KiB'",
    ),
    (
        "connections: {max_header_bytes: 100}\n",
        "connections.max_header_bytes: must be at least 256, got 100",
    ),
    (
        "connections: {header_timeout: 0}\n",
        "connections.header_timeout: must be greater than 0, got 0",
    ),
    (
        "connections: {max_connections: 0}\n",
        "connections.max_connections: must be at least 1, got 0",
    ),
    ("connections: {max_headers: many}\n", "connections.max_headers: expected an integer, got str"),
    (
        "connections: {keepalive: 5s}\n",
        "connections.keepalive: unknown key (known keys: body_timeout, header_timeout, "
        "idle_timeout, max_connections, max_header_bytes, max_headers, send_timeout)",
    ),
    (
        "buffered_body_budget: lots\n",
        "buffered_body_budget: expected a size like 8MiB or a byte count, got 'lots'",
    ),
    ("max_header_size: 32KiB\n", "max_header_size: renamed to connections.max_header_bytes"),
    # listen addresses
    ("listen: localhost\n", "listen: expected host:port, got 'localhost'"),
    ("listen: 'h:99999'\n", "listen: expected host:port, got 'h:99999'"),
    ("listen: 'h:-1'\n", "listen: expected host:port, got 'h:-1'"),
    ("listen: 70000\n", "listen: expected host:port, got '127.0.0.1:70000'"),
    ("admin_listen: 'h:http'\n", "admin_listen: expected host:port, got 'h:http'"),
    ("admin_listen: true\n", "admin_listen: expected a non-empty string, got bool"),
    # routes
    (
        "routes:\n  - {host: a.example, path_prefix: /a, upstream: 'http://h'}\n",
        "routes[0]: needs exactly one of host or path_prefix",
    ),
    (
        "routes:\n  - {upstream: 'http://h'}\n",
        "routes[0]: needs exactly one of host or path_prefix",
    ),
    (
        "routes:\n  - {path_prefix: api, upstream: 'http://h'}\n",
        "routes[0].path_prefix: must start with /",
    ),
    ("routes:\n  - {host: a.example}\n", "routes[0].upstream: is required"),
    (
        "routes:\n  - {host: a.example, upstream: 5}\n",
        "routes[0].upstream: expected a non-empty string, got int",
    ),
    (
        "routes:\n  - {host: a.example, upstream: 'ftp://h'}\n",
        "routes[0].upstream: expected an http(s) URL, got 'ftp://h'",
    ),
    (
        "routes:\n  - {host: a.example, upstream: 'h.example:80'}\n",
        "routes[0].upstream: expected an http(s) URL, got 'h.example:80'",
    ),
    (
        "routes:\n  - {host: a.example, upstream: 'http://'}\n",
        "routes[0].upstream: expected an http(s) URL, got 'http://'",
    ),
    (
        "routes:\n  - {host: a.example, upstream: 'http://h/v1'}\n",
        "routes[0].upstream: must be scheme://host[:port] with no path",
    ),
    (
        "routes:\n  - {host: a.example, upstream: 'https://h?x=1'}\n",
        "routes[0].upstream: must be scheme://host[:port] with no path",
    ),
    (
        f"{ROUTE}}}\n  - {{host: b, upstream: 'http://h', region: 1}}\n",
        "routes[1].region: expected a non-empty string, got int",
    ),
    # limits
    (
        f"{LIMIT}}}\n  - {{name: b, service: s3, rate: 1}}\n  - {{name: a, service: s3, rate: 2}}"
        "\n",
        "limits[2].name: duplicate rule name 'a' (first at [0])",
    ),
    (
        f"{LIMIT}, per: bucket2}}\n",
        "limits[0].per: expected one of none, operation, bucket, prefix, got 'bucket2'",
    ),
    (
        "limits:\n  - {name: a, service: ec2, rate: -1}\n",
        "limits[0].rate: must be greater than 0, got -1",
    ),
    (
        "limits:\n  - {name: a, service: ec2, rate: 0}\n",
        "limits[0].rate: must be greater than 0, got 0",
    ),
    ("limits:\n  - {service: ec2, rate: 1}\n", "limits[0].name: is required"),
    ("limits:\n  - {name: a, rate: 1}\n", "limits[0].service: is required"),
    ("limits:\n  - {name: a, service: ec2}\n", "limits[0].rate: is required"),
    # credentials
    (
        "credentials: {advisory_refresh: 5m, mandatory_refresh: 6m}\n",
        "credentials.mandatory_refresh: must not be longer than advisory_refresh",
    ),
    (
        "credentials: {mandatory_refresh: 16m}\n",
        "credentials.mandatory_refresh: must not be longer than advisory_refresh",
    ),
    # redis
    ("redis: {key_prefix: x}\n", "redis.url: is required"),
    ("redis: 'redis://h'\n", "redis: expected a mapping, got str"),
    (
        "redis: {url: 'http://cache:6379'}\n",
        "redis.url: expected redis://, rediss://, unix:// or redis+cluster://, "
        "got 'http://cache:6379'",
    ),
    (
        "redis: {url: 'cache:6379'}\n",
        "redis.url: expected redis://, rediss://, unix:// or redis+cluster://, got 'cache:6379'",
    ),
    # retry services
    ("retry: {services: [s3]}\n", "retry.services: expected a mapping, got list"),
    ("retry: {services: {s3: 3}}\n", "retry.services.s3: expected a mapping, got int"),
    (
        "retry: {services: {s3: {max_attempts: 0}}}\n",
        "retry.services.s3.max_attempts: must be at least 1, got 0",
    ),
    (
        "retry: {services: {s3: {max_attempts: two}}}\n",
        "retry.services.s3.max_attempts: expected an integer, got str",
    ),
    # log level
    ("log_level: verbose\n", "log_level: expected one of debug, info, warning, error"),
    ("log_level: 10\n", "log_level: expected a non-empty string, got int"),
]


@pytest.mark.parametrize(
    ("text", "reason"),
    BAD_CONFIGS,
    ids=[f"{i:02d}-{reason.split(':')[0]}" for i, (_, reason) in enumerate(BAD_CONFIGS)],
)
def test_each_bad_config_names_file_key_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "proxy.yaml"
    assert error_of(tmp_path, text) == f"{path}: {reason}"


def test_parse_config_alone_renders_with_a_placeholder_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"limits": [{"name": "a", "service": "ec2", "rate": "fast"}]})
    assert str(caught.value) == "<config>: limits[0].rate: expected a number, got str"


def test_missing_file_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: cannot read: No such file or directory"


def test_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("listen: [1, 2\n", "at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
        ("a:\n\tb: 1\n", "at line 2, column 1: found character '\\t' that cannot start any token"),
        ("region: us\n  bad: x\n", "at line 2, column 6: mapping values are not allowed here"),
        ("key: 'unterminated\n", "at line 2, column 1: found unexpected end of stream"),
    ],
)
def test_invalid_yaml_names_line_and_column(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "proxy.yaml"
    assert error_of(tmp_path, text) == f"{path}: not valid YAML {reason}"


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("region: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: cannot read: ")


@pytest.mark.parametrize("upstream", ["http://127.0.0.1:99999", "http://h:port"])
def test_route_upstream_with_a_bad_port_is_a_config_error(upstream: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"routes": [{"host": "a.example", "upstream": upstream, "service": "s3"}]})
    assert caught.value.path == "routes[0].upstream"


@pytest.mark.parametrize(
    "raw",
    [
        {"limits": [{"name": "a", "service": "ec2", "rate": float("nan")}]},
        {"limit_policy": {"max_wait": float("nan")}},
    ],
)
def test_nan_is_not_a_rate_or_a_duration(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw)


def test_route_details_normalised() -> None:
    config = parse_config(
        {
            "routes": [
                {"host": "API.Example", "upstream": "https://h.example:8443/"},
                {"path_prefix": "/", "upstream": "http://h.example"},
            ]
        }
    )
    assert config.routes[0] == Route(upstream="https://h.example:8443", host="api.example")
    assert config.routes[1].upstream == "http://h.example"
    assert config.routes[1].upstream_scheme == "http"
    assert config.routes[0].upstream_host == "h.example"


def test_log_level_case_is_ignored() -> None:
    assert parse_config({"log_level": "WARNING"}).log_level == "warning"


def test_retry_service_names_are_lower_cased_and_empty_entries_skipped() -> None:
    retry = parse_config(
        {"retry": {"services": {"DynamoDB": {"max_attempts": 4}, "sqs": {}, "s3": None}}}
    ).retry
    assert dict(retry.service_max_attempts) == {"dynamodb": 4}
    assert retry.max_attempts is None
    assert retry.base_delay is None


@pytest.mark.parametrize("scheme", ["redis", "rediss", "unix"])
def test_redis_url_schemes(scheme: str) -> None:
    redis = parse_config({"redis": {"url": f"{scheme}://cache/0"}}).redis
    assert redis is not None
    assert redis.url == f"{scheme}://cache/0"
    assert (redis.key_prefix, redis.timeout, redis.fail_open) == ("throttle-proxy", 0.25, True)


# --- defaults match the README ------------------------------------------------------------------


def readme_defaults() -> dict[str, str]:
    """`key` -> default cell of the README's configuration table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0]] = cells[1]
    return rows


def unquote(cell: str) -> str:
    assert cell.startswith("`"), cell
    assert cell.endswith("`"), cell
    return cell[1:-1]


def test_readme_table_lists_every_top_level_key() -> None:
    documented: set[str] = set()
    for keys in readme_defaults():
        documented.update(re.findall(r"`([a-z_]+)`", keys))
    assert documented == set(TOP_KEYS.split(", "))


@pytest.mark.parametrize(
    "key",
    [
        "listen",
        "admin_listen",
        "region",
        "log_level",
        "credentials",
        "routes",
        "upstream",
        "max_buffered_body",
        "max_body",
        "spool_dir",
        "spool_budget",
        "connections",
        "buffered_body_budget",
        "unsigned_payload",
        "shutdown_grace",
    ],
)
def test_readme_default_is_what_an_absent_key_gives(key: str) -> None:
    """Writing the README's default explicitly changes nothing."""
    documented = yaml.safe_load(unquote(readme_defaults()[f"`{key}`"]))
    assert parse_config({key: documented}) == Config(source="<config>")


def test_readme_limit_defaults() -> None:
    cell = readme_defaults()["`include_default_limits`, `limits`, `limit_policy`, `redis`"]
    cells = [t.strip() for t in re.findall(r"`[^`]*`|[^,`]+", cell) if t.strip()]
    assert cells[0] == "off"
    assert yaml.safe_load(unquote(cells[1])) == []
    policy = yaml.safe_load(unquote(cells[2]))
    assert cells[3] == "none"
    config = Config()
    assert config.include_default_limits is False
    assert config.limits == ()
    assert parse_config({"limit_policy": policy}).limit_policy == config.limit_policy
    assert config.limit_policy == LimitPolicy(max_wait=5.0, max_queue=10_000, idle_expiry=60.0)
    assert config.redis is None


def test_readme_allow_hosts_default_is_the_aws_partitions() -> None:
    assert readme_defaults()["`allow_hosts`"] == "AWS partitions' domains"
    assert Config().allow_hosts == ("*.amazonaws.com", "*.amazonaws.com.cn", "*.api.aws")


def test_readme_retry_example_matches_the_defaults() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("## Retries", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    documented = parse_config(yaml.safe_load(block)).retry
    default = RetryConfig()
    for name in (
        "throttle_base_delay",
        "max_backoff",
        "quota",
        "max_total_time",
        "honor_retry_after",
    ):
        assert getattr(documented, name) == getattr(default, name), name
    # max_attempts and base_delay default to the SDK's per-service values (3 / 50 ms or
    # 25 ms for DynamoDB); the example spells out max_attempts and leaves base_delay unset.
    assert (default.max_attempts, default.base_delay) == (None, None)
    assert (documented.max_attempts, documented.base_delay) == (3, None)


def test_defaults_spelled_out() -> None:
    config = Config()
    assert config.listen == ("127.0.0.1", 8080)
    assert config.admin_listen == ("127.0.0.1", 9090)
    assert (config.region, config.log_level) == ("us-east-1", "info")
    assert config.credentials == CredentialsConfig(None, 900.0, 600.0, 30.0)
    assert config.upstream == UpstreamConfig(5.0, 60.0, 256, True, None)
    assert config.max_buffered_body == 8 * 1024 * 1024
    assert config.connections == ConnectionsConfig(10.0, 75.0, 60.0, 60.0, 4096, 64 * 1024, 100)
    assert config.buffered_body_budget == 256 * 1024 * 1024
    assert (config.unsigned_payload, config.shutdown_grace) == (False, 20.0)


def test_limit_cost_defaults_to_requests_and_takes_resources() -> None:
    rule = {"name": "t", "service": "ec2", "rate": 20, "burst": 1000}
    config = parse_config({"limits": [rule, {**rule, "name": "u", "cost": "resources"}]})
    assert [limit.cost for limit in config.limits] == ["requests", "resources"]
