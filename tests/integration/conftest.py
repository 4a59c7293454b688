"""Fakes the integration tests share: the recording AWS upstream and the stand-in STS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes import serve
from tests.fakes.aws_upstream import FakeAws, start_fake_aws
from tests.fakes.sts import StandInSts


@pytest.fixture
async def fake_aws() -> AsyncIterator[FakeAws]:
    fake = await start_fake_aws()
    yield fake
    await fake.close()


@pytest.fixture
def standin() -> StandInSts:
    return StandInSts()


@pytest.fixture
async def standin_url(standin: StandInSts) -> AsyncIterator[str]:
    async with serve(standin.app()) as url:
        yield url
