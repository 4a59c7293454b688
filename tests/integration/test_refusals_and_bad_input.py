"""Refusals and bad input against a real proxy process; good requests keep succeeding."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.aws_upstream import FakeAws, count_connections
from tests.servers import (
    EXAMPLE_KEY_ID,
    EXAMPLE_SECRET,
    ProxyProcess,
    credential_env,
    free_port,
    proxy_process,
)

SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN" + "Q" * 40
EC2 = "ec2.us-east-1.amazonaws.com"


@pytest.fixture
def proxy(tmp_path: Path, fake_aws: FakeAws) -> Iterator[ProxyProcess]:
    dead_port = free_port()
    config = {
        "log_level": "debug",
        "routes": [
            {"host": EC2, "upstream": fake_aws.url},
            {"host": "sqs.us-east-1.amazonaws.com", "upstream": f"http://127.0.0.1:{dead_port}"},
        ],
        "upstream": {"connect_timeout": "2s", "read_timeout": "2s"},
        "retry": {"max_attempts": 2, "base_delay": "10ms"},
    }
    env = credential_env(tmp_path, {"AWS_SESSION_TOKEN": SESSION_TOKEN})
    with proxy_process(tmp_path, config, env=env) as handle:
        yield handle


async def _raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5.0)
    finally:
        writer.close()


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, answer[:200]
    return int(match.group(1))


async def _good(session: aiohttp.ClientSession, proxy: ProxyProcess) -> int:
    async with session.get(
        f"{proxy.url}/?Action=DescribeInstances&Version=2016-11-15", headers={"Host": EC2}
    ) as answer:
        await answer.read()
        return answer.status


async def test_host_outside_allow_list_is_refused_without_connecting(
    proxy: ProxyProcess,
) -> None:
    holder: list[int] = []
    server, accepted = await count_connections(holder)
    try:
        async with aiohttp.ClientSession() as session:
            for target in (f"127.0.0.1:{holder[0]}", "example.com", "evilamazonaws.com"):
                async with session.get(f"{proxy.url}/anything", headers={"Host": target}) as answer:
                    assert answer.status == 403
                    assert answer.headers["x-throttle-proxy-error"] == "host-not-allowed"
                    assert "allow_hosts" in await answer.text()
        assert accepted == []
    finally:
        server.close()
        await server.wait_closed()


async def test_forward_proxy_target_outside_allow_list(proxy: ProxyProcess) -> None:
    answer = await _raw(
        proxy.port, b"GET http://example.org/x HTTP/1.1\r\nHost: example.org\r\n\r\n"
    )
    assert _status(answer) == 403
    assert b"x-throttle-proxy-error: host-not-allowed" in answer.lower()


async def test_connect_is_refused_with_a_reason(proxy: ProxyProcess) -> None:
    answer = await _raw(
        proxy.port, f"CONNECT {EC2}:443 HTTP/1.1\r\nHost: {EC2}:443\r\n\r\n".encode()
    )
    assert _status(answer) == 405
    assert b"cannot be signed" in answer


async def test_bad_input_gets_4xx_while_good_requests_keep_succeeding(
    proxy: ProxyProcess, fake_aws: FakeAws
) -> None:
    bad_inputs = [
        b"\x16\x03\x01\x02\x00garbage-not-http\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: " + EC2.encode() + b"\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: " + EC2.encode() + b"\r\nContent-Length: nope\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: " + EC2.encode() + b"\r\nContent-Length: -5\r\n\r\n",
    ]
    async with aiohttp.ClientSession() as session:
        good = [asyncio.create_task(_good(session, proxy)) for _ in range(20)]
        answers = await asyncio.gather(*(_raw(proxy.port, payload) for payload in bad_inputs))
        statuses = [_status(a) for a in answers]
        assert all(status in (400, 431) for status in statuses), statuses
        assert await asyncio.gather(*good) == [200] * 20
        assert await _good(session, proxy) == 200


async def test_dead_upstream_answers_502_quickly(proxy: ProxyProcess) -> None:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{proxy.url}/?Action=ListQueues",
            headers={"Host": "sqs.us-east-1.amazonaws.com"},
        ) as answer,
    ):
        assert answer.status in (502, 504)
        assert answer.headers["x-throttle-proxy-error"] in (
            "upstream-unavailable",
            "upstream-timeout",
        )
        assert answer.headers["x-throttle-proxy-attempts"] == "2"
    assert time.monotonic() - started < 5


async def test_secrets_never_reach_logs_or_metrics(proxy: ProxyProcess, fake_aws: FakeAws) -> None:
    async with aiohttp.ClientSession() as session:
        assert await _good(session, proxy) == 200
        async with session.get(
            f"{proxy.url}/?Action=DescribeInstances",
            headers={"Host": EC2, "Authorization": "AWS4-HMAC-SHA256 client-own-secret"},
        ) as answer:
            assert answer.status == 200
        async with session.get(f"{proxy.admin_url}/metrics") as answer:
            metrics = await answer.text()
    seen = fake_aws.seen[-1]
    # The client's own Authorization was replaced by the proxy's signature.
    assert "client-own-secret" not in seen.headers["authorization"]
    assert seen.headers["x-amz-security-token"] == SESSION_TOKEN
    log = proxy.log_text()
    assert '"event": "request"' in log
    for secret in (EXAMPLE_SECRET, SESSION_TOKEN, "client-own-secret"):
        assert secret not in log
        assert secret not in metrics
    assert EXAMPLE_KEY_ID not in metrics
    assert "throttle_proxy_requests_total" in metrics
    assert "throttle_proxy_request_duration_seconds_bucket" in metrics
