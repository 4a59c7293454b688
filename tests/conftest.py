"""Fixtures shared by unit, integration and e2e tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.servers import MotoAccount, moto_with_account


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session for the test, closed after it."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture(scope="module")
def moto_account() -> Iterator[MotoAccount]:
    """One moto per module with an admin user and a role; signatures are checked."""
    with moto_with_account() as account:
        yield account
