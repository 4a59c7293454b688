"""The log stream of a running proxy: lines gathered during one event-loop turn, written together.

Every request writes one log line, and writing it straight through costs a `write` system call
per request: at the proxy's request rates that call was most of the request line's cost in the
throughput profile. Here a write only appends to a list; the first write of a turn schedules one
flush at the end of the turn (`call_soon`), and a turn that gathers more than `flush_at`
characters writes them at once. So the lines of all requests finished in one turn go out in one
call, in the order they were written, within the same turn: nothing waits for a timer, and a
quiet proxy's lines go out as promptly as before. Outside a running loop (start-up, shutdown,
the CLI's own commands) each write goes out at once. What can be lost is the current turn's
lines if the process is killed outright (SIGKILL); an orderly exit flushes them (`close`).
"""

from __future__ import annotations

import asyncio
from typing import TextIO


class TurnFlushedStream:
    """A text stream (the subset logging and structlog use) that writes once per loop turn."""

    def __init__(self, target: TextIO, flush_at: int = 64 * 1024) -> None:
        self._target = target
        self._flush_at = flush_at
        self._pending: list[str] = []
        self._size = 0
        self._scheduled = False

    @property
    def closed(self) -> bool:
        return self._target.closed

    def write(self, text: str) -> int:
        self._pending.append(text)
        self._size += len(text)
        if self._size >= self._flush_at:
            self.flush_now()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush_now()  # no loop to wait for: now
            else:
                self._scheduled = True
                loop.call_soon(self.flush_now)
        return len(text)

    def flush(self) -> None:
        """What writers call after each line: the turn's flush is already scheduled."""

    def flush_now(self) -> None:
        """Write what this turn gathered, in order, in one call."""
        self._scheduled = False
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        if self._target.closed:
            return
        self._target.write(text)
        self._target.flush()

    def close(self) -> None:
        """Flush what is left (an orderly exit); the target stays open, it is not ours."""
        self.flush_now()

    def isatty(self) -> bool:
        return self._target.isatty()
