"""Binding the proxy listener, and the event loop it runs on (uvloop where installed)."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable

from proxy.front.guard import Front
from proxy.observability.logs import get_logger

log = get_logger("proxy.front")
# THROTTLE_PROXY_LOOP=asyncio runs on the standard loop even where uvloop is installed
# (benchmarks compare the two; a deployment can rule uvloop out).
LOOP_ENV = "THROTTLE_PROXY_LOOP"
# File descriptors kept beyond max_connections: upstream connections, Redis, logs, the admin
# listener.
_FD_RESERVE = 256
_BACKLOG = 1024


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it imports and is not ruled out; None: asyncio's default."""
    if os.environ.get(LOOP_ENV, "auto").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def raise_fd_limit(max_connections: int) -> None:
    """Lift the soft open-files limit to the hard one (as nginx's worker_rlimit_nofile does),
    and say so when even that cannot hold max_connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections * 2 + _FD_RESERVE  # each client may hold an upstream connection
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < wanted:
        log.warning(
            "fd-limit-low",
            open_files_limit=soft,
            max_connections=max_connections,
            detail="accepts past the limit are refused; raise `ulimit -n`",
        )


async def open_listener(front: Front, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        front.protocol, host, port, reuse_address=True, backlog=_BACKLOG
    )
