"""A fast fake AWS upstream on loopback that records what reaches it.

Answers every request 200 with a tiny EC2-style XML body (or echoes the body back for PUT
when asked), recording method, path, query, headers and body length per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_length: int
    body_sha256: str
    arrived: float


@dataclass
class FakeAws:
    """The running fake: `url`, what it saw, and switches."""

    runner: web.AppRunner
    port: int
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    delay: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_fake_aws(delay: float = 0.0) -> FakeAws:
    fake: FakeAws | None = None

    async def handle(request: web.Request) -> web.StreamResponse:
        assert fake is not None
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        fake.seen.append(
            Seen(
                request.method,
                request.raw_path.partition("?")[0],
                request.raw_path.partition("?")[2],
                {k.lower(): v for k, v in request.headers.items()},
                length,
                digest.hexdigest(),
                time.monotonic(),
            )
        )
        if fake.delay or request.headers.get("x-test-delay"):
            await asyncio.sleep(float(request.headers.get("x-test-delay", fake.delay)))
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b"<DescribeInstancesResponse><requestId>fake-1</requestId>"
            b"<reservationSet/></DescribeInstancesResponse>"
        )
        return web.Response(
            body=body,
            content_type="text/xml",
            headers={"x-amzn-RequestId": f"fake-{len(fake.seen)}", "x-amz-id-2": "id2"},
        )

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    fake = FakeAws(runner, port, delay=delay)
    return fake


async def count_connections(
    port_holder: list[int],
) -> tuple[asyncio.base_events.Server, list[int]]:
    """A bare TCP listener that only counts connections (to prove none was opened)."""
    accepted: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port_holder.append(server.sockets[0].getsockname()[1])
    return server, accepted
