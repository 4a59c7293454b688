"""One sample of a running proxy's /metrics, read by the line it starts with."""

from __future__ import annotations

import aiohttp

from tests.servers import ProxyProcess


async def metric(session: aiohttp.ClientSession, proxy: ProxyProcess, line_start: str) -> float:
    """The value of the first /metrics line starting with `line_start` (0.0 when none)."""
    async with session.get(f"{proxy.admin_url}/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
