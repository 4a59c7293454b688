"""A fast fake AWS upstream for benchmarks: answers 200 at once, records arrivals per operation.

The operation is read cheaply from the wire (`Action=` in the query, `X-Amz-Target`, else
method + first path segment), which is all the benchmarks need.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Response><requestId>fake</requestId><reservationSet/></Response>"
)


def operation_of(request: web.BaseRequest) -> str:
    action = request.query.get("Action")
    if action:
        return action
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.rpartition(".")[2]
    return f"{request.method} {request.path.split('/', 2)[1] if '/' in request.path else ''}"


@dataclass
class FakeUpstream:
    """The running fake: its URL, `arrivals[operation]` and `host_arrivals[(host, operation)]`
    (monotonic seconds)."""

    runner: web.BaseRunner
    port: int
    arrivals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    host_arrivals: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_fake_upstream() -> FakeUpstream:
    """Listen on a free loopback port."""
    arrivals: dict[str, list[float]] = defaultdict(list)
    host_arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        now, operation = time.monotonic(), operation_of(request)
        arrivals[operation].append(now)
        host_arrivals[(request.headers.get("Host", ""), operation)].append(now)
        await request.read()
        return web.Response(body=_BODY, content_type="text/xml")

    runner = web.ServerRunner(web.Server(handle), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # the asyncio server: the only way to learn a port-0 bind
    assert isinstance(server, asyncio.base_events.Server)
    port = int(server.sockets[0].getsockname()[1])
    return FakeUpstream(runner, port, arrivals, host_arrivals)
