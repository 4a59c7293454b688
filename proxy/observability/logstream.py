"""The log stream of a running proxy: request lines gathered during one event-loop turn, written
together.

Every request writes one log line, and writing it straight through costs a `write` system call
per request. Here a request line (`write_soon`) only appends to a list; the first of a turn
schedules one flush at the end of the turn (`call_soon`), and a turn that gathers more than
`flush_at` characters writes them at once. So the lines of all requests finished in one turn go
out in one call, in order, within the same turn: nothing waits for a timer. Every other event
(start-up, reload, warnings, errors: what structlog and logging write, each followed by
`flush()`) goes out at once, after the request lines gathered before it, so the order is kept
and nothing an operator waits for is held back. Outside a running loop each line goes out at
once. What can be lost is the current turn's request lines if the process is killed outright
(SIGKILL); an orderly exit flushes them (`close`).
"""

from __future__ import annotations

import asyncio
from typing import TextIO


class TurnFlushedStream:
    """A text stream (the subset logging and structlog use) whose request lines go out once
    per loop turn."""

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
        """Gather `text`; it goes out at the next `flush()` (or this turn's end)."""
        return self.write_soon(text)

    def write_soon(self, text: str) -> int:
        """Gather `text` for the end of this turn (a request line)."""
        self._pending.append(text)
        self._size += len(text)
        if self._size >= self._flush_at:
            self.flush()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no loop to wait for: now
            else:
                self._scheduled = True
                loop.call_soon(self._end_of_turn)
        return len(text)

    def _end_of_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write what was gathered, in order, in one call (what structlog and logging call
        after each event, so those go out at once)."""
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
        self.flush()

    def isatty(self) -> bool:
        return self._target.isatty()
