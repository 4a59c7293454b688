"""A loopback HTTP/1.1 server that answers with raw bytes, for framing and failure tests.

Each request's head and body are recorded; `answer(head)` returns the bytes to send back
(None closes the connection without answering). `delay` holds every answer back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.upstream.http1 import Origin

Answer = Callable[[bytes], bytes | None]


def fixed(body: bytes, status: str = "200 OK", extra: str = "") -> Answer:
    """Always the same Content-Length answer."""
    return lambda _head: (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body
    )


@dataclass
class RawHttpServer:
    answer: Answer
    delay: float = 0.0
    close_after_each: bool = False
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    server: asyncio.base_events.Server | None = None

    async def start(self) -> RawHttpServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def origin(self) -> Origin:
        return Origin("http", "127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length) if length else b"")
                self.arrivals.append(time.monotonic())
                if self.delay:
                    await asyncio.sleep(self.delay)
                raw = self.answer(head)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if self.close_after_each or b"Connection: close" in raw:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class SettableReplyServer(RawHttpServer):
    """Answers every request with `reply`, which a test may change at any time (a plain
    200 "ok" until it does)."""

    def __init__(self) -> None:
        super().__init__(lambda _head: self.reply)
        self.reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
