"""Budgets as AWS counts them, through a real proxy process and a recording fake upstream:
one budget per region of an account, and limits tightened and loosened by SIGHUP under load
never admit more than `burst + rate·t` of the rule in force, leave no debt and give no credit.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import yaml

from tests.fakes.aws_upstream import FakeAws
from tests.integration.request_log import all_logged, event_times, most_in_window
from tests.polling import eventually
from tests.servers import ProxyProcess, proxy_process

EAST = "ec2.us-east-1.amazonaws.com"
WEST = "ec2.eu-west-1.amazonaws.com"


def _config(fake: FakeAws, rate: float, burst: float) -> dict[str, object]:
    return {
        "routes": [{"host": EAST, "upstream": fake.url}, {"host": WEST, "upstream": fake.url}],
        "limits": [_rule(rate, burst)],
        "limit_policy": {"max_wait": 0},
        "retry": {"max_attempts": 1},
    }


def _rule(rate: float, burst: float) -> dict[str, object]:
    return {
        "name": "describe",
        "service": "ec2",
        "operations": ["DescribeInstances"],
        "rate": rate,
        "burst": burst,
    }


async def _describe(session: aiohttp.ClientSession, proxy: ProxyProcess, host: str) -> int:
    async with session.get(
        f"{proxy.url}/?Action=DescribeInstances&Version=2016-11-15", headers={"Host": host}
    ) as answer:
        await answer.read()
        return answer.status


async def _reload(
    session: aiohttp.ClientSession, proxy: ProxyProcess, rate: float, burst: float
) -> None:
    """Rewrite the rule, SIGHUP, and wait (bounded) until the proxy runs it."""
    full = yaml.safe_load(proxy.config_path.read_text())
    full["limits"] = [_rule(rate, burst)]
    proxy.config_path.write_text(yaml.safe_dump(full))
    reloads = proxy.log_text().count('"reloaded"')
    proxy.signal(signal.SIGHUP)
    reloaded = await eventually(lambda: proxy.log_text().count('"reloaded"') > reloads, 2)
    assert reloaded, "the proxy never reloaded"


async def test_each_region_of_an_account_has_its_own_budget(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    with proxy_process(tmp_path, _config(fake_aws, 0.5, 5)) as proxy:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            east = [await _describe(session, proxy, EAST) for _ in range(8)]
            west = [await _describe(session, proxy, WEST) for _ in range(8)]
            took = time.monotonic() - started
    # Burst 5 per region, not 5 in all; plus a token per 2 s the calls took (rate 0.5: a
    # loaded machine has 2 s before one refills; the bounds grow with the time it took).
    refilled = int(0.5 * took)
    assert 5 <= east.count(200) <= 5 + refilled, (east, took)
    assert 5 <= west.count(200) <= 5 + refilled, (west, took)
    assert len(fake_aws.seen) == east.count(200) + west.count(200)


async def test_tighten_then_loosen_under_load(tmp_path: Path, fake_aws: FakeAws) -> None:
    with proxy_process(tmp_path, _config(fake_aws, 1000, 1000)) as proxy:
        async with aiohttp.ClientSession() as session:
            # The operator's incident: 20 calls at 1000/s burst 1000, then tightened to 1/s.
            assert [await _describe(session, proxy, EAST) for _ in range(20)] == [200] * 20
            await _reload(session, proxy, 1, 1)
            statuses = []
            started = time.monotonic()
            for _ in range(20):  # 20 calls over 1.5 s
                statuses.append(await _describe(session, proxy, EAST))
                await asyncio.sleep(0.075)
            elapsed = time.monotonic() - started
            # The bucket had room, so the first call after the shrink goes; no debt.
            assert statuses[0] == 200, statuses
            assert statuses.count(200) <= 1 + 1 * elapsed, statuses

            # Under load from four clients, loosen to 20/s burst 10, then tighten to 5/s burst 3.
            stop = asyncio.Event()

            async def client() -> None:
                while not stop.is_set():
                    await _describe(session, proxy, EAST)
                    await asyncio.sleep(0.01)

            load = [asyncio.create_task(client()) for _ in range(4)]
            try:
                await asyncio.sleep(0.3)
                await _reload(session, proxy, 20, 10)
                await asyncio.sleep(1.0)
                await _reload(session, proxy, 5, 3)
                await asyncio.sleep(1.0)
            finally:
                stop.set()
                await asyncio.gather(*load)

            # Measured on the proxy's own clock, from its log: each rule from the moment it
            # came in force ("reloaded") to the next, over the moments requests were admitted
            # (max_wait 0: when they were asked). Arrivals at the fake, and the moments this
            # test noticed a reload, come later by however long a loaded machine takes, and
            # would put requests admitted under one rule in the other's span.
            logged = await all_logged(proxy, len(fake_aws.seen))
            swapped = event_times(proxy, "reloaded")
    assert len(swapped) == 3, swapped
    loosened, tightened = swapped[1], swapped[2]
    admitted = sorted(r.admitted for r in logged if r.status == 200)
    grown = [t for t in admitted if loosened <= t < tightened]
    shrunk = [t for t in admitted if tightened <= t]
    for window in (0.1, 0.25, 0.5):
        assert most_in_window(grown, window) <= 10 + 20 * window + 1, (window, grown)
        assert most_in_window(shrunk, window) <= 3 + 5 * window + 1, (window, shrunk)
    # No credit from the growth: the bucket was empty under load, so the first 0.2 s admit
    # what refills (20/s) plus the old burst at most, not the new burst of 10.
    assert len([t for t in grown if t < loosened + 0.2]) <= 2 + 20 * 0.2 + 1, grown
    # And the loosened rule really lets more through than the tightened one.
    assert len(grown) > len(shrunk) > 0


async def test_default_limits_count_unfiltered_describes_in_the_smaller_bucket(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    config = {
        "routes": [{"host": EAST, "upstream": fake_aws.url}],
        "include_default_limits": True,
        "limit_policy": {"max_wait": 0},
        "retry": {"max_attempts": 1},
    }
    with proxy_process(tmp_path, config) as proxy:
        async with aiohttp.ClientSession() as session:

            async def describe(form: str) -> int:
                async with session.post(
                    f"{proxy.url}/",
                    data=f"Action=DescribeInstances&Version=2016-11-15{form}",
                    headers={"Host": EAST, "Content-Type": "application/x-www-form-urlencoded"},
                ) as answer:
                    await answer.read()
                    return answer.status

            unfiltered = await asyncio.gather(*(describe("") for _ in range(60)))
            filtered = await asyncio.gather(
                *(describe("&Filter.1.Name=instance-state-name") for _ in range(60))
            )
    # AWS's 50 / 10 bucket for the unfiltered, unpaginated call (a few refill meanwhile) ...
    assert 50 <= unfiltered.count(200) <= 55, unfiltered
    # ... and the standard 100 / 20 one for the filtered call, untouched by the first.
    assert filtered.count(200) == 60, filtered
