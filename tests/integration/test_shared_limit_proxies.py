"""Two proxy processes, one account: a limit shared through a real redis-server holds across
both, and when Redis dies they keep serving (fail open) and say so in their metrics."""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp

from tests.fakes.aws_upstream import FakeAws
from tests.servers import ProxyProcess, RedisProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
BURST = 5


def _config(fake: FakeAws, redis: RedisProcess) -> dict[str, object]:
    return {
        "routes": [{"host": EC2, "upstream": fake.url}],
        "limits": [
            {
                "name": "describe",
                "service": "ec2",
                "operations": ["DescribeInstances"],
                "rate": 0.5,
                "burst": BURST,
            }
        ],
        "limit_policy": {"max_wait": 0},
        "redis": {"url": redis.url, "timeout": "200ms", "fail_open": True},
    }


async def _statuses(session: aiohttp.ClientSession, proxy: ProxyProcess, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        async with session.get(
            f"{proxy.url}/?Action=DescribeInstances", headers={"Host": EC2}
        ) as answer:
            await answer.read()
            statuses.append(answer.status)
    return statuses


async def _backend_errors(session: aiohttp.ClientSession, proxy: ProxyProcess) -> float:
    async with session.get(f"{proxy.admin_url}/metrics") as answer:
        text = await answer.text()
    found = re.search(
        r'^throttle_proxy_ratelimit_backend_errors_total\{backend="redis"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_two_proxies_share_one_budget_and_fail_open_without_redis(
    tmp_path: Path, fake_aws: FakeAws, redis_server: RedisProcess
) -> None:
    config = _config(fake_aws, redis_server)
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    with (
        proxy_process(first_dir, config) as first,
        proxy_process(second_dir, config) as second,
    ):
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            one = await _statuses(session, first, 4)
            two = await _statuses(session, second, 4)
            took = time.monotonic() - started
            # Eight requests against one bucket of five, refilling a token per 2 s: what
            # the eight took (well under a second, unless the machine is loaded) bounds the
            # refills, so a slow machine only raises the upper bounds.
            refilled = int(0.5 * took)
            assert BURST <= (one + two).count(200) <= BURST + refilled, (one, two, took)
            assert two.count(503) >= 3 - refilled
            assert len(fake_aws.seen) == (one + two).count(200)

            redis_server.stop()
            # Fail open: the proxy keeps serving and counts the backend errors.
            assert await _statuses(session, first, 3) == [200] * 3
            assert await _backend_errors(session, first) >= 1
            # The other replica still remembers Redis refusing this bucket a moment ago and
            # refuses locally until a token would have come back; it never errors.
            assert set(await _statuses(session, second, 3)) <= {200, 503}
