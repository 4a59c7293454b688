"""What `check-config` prints of a config: the effective settings, no secrets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from proxy.config.model import Config
from proxy.config.routes import Route


def summary(config: Config) -> dict[str, Any]:
    """What check-config prints: the effective settings, no secrets (there are none here)."""
    return {
        "listen": f"{config.listen[0]}:{config.listen[1]}",
        "admin_listen": f"{config.admin_listen[0]}:{config.admin_listen[1]}",
        "region": config.region,
        "allow_hosts": list(config.allow_hosts),
        "routes": [_route_summary(r) for r in config.routes],
        "limits": len(config.limits),
        "redis": _masked_url(config.redis.url) if config.redis else None,
        "retry": {
            "max_attempts": config.retry.max_attempts,
            "quota": config.retry.quota,
        },
    }


def _route_summary(route: Route) -> dict[str, Any]:
    shown = {k: v for k, v in vars(route).items() if v is not None and k != "credentials"}
    if route.credentials is not None:
        shown["credentials"] = {k: v for k, v in vars(route.credentials).items() if v is not None}
    return shown


def _masked_url(url: str) -> str:
    """A Redis URL with its password (if any) hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return parts._replace(netloc=netloc).geturl()
