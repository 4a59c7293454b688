"""Where a request goes: the three ways in, the allow-list, and the signing scope. Pure.

1. Host header naming an AWS host (`Host: ec2.us-east-1.amazonaws.com`),
2. forward-proxy absolute-form targets (`GET http://ec2.us-east-1.amazonaws.com/…`),
3. configured routes, by Host pattern or path prefix, evaluated in order; the first match wins.

Hosts outside routes and `allow_hosts` are refused here, before any connection is opened: an
open signer would hand the pod's session token to anyone's host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlsplit

from proxy.aws.endpoints import Endpoint, endpoint_for_host, is_known_prefix
from proxy.aws.hostgrammar import MAX_DNS_NAME, MAX_MEMO_AUTHORITY, aws_operated
from proxy.config.model import Config, ConfigError
from proxy.config.routes import Route
from proxy.errors import BadRequest, HostNotAllowed, MethodNotAllowed
from proxy.requestvalue import request_value
from proxy.signing.queryauth import client_query_auth
from proxy.signing.sigv4 import SigningInput
from proxy.upstream.http1 import Origin

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_CHARACTERS = re.compile(r"[A-Za-z0-9_.:-]+")  # ':' only inside an IPv6 literal's brackets
_ASCII_DIGITS = re.compile(r"[0-9]+")


@request_value
class Target:
    """Where one request is sent and how it is signed."""

    origin: Origin  # where to connect
    host_header: str  # sent and signed: the AWS name (or a path-prefix route's upstream host)
    path: str  # raw, percent-encoded, as it will be sent
    query: str  # raw query string as received, without '?' (client auth parameters removed)
    endpoint: Endpoint
    presigned: bool = False  # the client signed it in its query: forwarded unsigned by us
    identity: str | None = None  # the route's own credentials (None: the top-level chain)

    @property
    def scheme(self) -> str:
        return self.origin.scheme

    def to_sign(
        self, method: str, headers: Sequence[tuple[str, str]], payload_hash: str
    ) -> SigningInput:
        """What the signer needs to sign one request to this target."""
        return SigningInput(
            method,
            self.host_header,
            self.path,
            self.query,
            headers,
            payload_hash,
            self.endpoint.service,
            self.endpoint.region,
        )


@dataclass(frozen=True, slots=True)
class _HostDecision:
    """Where requests for one host go: its first host route (or len(routes) for none), and
    the origin, Host value and signing scope, or why the host is refused."""

    host_route: int
    origin: Origin | None
    host_value: str
    endpoint: Endpoint | None
    refusal: str | None = None
    path_style_bucket: str | None = None
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class _CompiledRoute:
    """A route with everything that does not depend on the request worked out once."""

    route: Route
    origin: Origin
    upstream_host_value: str  # the Host a path-prefix route sends
    prefix_endpoint: Endpoint | None  # a path-prefix route's fixed signing scope


def host_matches(pattern: str, host: str) -> bool:
    """`*.amazonaws.com` matches on label boundaries: `ec2.us-east-1.amazonaws.com`, never
    `evilamazonaws.com`; a pattern without `*` matches exactly; `*` alone matches anything."""
    if pattern == "*":
        return True
    if "*" not in pattern:
        return host == pattern
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return _glob(pattern, host)


def _glob(pattern: str, host: str) -> bool:
    # `*` inside a label-pattern stands for one or more characters other than '.'.
    p_labels, h_labels = pattern.split("."), host.split(".")
    if len(p_labels) != len(h_labels):
        return False
    for p, h in zip(p_labels, h_labels, strict=True):
        head, star, tail = p.partition("*")
        if not star:
            if p != h:
                return False
        elif not (h.startswith(head) and h.endswith(tail) and len(h) > len(head) + len(tail)):
            return False
    return True


def split_host_port(authority: str) -> tuple[str, int | None]:
    """`host[:port]` or `[v6][:port]` → (lower-case host without trailing dot, port or None)."""
    authority = authority.strip()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise BadRequest(f"malformed host {authority!r}")
        host, rest = authority[1:end], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadRequest(f"malformed host {authority!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = authority.partition(":")
    if port_text:
        if not _ASCII_DIGITS.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise BadRequest(f"malformed port in host {authority!r}")
        port: int | None = int(port_text)
    else:
        port = None
    # One trailing dot is the DNS root; the rest of the name must be what a DNS name or an IP
    # literal may hold. Anything else (`@`, `%`, spaces, non-ASCII: `\u212a` lowercases to
    # `k`) is refused rather than normalised into some other name.
    if not _HOST_CHARACTERS.fullmatch(host):
        raise BadRequest(f"malformed host {authority!r}")
    host = host.lower().removesuffix(".")
    if not host:
        raise BadRequest(f"malformed host {authority!r}")
    return host, port


def single_host(values: Sequence[str]) -> str | None:
    """The request's one Host header (None: none). Two are a 400 (RFC 9112 §3.2): which one a
    check reads and which one a later hop obeys must never differ."""
    if len(values) > 1:
        raise BadRequest("more than one Host header")
    return values[0] if values else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Router:
    """Resolves each request to a Target; built once per config (swapped whole on reload)."""

    def __init__(self, config: Config) -> None:
        self._allow = config.allow_hosts
        self._exact_allow = frozenset(p for p in config.allow_hosts if "*" not in p)
        self._region = config.region
        self._routes = tuple(
            _compile_route(route, index, config.region) for index, route in enumerate(config.routes)
        )
        # Per-host decisions are memoised (hosts repeat; a client cannot grow this past 4096).
        self._decide = lru_cache(maxsize=4096)(self._decide_uncached)

    def _host_allowed(self, host: str) -> Endpoint:
        """The endpoint of a host the allow-list lets through; HostNotAllowed otherwise."""
        exact = host in self._exact_allow
        if not exact and (_is_ip(host) or not any(host_matches(p, host) for p in self._allow)):
            # IP literals are never matched by wildcards: only an exact entry lets one through.
            raise HostNotAllowed(
                f"host {host!r} is not in allow_hosts or routes; refusing to sign for it"
            )
        if not exact and (len(host) > MAX_DNS_NAME or not aws_operated(host)):
            # Customer-owned names live under AWS domains too (API Gateway, load balancers, EC2
            # public names, S3 websites): their owner would receive the signed headers.
            raise HostNotAllowed(
                f"host {host!r} is not a name AWS itself answers (its owner would receive the "
                "signed headers and session token); list it exactly in allow_hosts, or route "
                "it, to sign for it"
            )
        endpoint = endpoint_for_host(host, self._region)
        if endpoint is None:
            raise HostNotAllowed(f"host {host!r} is allowed but names no AWS service and region")
        return endpoint

    def _host_route_endpoint(self, index: int, host: str) -> Endpoint:
        route = self._routes[index].route
        endpoint = _route_endpoint(route, host, self._region)
        if route.service is None and not is_known_prefix(endpoint.endpoint_prefix):
            # Keeps the service metric label to names AWS's models know.
            raise HostNotAllowed(
                f"host {host!r} names no AWS service this proxy knows; set `service` on "
                f"the route for {route.host!r}"
            )
        return endpoint

    def resolve(self, method: str, raw_target: str, host_header: str | None) -> Target:
        """Route one request; raises MethodNotAllowed, BadRequest or HostNotAllowed."""
        if method == "CONNECT":
            raise MethodNotAllowed(
                "CONNECT is refused: a TLS tunnel cannot be signed; send plain HTTP to the proxy"
            )
        if raw_target.startswith(("http://", "https://")):
            scheme_end = raw_target.index("://") + 3
            slash = raw_target.find("/", scheme_end)
            authority = raw_target[scheme_end:] if slash < 0 else raw_target[scheme_end:slash]
            raw_path = "/" if slash < 0 else raw_target[slash:]
        elif raw_target.startswith("/"):
            if not host_header:
                raise BadRequest("no Host header: say which AWS host to call")
            authority, raw_path = host_header, raw_target
        else:
            raise BadRequest(f"unsupported request target {raw_target[:100]!r}")
        # A fragment is the client's own business (never sent, never signed, by anyone).
        path, _, raw_query = raw_path.split("#", 1)[0].partition("?")
        path = path or "/"
        query_auth = client_query_auth(raw_query)
        query, presigned = query_auth.query, query_auth.presigned
        decision = (
            self._decide(authority)
            if len(authority) <= MAX_MEMO_AUTHORITY
            else self._decide_uncached(authority)
        )
        # Path-prefix routes listed before the host's first matching host route come first.
        for compiled in self._routes[: decision.host_route]:
            prefix = compiled.route.path_prefix
            if prefix is not None and path.startswith(prefix):
                stripped = path[len(prefix) :]
                stripped = stripped if stripped.startswith("/") else "/" + stripped
                assert compiled.prefix_endpoint is not None
                return Target(
                    compiled.origin,
                    compiled.upstream_host_value,
                    stripped,
                    query,
                    compiled.prefix_endpoint,
                    presigned,
                    compiled.route.identity,
                )
        if decision.refusal is not None:
            raise HostNotAllowed(decision.refusal)
        assert decision.origin is not None
        assert decision.endpoint is not None
        if decision.path_style_bucket:
            return Target(
                decision.origin,
                decision.host_value,
                f"/{decision.path_style_bucket}{path}",
                query,
                decision.endpoint,
                presigned,
            )
        return Target(
            decision.origin,
            decision.host_value,
            path,
            query,
            decision.endpoint,
            presigned,
            decision.identity,
        )

    def _decide_uncached(self, authority: str) -> _HostDecision:
        """Everything about a request that depends on its host alone (memoised per host)."""
        if "@" in authority:
            raise BadRequest("credentials in the request target are not accepted")
        host, port = split_host_port(authority)
        host_value = _host_value(host, port, "https")
        for index, compiled in enumerate(self._routes):
            pattern = compiled.route.host
            if pattern is not None and host_matches(pattern, host):
                try:
                    endpoint = self._host_route_endpoint(index, host)
                except HostNotAllowed as refused:
                    return _HostDecision(index, None, host_value, None, refused.message)
                return _HostDecision(
                    index, compiled.origin, host_value, endpoint, identity=compiled.route.identity
                )
        no_route = len(self._routes)
        try:
            endpoint = self._host_allowed(host)
        except HostNotAllowed as refused:
            return _HostDecision(no_route, None, host_value, None, refused.message)
        # Forward-proxy targets come as http:// (apps cannot sign TLS through us); AWS is HTTPS.
        if endpoint.bucket is not None and "." in endpoint.bucket:
            # S3's wildcard certificate covers one label: `my.bucket.s3.…` goes path style.
            s3_host = host[len(endpoint.bucket) + 1 :]
            return _HostDecision(
                no_route,
                Origin("https", s3_host, 443),
                s3_host,
                replace(endpoint, bucket=None),
                path_style_bucket=endpoint.bucket,
            )
        if port in (None, 80):
            # `http://ec2…:80/` from an HTTP_PROXY client means the service, which is HTTPS.
            port, host_value = 443, _host_value(host, None, "https")
        return _HostDecision(no_route, Origin("https", host, port), host_value, endpoint)


def _compile_route(route: Route, index: int, region: str) -> _CompiledRoute:
    upstream = urlsplit(route.upstream)
    scheme = upstream.scheme
    up_host = (upstream.hostname or "").lower()
    origin = Origin(scheme, up_host, upstream.port or _DEFAULT_PORTS[scheme])
    prefix_endpoint = None
    if route.path_prefix is not None:
        inferred = endpoint_for_host(up_host, region)
        if inferred is None and route.service is None:
            raise ConfigError(
                f"routes[{index}].service",
                f"cannot be inferred from upstream host {up_host!r}: set it",
            )
        prefix_endpoint = _route_endpoint(route, up_host, region)
    return _CompiledRoute(
        route, origin, _host_value(up_host, upstream.port, scheme), prefix_endpoint
    )


def _host_value(host: str, port: int | None, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return shown
    return f"{shown}:{port}"


def _route_endpoint(route: Route, host: str, default_region: str) -> Endpoint:
    """Explicit route values win; else what the AWS host says; else the upstream's host."""
    own = endpoint_for_host(host, default_region) if len(host) <= MAX_DNS_NAME else None
    inferred = own or endpoint_for_host(route.upstream_host.lower(), default_region)
    if inferred is None and route.service is None:
        raise HostNotAllowed(
            f"route for {route.host or route.path_prefix!r} names no service and none can be "
            f"inferred from {host!r} or {route.upstream_host!r}: set `service`"
        )
    service = route.service or (inferred.service if inferred else "")
    region = route.region or (inferred.region if inferred else default_region)
    prefix = inferred.endpoint_prefix if inferred else service
    bucket = inferred.bucket if inferred else None
    return Endpoint(service=service, endpoint_prefix=prefix, region=region, bucket=bucket)
