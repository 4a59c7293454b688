"""The least an aiohttp forwarder can do: the ceiling for any proxy built on aiohttp here.

No routing, signing, limits, retries, metrics or logs: take the request, send it to the
upstream over the pooled ClientSession with the same Host, copy status, headers and body back.
The throughput benchmark runs it beside the proxy, so the proxy's own cost can be told apart
from the cost of aiohttp and the event loop.

Run: .venv/bin/python bench/bare_forwarder.py --port P --upstream-port U [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib

import aiohttp
from aiohttp import web

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


async def serve(port: int, upstream_port: int) -> None:
    """Forward every request on `port` to 127.0.0.1:`upstream_port` until cancelled."""
    session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    upstream = f"http://127.0.0.1:{upstream_port}"

    async def forward(request: web.BaseRequest) -> web.StreamResponse:
        headers = {"Host": request.headers.get("Host", "")}
        async with session.request(
            request.method, upstream + request.raw_path, headers=headers
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers=kept)

    runner = web.ServerRunner(web.Server(forward, auto_decompress=False))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        # Imported by name: uvloop is optional and not a declared dependency.
        importlib.import_module("uvloop").install()
    asyncio.run(serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
