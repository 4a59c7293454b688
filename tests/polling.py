"""Waiting, boundedly, for something another process does (a log line, an exit, a request)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float, step: float = 0.02) -> bool:
    """Poll `condition` until it holds or `within` seconds pass; returns whether it held."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
