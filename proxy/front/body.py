"""One request's body as the parser hands it over, read by the pipeline at its own pace.

The connection feeds parsed body bytes in; above HIGH_WATER buffered bytes it stops reading
the socket (TCP pushes back on the client), below LOW_WATER it reads again, so a streamed
upload holds at most about HIGH_WATER bytes here whatever its size. A reader that waits for
bytes is watched: `waiting_since` is what the connection guard compares with body_timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from proxy.errors import ClientBodyIncomplete, ProxyError

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class ReadFlow(Protocol):
    """What a body needs from its connection: stop and restart reading the socket."""

    def pause_body(self) -> None: ...

    def resume_body(self) -> None: ...

    def now(self) -> float: ...


class RequestBody:
    """Body bytes in arrival order; `read()` returns b"" at the end, raises a ProxyError when
    the client broke it off (short body, bad chunk framing, timeout)."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_done",
        "_error",
        "_flow",
        "_paused",
        "_waiter",
        "received",
        "waiting_since",
    )

    def __init__(self, flow: ReadFlow) -> None:
        self._flow = flow
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: ProxyError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.received = 0
        # Loop time since when a reader has been waiting with nothing buffered (None: not).
        self.waiting_since: float | None = None

    @property
    def complete(self) -> bool:
        """The whole body arrived (it may not have been read yet)."""
        return self._done and self._error is None

    @property
    def arriving(self) -> bool:
        """More of the body may still come: it has neither ended nor failed."""
        return not self._done

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self.received += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._flow.pause_body()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: ProxyError) -> None:
        """The body cannot complete; a reader gets `error` (once the buffered bytes are read)."""
        if self._done:
            return
        self._done = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self.waiting_since = None
            if not waiter.done():
                waiter.set_result(None)

    async def read(self) -> bytes:
        """The next bytes that arrived (any size), b"" at the end of the body."""
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            self.waiting_since = self._flow.now()
            await self._waiter
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            self._flow.resume_body()
        return data

    async def readexactly(self, size: int) -> bytes:
        """`size` bytes; ClientBodyIncomplete when the body ends first."""
        if self._done and self._error is None and self._buffered == size and len(self._chunks) == 1:
            return await self.read()  # the usual small body: arrived whole, one piece
        parts: list[bytes] = []
        got = 0
        while got < size:
            data = await self.read()
            if not data:
                raise ClientBodyIncomplete(
                    f"the client sent {got} body bytes of the {size} its Content-Length declared"
                )
            if got + len(data) > size:
                # The parser never hands over more than the declared length: keep the rest.
                cut = size - got
                self._chunks.appendleft(data[cut:])
                self._buffered += len(data) - cut
                data = data[:cut]
            parts.append(data)
            got += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_any(self) -> AsyncIterator[bytes]:
        while data := await self.read():
            yield data

    async def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        """The body in pieces of at most `size` bytes."""
        while data := await self.read():
            for start in range(0, len(data), size):
                yield data[start : start + size]
