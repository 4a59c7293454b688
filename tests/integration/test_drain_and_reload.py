"""SIGTERM drains in-flight requests and exits 0; SIGHUP reloads the config or keeps the old one."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.fakes.aws_upstream import FakeAws
from tests.polling import eventually
from tests.servers import ProxyProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
DESCRIBE = "/?Action=DescribeInstances&Version=2016-11-15"


def _config(fake: FakeAws, rate: float, burst: float) -> dict[str, object]:
    return {
        "routes": [{"host": EC2, "upstream": fake.url}],
        "limits": [
            {
                "name": "describe",
                "service": "ec2",
                "operations": ["DescribeInstances"],
                "rate": rate,
                "burst": burst,
            }
        ],
        "limit_policy": {"max_wait": 0},
        "shutdown_grace": "10s",
    }


async def _describe(session: aiohttp.ClientSession, proxy: ProxyProcess, **headers: str) -> int:
    async with session.get(f"{proxy.url}{DESCRIBE}", headers={"Host": EC2, **headers}) as answer:
        await answer.read()
        return answer.status


async def test_sigterm_lets_a_slow_request_finish_then_exits_zero(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    with proxy_process(tmp_path, _config(fake_aws, 100, 100)) as proxy:
        async with aiohttp.ClientSession() as session:
            slow = asyncio.create_task(_describe(session, proxy, **{"x-test-delay": "2.5"}))
            assert await eventually(lambda: bool(fake_aws.seen), 5)  # reached the upstream
            proxy.signal(signal.SIGTERM)
            # Polled until the proxy has taken the signal (bounded, well inside the slow
            # request's 2.5 s, after which it exits), rather than a fixed 0.3 s.
            assert await eventually(lambda: '"event": "draining"' in proxy.log_text(), 2)
            async with session.get(f"{proxy.admin_url}/readyz") as ready:
                assert ready.status == 503
                assert "draining" in await ready.text()
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as fresh:
                    await _describe(fresh, proxy)
            assert await slow == 200
        assert await eventually(lambda: proxy.proc.poll() is not None, 10)
        assert proxy.proc.returncode == 0
        assert '"event": "draining"' in proxy.log_text()


async def test_sighup_tightens_a_limit_that_the_next_requests_feel(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    with proxy_process(tmp_path, _config(fake_aws, 1000, 1000)) as proxy:
        async with aiohttp.ClientSession() as session:
            assert [await _describe(session, proxy) for _ in range(5)] == [200] * 5
            tight = _config(fake_aws, 0.01, 1)
            tight.update(
                listen=f"127.0.0.1:{proxy.port}", admin_listen=f"127.0.0.1:{proxy.admin_port}"
            )
            proxy.config_path.write_text(yaml.safe_dump(tight))
            proxy.signal(signal.SIGHUP)
            assert await eventually(lambda: '"event": "reloaded"' in proxy.log_text(), 5)
            statuses = [await _describe(session, proxy) for _ in range(3)]
        # The bucket shape did not change, so its state carried over; at most one more token.
        assert statuses.count(503) >= 2, statuses


async def test_sighup_with_a_broken_file_keeps_the_old_config(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    with proxy_process(tmp_path, _config(fake_aws, 1000, 1000)) as proxy:
        proxy.config_path.write_text("limits: [ {name: x, rate: fast\n")
        proxy.signal(signal.SIGHUP)
        assert await eventually(lambda: '"event": "reload-failed"' in proxy.log_text(), 5)
        assert str(proxy.config_path) in proxy.log_text()
        async with aiohttp.ClientSession() as session:
            assert [await _describe(session, proxy) for _ in range(20)] == [200] * 20
        assert proxy.proc.poll() is None
