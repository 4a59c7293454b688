"""`credential_process` from a profile: an external program that prints JSON credentials.

Run without a shell (the command line is split like a POSIX shell would, then exec'd), with a
timeout, on the event loop's subprocess machinery so nothing blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from typing import Any

from proxy.credentials.base import Credentials
from proxy.credentials.profiles import ProfileStore
from proxy.credentials.timestamps import parse_expiration
from proxy.errors import CredentialError

PROCESS_PROVIDER = "credential-process"
_MAX_OUTPUT = 64 * 1024  # a credential document is a few hundred bytes
_STDERR_KEPT = 4096  # only the first line is quoted
_READ_SIZE = 16 * 1024
_DRAIN_LIMIT = 1.0  # seconds to let a killed program's pipes reach EOF


async def run_credential_process(command: str, time_limit: float) -> Credentials:
    """Run `command`, parse its Version 1 JSON; CredentialError names the command on failure."""
    label = f"credential_process {command!r}"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CredentialError(PROCESS_PROVIDER, f"{label}: cannot parse: {exc}") from None
    if not argv:
        raise CredentialError(PROCESS_PROVIDER, f"{label}: empty command")
    try:
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise CredentialError(
            PROCESS_PROVIDER, f"{label}: cannot start: {exc.strerror or exc}"
        ) from None
    try:
        async with asyncio.timeout(time_limit):
            stdout, stderr = await asyncio.gather(
                _read_stdout(child), _read_head(child.stderr, _STDERR_KEPT)
            )
            await child.wait()
    except TimeoutError:
        await _kill(child)
        raise CredentialError(
            PROCESS_PROVIDER, f"{label}: timed out after {time_limit:g}s"
        ) from None
    except BaseException:
        # Cancelled (shutdown, a caller gave up) or a bug: never leave the program running.
        await _kill(child)
        raise
    if stdout is None:
        raise CredentialError(
            PROCESS_PROVIDER, f"{label}: output is larger than {_MAX_OUTPUT // 1024} KiB"
        )
    if child.returncode != 0:
        first = stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {first[0][:200]}" if first else ""
        raise CredentialError(PROCESS_PROVIDER, f"{label}: exited {child.returncode}{detail}")
    return parse_process_output(stdout, label)


async def _read_stdout(child: asyncio.subprocess.Process) -> bytes | None:
    """All of stdout, or None (and the program killed) as soon as it passes _MAX_OUTPUT."""
    stream = child.stdout
    assert stream is not None
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(_MAX_OUTPUT + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_OUTPUT:
            # Stop reading: the rest would only grow memory. Killing ends stderr and wait() too.
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await _discard(stream)
            return None
    return b"".join(chunks)


async def _read_head(stream: asyncio.StreamReader | None, keep: int) -> bytes:
    """The first `keep` bytes; the rest is read and dropped so the program never blocks on it."""
    assert stream is not None
    head = b""
    while chunk := await stream.read(_READ_SIZE):
        if len(head) < keep:
            head += chunk[: keep - len(head)]
    return head


async def _discard(stream: asyncio.StreamReader | None) -> None:
    # Read to EOF: a pipe paused with a full buffer never sees EOF, so it would never close.
    assert stream is not None
    while await stream.read(_READ_SIZE):
        pass


async def _kill(child: asyncio.subprocess.Process) -> None:
    """Kill the program, let its pipes reach EOF, and reap it (no zombie, no open pipe)."""
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    with contextlib.suppress(TimeoutError):
        # Bounded: a grandchild holding the pipes open must not hold us up.
        async with asyncio.timeout(_DRAIN_LIMIT):
            await asyncio.gather(_discard(child.stdout), _discard(child.stderr))
    await child.wait()


def parse_process_output(stdout: bytes, label: str) -> Credentials:
    """The JSON a credential process prints (Version 1); errors never quote the values."""
    try:
        document: Any = json.loads(stdout)
    except ValueError:
        raise CredentialError(PROCESS_PROVIDER, f"{label}: output is not JSON") from None
    if not isinstance(document, dict):
        raise CredentialError(PROCESS_PROVIDER, f"{label}: output is not a JSON object")
    version = document.get("Version")
    if version != 1:
        raise CredentialError(
            PROCESS_PROVIDER, f"{label}: unsupported Version {version!r} (expected 1)"
        )
    values: dict[str, str] = {}
    for key in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        value = document.get(key)
        if value is not None and not isinstance(value, str):
            raise CredentialError(PROCESS_PROVIDER, f"{label}: {key} is not a string")
        if value:
            values[key] = value
    for required in ("AccessKeyId", "SecretAccessKey"):
        if required not in values:
            raise CredentialError(PROCESS_PROVIDER, f"{label}: output has no {required}")
    expiry: float | None = None
    if "Expiration" in values:
        try:
            expiry = parse_expiration(values["Expiration"])
        except ValueError as exc:
            raise CredentialError(PROCESS_PROVIDER, f"{label}: Expiration: {exc}") from None
    return Credentials(
        values["AccessKeyId"],
        values["SecretAccessKey"],
        values.get("SessionToken"),
        expiry,
        PROCESS_PROVIDER,
    )


class ProcessProvider:
    """Runs the selected profile's `credential_process` (read afresh at every load)."""

    name = PROCESS_PROVIDER

    def __init__(self, store: ProfileStore, profile: str, timeout: float) -> None:
        self._store = store
        self._profile = profile
        self._timeout = timeout

    async def load(self) -> Credentials | None:
        """None when the profile has no credential_process."""
        command = (await self._store.snapshot()).profile(self._profile).get("credential_process")
        if not command:
            return None
        return await run_credential_process(command, self._timeout)

    def describe(self) -> str:
        """Why this provider had nothing."""
        return f"profile [{self._profile}] has no credential_process"
