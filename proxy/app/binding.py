"""A listener that cannot bind: one line naming the address and the config key, exit 2.

Whatever opens a listening socket (the proxy listener, the admin listener) turns the OSError
from bind/getaddrinfo into ListenError here, so the CLI can print `error.render()` and exit 2
instead of a traceback (port in use, an address this host does not have, a name that does not
resolve, a privileged port).
"""

from __future__ import annotations

import os
import socket


class ListenError(Exception):
    """A listener could not bind `address` (from config key `key`)."""

    def __init__(self, key: str, address: tuple[str, int], reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.address = address
        self.reason = reason

    def render(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"throttle-proxy: cannot listen on {shown}:{port} ({self.key}): {self.reason}"


def listen_error(key: str, address: tuple[str, int], exc: OSError) -> ListenError:
    """The ListenError for `exc`, raised while binding `address`."""
    if isinstance(exc, socket.gaierror):
        reason = (exc.strerror or str(exc)).lower()
    elif exc.errno:
        # asyncio wraps the errno in a long "error while attempting to bind…" message.
        reason = os.strerror(exc.errno).lower()
    else:
        reason = str(exc) or type(exc).__name__
    return ListenError(key, address, reason)
