"""Non-S3 bodies too large to hold in memory, spooled to a temporary file while hashed.

SigV4 needs the body's SHA-256 before the first byte goes upstream, and a retry needs the body
again: a DynamoDB BatchWriteItem near 16 MB or a 6 MB Lambda payload is both signed and
replayable from disk this way while memory stays at `max_buffered_body`. One `SpoolArea` per
process bounds the disk (`spool_budget`), and every file is closed when its request ends,
whatever ended it (the caller closes the body in a `finally`); the files have no name, so not
even a killed process leaves one behind. File I/O runs in a thread so
the event loop keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from proxy.bodies.client import over_max_body
from proxy.config.readers import ConfigError
from proxy.errors import ProxyError

# Writes and reads go to the thread in pieces of this size: few thread hops per body, little
# memory per piece.
SPOOL_PIECE = 1024 * 1024


class SpoolFull(ProxyError):
    """Every byte of `spool_budget` is taken by other requests' bodies: try again shortly."""

    status = 503
    reason = "spool-full"


def check_spool_dir(directory: str | None) -> None:
    """Start-up check: a configured spool_dir exists and may be written (a read-only root
    filesystem is why one is configured); better refused at start than on the first big body."""
    if directory is None:
        return
    if not os.path.isdir(directory):
        raise ConfigError("spool_dir", f"{directory!r} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError("spool_dir", f"{directory!r} is not writable")


class SpoolArea:
    """The directory and the byte budget that all spooled bodies of a process share."""

    def __init__(self, directory: str | None, budget: int) -> None:
        self.settings = (directory, budget)
        self.directory = directory or tempfile.gettempdir()
        self.budget = budget
        self.used = 0

    def reserve(self, size: int) -> None:
        if self.used + size > self.budget:
            raise SpoolFull(
                f"spooling this body needs {size} bytes of spool_budget ({self.budget} bytes), "
                f"{self.budget - self.used} are free; try again shortly"
            )
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


class SpooledBody:
    """A body on disk with its length and SHA-256; `pieces()` reads it again for each attempt."""

    def __init__(self, area: SpoolArea, file: IO[bytes], reserved: int) -> None:
        self._area = area
        self._file = file
        self._reserved = reserved
        self.length = 0
        self.sha256 = ""
        self._closed = False

    async def pieces(self) -> AsyncIterator[bytes]:
        """The whole body from its start (one attempt's worth)."""
        offset = 0
        while offset < self.length:
            piece = await asyncio.to_thread(os.pread, self._file.fileno(), SPOOL_PIECE, offset)
            if not piece:
                raise OSError("spool file is shorter than the body written to it")
            offset += len(piece)
            yield piece

    def close(self) -> None:
        """Remove the file and give its bytes back to the budget; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._file.close()  # an unnamed file: closing it frees its disk
        self._area.release(self._reserved)


async def spool_body(
    area: SpoolArea, prefix: bytes, rest: AsyncIterator[bytes], size_hint: int | None, limit: int
) -> SpooledBody:
    """Write `prefix` then `rest` to a new spool file, hashing as it goes.

    `size_hint` (the Content-Length) reserves the budget up front; without one the budget is
    reserved as the body grows. More than `limit` bytes (`max_body`) is a PayloadTooLarge,
    raised as soon as it is known."""
    reserved = size_hint if size_hint is not None else len(prefix)
    area.reserve(reserved)
    try:
        # Unnamed (O_TMPFILE on Linux, else unlinked at once): no path in spool_dir that a
        # killed or crashed process could leave behind; the disk is freed when the fd closes.
        file = tempfile.TemporaryFile(  # noqa: SIM115 (closed by SpooledBody.close)
            prefix="throttle-proxy-body-", dir=area.directory
        )
    except BaseException:
        area.release(reserved)
        raise
    body = SpooledBody(area, file, reserved)
    try:
        digest = hashlib.sha256()
        pending = [prefix] if prefix else []
        pending_size = len(prefix)
        written = 0

        async def flush() -> None:
            nonlocal pending, pending_size, written
            block = b"".join(pending)
            pending, pending_size = [], 0
            await asyncio.to_thread(_write_and_hash, file, digest, block)
            written += len(block)

        async for piece in rest:
            pending.append(piece)
            pending_size += len(piece)
            if written + pending_size > limit:
                raise over_max_body(limit)
            if size_hint is None:
                area.reserve(len(piece))
                body._reserved += len(piece)
            if pending_size >= SPOOL_PIECE:
                await flush()
        if pending:
            await flush()
        body.length = written
        body.sha256 = digest.hexdigest()
        return body
    except BaseException:
        body.close()
        raise


def _write_and_hash(file: IO[bytes], digest: hashlib._Hash, block: bytes) -> None:
    file.write(block)
    file.flush()
    digest.update(block)
