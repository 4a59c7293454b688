"""Fakes the integration tests share: the recording AWS upstream, the stand-in STS, and a
real redis-server (CI installs it; elsewhere its tests skip when it is missing)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes import serve
from tests.fakes.aws_upstream import FakeAws, start_fake_aws
from tests.fakes.sts import StandInSts
from tests.servers import RedisProcess, free_port


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


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: `make test` installs it (system-deps)")
        pytest.skip("no redis-server on this machine (`make system-deps` installs it)")
    server = RedisProcess(free_port())
    server.start()
    yield server
    server.stop()
