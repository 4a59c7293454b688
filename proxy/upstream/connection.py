"""One upstream HTTP/1.1 connection as an asyncio Protocol: a receive buffer, flow control both
ways, and one timer for whatever the request on it is waiting for.

Why a Protocol of its own rather than StreamReader/StreamWriter: the streams wrap every read in
a coroutine, a future and a lock-step of Python calls, and each `asyncio.timeout` block arms and
cancels a timer; on the hot path of every AWS call that was about a sixth of the proxy's CPU.
Here bytes land in one bytearray that the parser reads in place, and the request waits at most
once per wake-up.

The timer: a request sets `until` (event-loop time by which its current wait must end) as often
as it likes; that is a float store. The one loop timer is armed lazily when a wait begins and,
when it fires early (`until` moved on since), re-arms itself for the new `until`. On a busy
keep-alive connection that is one timer per read_timeout, not one per request. A wait still
pending at `until` fails with TimeoutError.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import NamedTuple, Protocol, cast

__all__ = ["HIGH_WATER", "OpenConnection", "Origin", "UpstreamConnection", "open_tcp"]

# Receive buffer bounds for streamed bodies: past HIGH_WATER unread bytes the socket is not read
# (the kernel's window then slows the upstream down) until the consumer is below LOW_WATER.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class Origin(NamedTuple):
    """Where a connection goes. A tuple, not a frozen dataclass: one is built per request
    (routing) and hashed twice (the idle pool's key), and a tuple does both in C."""

    scheme: str
    host: str
    port: int


class OpenConnection(Protocol):
    """Opens one upstream connection (DNS lookup included) for the protocol the factory makes;
    the seam tests count calls on and point at loopback."""

    async def __call__(
        self,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        protocol_factory: Callable[[], UpstreamConnection],
    ) -> UpstreamConnection: ...


async def open_tcp(
    origin: Origin,
    ssl_context: ssl.SSLContext | None,
    protocol_factory: Callable[[], UpstreamConnection],
) -> UpstreamConnection:
    """The real connection: resolve `origin.host`, connect, TLS when `ssl_context` is given."""
    _transport, conn = await asyncio.get_running_loop().create_connection(
        protocol_factory,
        origin.host,
        origin.port,
        ssl=ssl_context,
        server_hostname=origin.host if ssl_context is not None else None,
    )
    return conn


class UpstreamConnection(asyncio.Protocol):
    """The bytes received (`buffer`, read and cut in place by the request using it), whether
    more can come (`eof`), and waits bounded by `until`."""

    __slots__ = (
        "_read_paused",
        "_timer",
        "_timer_at",
        "_waiter",
        "buffer",
        "eof",
        "idle_since",
        "loop",
        "lost",
        "origin",
        "transport",
        "until",
        "write",
        "write_paused",
    )

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        # The transport's own write once connected (no Python frame in between per request).
        self.write: Callable[[bytes], None] = _not_connected
        self.buffer = bytearray()
        self.eof = False  # nothing more will arrive
        self.lost: Exception | None = None  # why the connection broke, when it did
        self.until = 0.0
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._read_paused = False
        self.write_paused = False  # the transport holds more than its high-water mark

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.write = self.transport.write

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too: a half-closed upstream connection is never reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost = exc if exc is not None else ConnectionResetError("connection closed")
        self.write_paused = False
        self._wake()
        self.cancel_timer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # -- for the request using the connection ------------------------------------------------

    def mark_idle(self) -> None:
        self.idle_since = self.loop.time()

    def usable(self, now: float, keepalive: float) -> bool:
        """Still open, nothing unread, and not idle long enough for the server to drop it.
        Bytes on an idle connection (a late 408, data past the end of a body) would be parsed
        as the next request's answer: such a connection is not reused."""
        return (
            not self.eof
            and not self.buffer
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < keepalive
        )

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark (until `until`)."""
        while self.write_paused:
            await self.wait()
        if self.lost is not None:
            raise ConnectionResetError("upstream connection lost while sending")

    async def wait(self) -> None:
        """Wait for the next event: bytes, end of stream, writable again; TimeoutError at
        `until`. Reading resumes first when the buffer is below HIGH_WATER: a reader waits
        only for bytes it lacks (never past HIGH_WATER: heads and framing lines are capped at
        MAX_HEAD, preloads at 64 KiB), while a send stuck in `drain` must not let an upstream
        that stopped reading our request flood the buffer with its answer."""
        if self._read_paused and len(self.buffer) < HIGH_WATER:
            self._resume_reading()
        if self._timer is None or self.until < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = self.until
            self._timer = self.loop.call_at(self.until, self._on_timer)
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def consumed(self) -> None:
        """The reader took bytes from `buffer`: read again once below the low-water mark."""
        if self._read_paused and len(self.buffer) < LOW_WATER:
            self._resume_reading()

    def _resume_reading(self) -> None:
        self._read_paused = False
        if self.transport is not None and not self.eof:
            self.transport.resume_reading()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.cancel_timer()
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            # Bytes of a request we gave up on: a graceful close would keep the transport and
            # those bytes (up to a whole body) until an upstream that stopped reading reads.
            transport.abort()
        else:
            transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        if self.loop.time() < self.until:
            if self._waiter is not None:  # `until` moved on: wait for the new one
                self._timer_at = self.until
                self._timer = self.loop.call_at(self.until, self._on_timer)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())


def _not_connected(data: bytes) -> None:
    raise ConnectionResetError("upstream connection not made")
