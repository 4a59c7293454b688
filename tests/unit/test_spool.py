"""Spooled bodies: hashed as written, replayable, inside the disk budget, always removed."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.bodies.spool import SPOOL_PIECE, SpoolArea, SpoolFull, spool_body
from proxy.errors import PayloadTooLarge
from tests.fakes.open_files import open_files_under


async def pieces_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def files(directory: Path) -> list[str]:
    """Spool files still in use (open, nameless) or left behind (named) under `directory`."""
    return open_files_under(directory) + [str(path) for path in directory.iterdir()]


async def test_a_spooled_body_is_hashed_replayable_and_removed(tmp_path: Path) -> None:
    area = SpoolArea(str(tmp_path), 10 * SPOOL_PIECE)
    data = os.urandom(2 * SPOOL_PIECE + 123)
    body = await spool_body(area, b"head", pieces_of(data), len(data) + 4, len(data) + 4)
    assert (body.length, body.sha256) == (len(data) + 4, hashlib.sha256(b"head" + data).hexdigest())
    assert len(files(tmp_path)) == 1
    assert os.listdir(tmp_path) == []  # nameless: nothing a killed process could leave
    assert area.used == len(data) + 4
    for _ in range(2):  # one read per attempt
        assert b"".join([p async for p in body.pieces()]) == b"head" + data
    body.close()
    body.close()
    assert files(tmp_path) == []
    assert area.used == 0


async def test_without_a_length_the_budget_grows_with_the_body(tmp_path: Path) -> None:
    area = SpoolArea(str(tmp_path), 1000)
    body = await spool_body(area, b"x" * 100, pieces_of(b"y" * 500, 100), None, 10_000)
    assert (body.length, area.used) == (600, 600)
    body.close()
    assert area.used == 0
    with pytest.raises(SpoolFull):
        await spool_body(area, b"", pieces_of(b"z" * 1500, 100), None, 10_000)
    assert (files(tmp_path), area.used) == ([], 0)


async def test_a_declared_body_over_the_budget_is_refused_before_writing(tmp_path: Path) -> None:
    area = SpoolArea(str(tmp_path), 1000)
    held = await spool_body(area, b"", pieces_of(b"a" * 600), 600, 10_000)
    with pytest.raises(SpoolFull) as caught:
        await spool_body(area, b"", pieces_of(b"b" * 500), 500, 10_000)
    assert caught.value.message == (
        "spooling this body needs 500 bytes of spool_budget (1000 bytes), 400 are free; "
        "try again shortly"
    )
    assert (caught.value.status, caught.value.reason) == (503, "spool-full")
    assert len(files(tmp_path)) == 1
    held.close()


async def test_over_max_body_is_413_and_the_file_goes(tmp_path: Path) -> None:
    area = SpoolArea(str(tmp_path), 10**9)
    with pytest.raises(PayloadTooLarge) as caught:
        await spool_body(area, b"", pieces_of(b"c" * 5000, 1000), None, 4000)
    assert "max_body (4000 bytes)" in caught.value.message
    assert (files(tmp_path), area.used) == ([], 0)


async def test_a_client_failing_mid_body_leaves_no_file(tmp_path: Path) -> None:
    area = SpoolArea(str(tmp_path), 10**9)

    async def broken() -> AsyncIterator[bytes]:
        yield b"d" * SPOOL_PIECE * 2
        raise asyncio.IncompleteReadError(b"", 10)

    with pytest.raises(asyncio.IncompleteReadError):
        await spool_body(area, b"", broken(), 10 * SPOOL_PIECE, 10**9)
    assert (files(tmp_path), area.used) == ([], 0)


async def test_a_cancelled_spool_leaves_no_file(tmp_path: Path) -> None:
    area = SpoolArea(str(tmp_path), 10**9)
    first_written = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"e" * SPOOL_PIECE
        first_written.set()
        await asyncio.Event().wait()  # the client never sends the rest
        yield b""

    task = asyncio.create_task(spool_body(area, b"", stalls(), 4 * SPOOL_PIECE, 10**9))
    await asyncio.wait_for(first_written.wait(), 5)
    assert len(files(tmp_path)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (files(tmp_path), area.used) == ([], 0)


def test_no_directory_means_the_system_temp_dir() -> None:
    import tempfile

    assert SpoolArea(None, 1).directory == tempfile.gettempdir()
