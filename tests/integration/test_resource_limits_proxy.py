"""Rules that charge by resources (EC2's resource token buckets) through a real proxy process
and the recording fake upstream: the instances a call names are what it costs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp

from tests.fakes.aws_upstream import FakeAws
from tests.integration.admin_metrics import metric
from tests.servers import ProxyProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
# Refills one instance token every 100 s: nothing refills while the test runs.
RESOURCE_RULE = {
    "name": "terminate-resources",
    "service": "ec2",
    "operations": ["TerminateInstances"],
    "cost": "resources",
    "rate": 0.01,
    "burst": 5,
}


def config(fake: FakeAws, **extra: object) -> dict[str, object]:
    return {
        "routes": [{"host": EC2, "upstream": fake.url}],
        "limits": [RESOURCE_RULE],
        "limit_policy": {"max_wait": "1s", "max_queue": 100},
        "retry": {"max_attempts": 1},
        **extra,
    }


def form(action: str, *params: str) -> bytes:
    return "&".join([f"Action={action}", "Version=2016-11-15", *params]).encode()


def terminate(*instances: str) -> bytes:
    return form(
        "TerminateInstances", *(f"InstanceId.{i}={iid}" for i, iid in enumerate(instances, 1))
    )


async def post(session: aiohttp.ClientSession, proxy: ProxyProcess, body: bytes) -> tuple[int, str]:
    headers = {"Host": EC2, "Content-Type": FORM}
    async with session.post(f"{proxy.url}/", data=body, headers=headers) as answer:
        return answer.status, await answer.text()


def forwarded(fake: FakeAws, body: bytes) -> int:
    digest = hashlib.sha256(body).hexdigest()
    return sum(1 for seen in fake.seen if seen.body_sha256 == digest)


async def test_terminating_three_instances_drains_a_burst_of_five_in_two_calls(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    three = terminate("i-1", "i-2", "i-3")
    other_three = terminate("i-4", "i-5", "i-4", "i-6")  # i-4 twice: three instances
    two = terminate("i-7", "i-8")
    with proxy_process(tmp_path, config(fake_aws)) as proxy:
        async with aiohttp.ClientSession() as session:
            assert (await post(session, proxy, three))[0] == 200
            # 2 instance tokens left: 3 more do not fit (a refill is 100 s away, past max_wait).
            status, body = await post(session, proxy, other_three)
            assert status == 503
            assert "<Code>RequestLimitExceeded</Code>" in body
            assert "terminate-resources" in body
            # Two instances still fit, and empty the bucket.
            assert (await post(session, proxy, two))[0] == 200
            status, _ = await post(session, proxy, terminate("i-9"))
            assert status == 503
            assert (forwarded(fake_aws, three), forwarded(fake_aws, other_three)) == (1, 0)
            assert forwarded(fake_aws, two) == 1
            assert len(fake_aws.seen) == 2
            # Decisions are counted per request, with the same labels as any rule's.
            decisions = (
                'throttle_proxy_ratelimit_decisions_total{{decision="{}",'
                'rule="terminate-resources"}}'
            )
            assert await metric(session, proxy, decisions.format("allowed")) == 2
            assert await metric(session, proxy, decisions.format("rejected")) == 2


async def test_more_instances_than_the_burst_are_refused_at_once_by_the_default_rules(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    # AWS's own resource buckets hold 1,000 instances: RunInstances asking for up to 1,001
    # can never be admitted, however long it would wait. A generous max_wait must not queue it.
    too_many = form("RunInstances", "ImageId=ami-1", "MinCount=1", "MaxCount=1001")
    fits = form("RunInstances", "ImageId=ami-1", "MinCount=1", "MaxCount=3")
    cfg = config(fake_aws, include_default_limits=True)
    cfg["limits"] = []
    cfg["limit_policy"] = {"max_wait": "60s", "max_queue": 100}
    with proxy_process(tmp_path, cfg) as proxy:
        async with aiohttp.ClientSession() as session:
            status, body = await post(session, proxy, too_many)
            assert status == 503
            assert "<Code>RequestLimitExceeded</Code>" in body
            assert "aws-ec2-run-instances-resources" in body
            assert "needs 1001 tokens" in body
            assert (await post(session, proxy, fits))[0] == 200
            assert (forwarded(fake_aws, too_many), forwarded(fake_aws, fits)) == (0, 1)
            rejected = (
                'throttle_proxy_ratelimit_decisions_total{decision="rejected",'
                'rule="aws-ec2-run-instances-resources"}'
            )
            assert await metric(session, proxy, rejected) == 1
