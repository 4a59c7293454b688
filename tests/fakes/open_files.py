"""Files a process holds open under a directory, read from /proc (Linux): spool files have no
name in their directory, so only their open descriptors show them."""

from __future__ import annotations

import os
from pathlib import Path


def open_files_under(directory: Path, pid: int | None = None) -> list[str]:
    """Targets of `pid`'s (default: this process's) descriptors inside `directory`, deleted
    or unnamed files included (`/dir/#1234 (deleted)`)."""
    fd_dir = Path(f"/proc/{pid or os.getpid()}/fd")
    prefix = str(directory.resolve()) + os.sep
    found = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith(prefix):
            found.append(target)
    return found
