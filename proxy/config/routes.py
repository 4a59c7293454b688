"""The `routes:` section: where a Host pattern or path prefix goes, and as which identity.

Each route may name its own credentials (an assumed role or a profile); routes naming one
identity must describe it the same way, so a name stands for one identity only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.config import readers as cp
from proxy.config.readers import ConfigError


@dataclass(frozen=True)
class RouteCredentials:
    """A route's own identity: a role assumed from a source, or a named profile's chain."""

    name: str
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str = "throttle-proxy"
    duration_seconds: int | None = None
    source_profile: str | None = None  # the role's source; None: the top-level chain
    profile: str | None = None  # instead of role_arn: this profile's own credentials


@dataclass(frozen=True)
class Route:
    upstream: str
    host: str | None = None
    path_prefix: str | None = None
    service: str | None = None
    region: str | None = None
    credentials: RouteCredentials | None = None

    @property
    def identity(self) -> str | None:
        """The name of the route's own identity (None: the top-level chain)."""
        return self.credentials.name if self.credentials is not None else None

    @property
    def upstream_scheme(self) -> str:
        return urlsplit(self.upstream).scheme

    @property
    def upstream_host(self) -> str:
        return urlsplit(self.upstream).hostname or ""


def _route(raw: object, path: str) -> Route:
    section = cp.mapping(raw, path)
    cp.reject_unknown(
        section, {"host", "path_prefix", "upstream", "service", "region", "credentials"}, path
    )
    host = cp.optional_string(section.get("host"), f"{path}.host")
    prefix = cp.optional_string(section.get("path_prefix"), f"{path}.path_prefix")
    if (host is None) == (prefix is None):
        raise ConfigError(path, "needs exactly one of host or path_prefix")
    if prefix is not None and not prefix.startswith("/"):
        raise ConfigError(f"{path}.path_prefix", "must start with /")
    if "upstream" not in section:
        raise ConfigError(f"{path}.upstream", "is required")
    upstream = cp.string(section["upstream"], f"{path}.upstream")
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{path}.upstream", f"expected an http(s) URL, got {cp.shown(upstream)}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(f"{path}.upstream", f"invalid port in {cp.shown(upstream)}") from None
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{path}.upstream", "must be scheme://host[:port] with no path")
    return Route(
        upstream=upstream.rstrip("/"),
        # Compared with the request's host as the router normalises it (lower case, no
        # trailing dot), as allow_hosts entries are: else the route silently never matches.
        host=host.lower().removesuffix(".") if host else None,
        path_prefix=prefix,
        service=cp.optional_string(section.get("service"), f"{path}.service"),
        region=cp.optional_string(section.get("region"), f"{path}.region"),
        credentials=route_credentials(section.get("credentials"), f"{path}.credentials"),
    )


def parse_routes(raw: object, path: str) -> tuple[Route, ...]:
    """The routes; routes naming one identity must describe it the same way."""
    routes = cp.items(raw, path, _route)
    seen: dict[str, tuple[int, RouteCredentials]] = {}
    for index, route in enumerate(routes):
        creds = route.credentials
        if creds is None:
            continue
        first = seen.setdefault(creds.name, (index, creds))
        if first[1] != creds:
            raise ConfigError(
                f"{path}[{index}].credentials.name",
                f"identity {creds.name!r} is described differently at {path}[{first[0]}]",
            )
    return routes


_ROUTE_CREDENTIAL_KEYS = {
    "name",
    "role_arn",
    "external_id",
    "role_session_name",
    "duration_seconds",
    "source_profile",
    "profile",
}
_IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")


def route_credentials(raw: object, path: str) -> RouteCredentials | None:
    """A route's `credentials`: `role_arn` (+ `source_profile`, external id, session name,
    duration) or `profile`; `name` is what /readyz, metrics and whoami call it."""
    if raw is None:
        return None
    section = cp.mapping(raw, path)
    cp.reject_unknown(section, _ROUTE_CREDENTIAL_KEYS, path)
    role_arn = cp.optional_string(section.get("role_arn"), f"{path}.role_arn")
    profile = cp.optional_string(section.get("profile"), f"{path}.profile")
    if (role_arn is None) == (profile is None):
        raise ConfigError(path, "needs exactly one of role_arn or profile")
    if role_arn is not None and not _ROLE_ARN.match(role_arn):
        raise ConfigError(
            f"{path}.role_arn",
            f"expected arn:aws:iam::<12-digit account>:role/<name>, got {role_arn!r}",
        )
    if profile is not None:
        for only_with_role in (
            "source_profile",
            "external_id",
            "role_session_name",
            "duration_seconds",
        ):
            if only_with_role in section:
                raise ConfigError(f"{path}.{only_with_role}", "goes with role_arn, not profile")
    default_name = role_arn.rsplit("/", 1)[1] if role_arn is not None else profile
    name = cp.string(section.get("name", default_name), f"{path}.name")
    if not _IDENTITY_NAME.match(name):
        raise ConfigError(f"{path}.name", f"expected letters, digits, '_', '.', '-', got {name!r}")
    if name == "default":
        raise ConfigError(f"{path}.name", "'default' is the top-level credentials' name")
    duration = section.get("duration_seconds")
    return RouteCredentials(
        name=name,
        role_arn=role_arn,
        external_id=cp.optional_string(section.get("external_id"), f"{path}.external_id"),
        role_session_name=cp.string(
            section.get("role_session_name", "throttle-proxy"), f"{path}.role_session_name"
        ),
        duration_seconds=None
        if duration is None
        else cp.integer(duration, f"{path}.duration_seconds", 900),
        source_profile=cp.optional_string(section.get("source_profile"), f"{path}.source_profile"),
        profile=profile,
    )
