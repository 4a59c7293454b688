"""Retries through the real proxy: a ProxyServer on loopback in front of the scripted upstream.

Every attempt is signed afresh and its signature checks out against botocore's signer; the
answer says how many attempts it took in `x-throttle-proxy-attempts`; the proxy's own metrics
(attempts, retries, throttles, requests) come out exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from proxy.app.server import ProxyServer
from proxy.config.model import parse_config
from proxy.credentials.base import Credentials
from tests.fakes.scripted_upstream import (
    RESET,
    SCRIPT_HEADER,
    ScriptedUpstream,
    error,
    ok,
    signature_is_valid,
)

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EC2 = "ec2.us-east-1.amazonaws.com"
DDB = "dynamodb.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"
ATTEMPTS_HEADER = "x-throttle-proxy-attempts"


class ExampleCredentials:
    async def get(self) -> Credentials:
        return Credentials(KEY_ID, SECRET, provider="static")


@dataclass
class Rig:
    upstream: ScriptedUpstream
    server: ProxyServer
    url: str
    session: aiohttp.ClientSession

    def sample(self, name: str, **labels: str) -> float:
        return self.server.metrics.registry.get_sample_value(name, labels) or 0.0

    async def ec2(self, script: str) -> tuple[int, str | None, bytes]:
        async with self.session.post(
            f"{self.url}/",
            data=b"Action=DescribeInstances&Version=2016-11-15",
            headers={
                "Host": EC2,
                "Content-Type": "application/x-www-form-urlencoded",
                SCRIPT_HEADER: script,
            },
        ) as answer:
            return answer.status, answer.headers.get(ATTEMPTS_HEADER), await answer.read()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    upstream = ScriptedUpstream()
    async with upstream.running() as upstream_url:
        config = parse_config(
            {
                "listen": "127.0.0.1:0",
                "admin_listen": "127.0.0.1:0",
                "routes": [{"host": host, "upstream": upstream_url} for host in (EC2, DDB, S3)],
                "upstream": {"connect_timeout": "1s", "read_timeout": "300ms"},
                "retry": {
                    "base_delay": "5ms",
                    "throttle_base_delay": "10ms",
                    "max_backoff": "50ms",
                    "services": {"s3": {"max_attempts": 2}},
                },
            }
        )
        server = ProxyServer(config, credentials=ExampleCredentials())
        addresses = await server.start()
        host, port = addresses.proxy
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield Rig(upstream, server, f"http://{host}:{port}", session)
        await server.close()


async def test_throttled_attempts_are_resigned_and_retried(rig: Rig) -> None:
    rig.upstream.script(
        "t", error(503, "RequestLimitExceeded", "ec2"), error(400, "Throttling", "query"), ok()
    )
    status, attempts, body = await rig.ec2("t")
    assert (status, attempts, body) == (200, "3", b"ok")
    sent = rig.upstream.attempts_of("t")
    assert len(sent) == 3
    for attempt in sent:
        assert attempt.header("Host") == EC2
        assert signature_is_valid(attempt, SECRET), attempt.header("Authorization")
        assert not signature_is_valid(attempt, SECRET.replace("K7", "K8"))  # the check can fail
    assert (
        rig.sample(
            "throttle_proxy_upstream_attempts_total",
            service="ec2",
            operation="DescribeInstances",
            outcome="throttled",
        )
        == 2
    )
    assert rig.sample("throttle_proxy_retries_total", service="ec2", reason="throttling") == 2
    assert (
        rig.sample(
            "throttle_proxy_upstream_throttled_total",
            service="ec2",
            operation="DescribeInstances",
            error_code="RequestLimitExceeded",
        )
        == 1
    )
    assert (
        rig.sample(
            "throttle_proxy_requests_total",
            service="ec2",
            operation="DescribeInstances",
            status_class="2xx",
        )
        == 1
    )


async def test_the_last_error_goes_back_in_its_own_format(rig: Rig) -> None:
    rig.upstream.script("t", error(503, "RequestLimitExceeded", "ec2"))
    status, attempts, body = await rig.ec2("t")
    assert (status, attempts) == (503, "3")
    assert b"<Code>RequestLimitExceeded</Code>" in body
    assert len(rig.upstream.attempts_of("t")) == 3


async def test_final_errors_pass_through_after_one_attempt(rig: Rig) -> None:
    rig.upstream.script("t", error(401, "AuthFailure", "ec2"), ok())
    status, attempts, _ = await rig.ec2("t")
    assert (status, attempts) == (401, "1")
    assert len(rig.upstream.attempts_of("t")) == 1


async def test_connection_resets_end_in_the_proxys_own_error(rig: Rig) -> None:
    rig.upstream.script("t", RESET)
    status, attempts, _ = await rig.ec2("t")
    assert (status, attempts) == (502, "3")
    assert len(rig.upstream.attempts_of("t")) == 3
    assert all(signature_is_valid(a, SECRET) for a in rig.upstream.attempts_of("t"))


async def test_dynamodb_makes_four_attempts(rig: Rig) -> None:
    rig.upstream.script("t", error(400, "ProvisionedThroughputExceededException", "json"))
    async with rig.session.post(
        f"{rig.url}/",
        data=b'{"TableName": "t", "Key": {"id": {"S": "1"}}}',
        headers={
            "Host": DDB,
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.GetItem",
            SCRIPT_HEADER: "t",
        },
    ) as answer:
        assert answer.status == 400
        assert answer.headers[ATTEMPTS_HEADER] == "4"
    sent = rig.upstream.attempts_of("t")
    assert len(sent) == 4
    assert all(signature_is_valid(a, SECRET) for a in sent)


async def test_per_service_max_attempts(rig: Rig) -> None:
    rig.upstream.script("t", error(503, "SlowDown", "rest-xml"))
    async with rig.session.get(
        f"{rig.url}/bucket/key", headers={"Host": S3, SCRIPT_HEADER: "t"}
    ) as answer:
        assert answer.status == 503
        assert answer.headers[ATTEMPTS_HEADER] == "2"
    sent = rig.upstream.attempts_of("t")
    assert len(sent) == 2
    assert all(signature_is_valid(a, SECRET) for a in sent)


async def test_refusals_claim_no_attempts(rig: Rig) -> None:
    """Nothing was sent upstream: no `x-throttle-proxy-attempts` on the proxy's refusal."""
    async with rig.session.get(f"{rig.url}/", headers={"Host": "example.com"}) as answer:
        assert answer.status == 403
        assert answer.headers["x-throttle-proxy-error"] == "host-not-allowed"
        assert ATTEMPTS_HEADER not in answer.headers
    assert rig.upstream.attempts_of("t") == []
