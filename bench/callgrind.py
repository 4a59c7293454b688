"""Instruction counts of a running process under valgrind's callgrind, between two moments.

A process started under `callgrind_prefix(out)` runs normally, only about 50x slower;
`instructions_between` zeroes its counters, runs the load, has it dump them and reads the
total. Instruction counts repeat for the same code and inputs whatever else the machine does,
which is what makes a change of a few percent measurable on a busy machine. They count user
space only: what the kernel does for the process (its socket calls) is not in them.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)
_DUMP_WAIT = 120.0  # seconds for a dump to appear (the process dumps at its next poll)


def callgrind_prefix(out: Path) -> list[str]:
    """The command prefix that runs a process under callgrind, dumping to `out`.N.

    The command after it must be the real interpreter, not a shell shim (pyenv's): valgrind
    does not follow exec, so a shim's python would run outside it."""
    return ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}"]


def instructions_between(pid: int, out: Path, load: Callable[[], None]) -> int:
    """Instructions `pid` (started with `callgrind_prefix(out)`) ran while `load()` ran."""
    before = set(out.parent.glob(f"{out.name}.*"))
    _control("--zero", pid)
    load()
    _control("--dump", pid)
    deadline = time.monotonic() + _DUMP_WAIT
    while time.monotonic() < deadline:
        for dump in set(out.parent.glob(f"{out.name}.*")) - before:
            match = _TOTALS.search(dump.read_text(encoding="utf-8", errors="replace"))
            if match:
                return int(match[1])
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump next to {out} within {_DUMP_WAIT:.0f}s")


def _control(action: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", action, str(pid)], check=True, capture_output=True, timeout=120
    )
