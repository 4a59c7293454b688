"""Client-side limits through a real proxy process and a fake upstream that records arrivals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import botocore.session
import pytest
import yaml
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

from tests.fakes.aws_upstream import FakeAws, Seen
from tests.fakes.scripted_upstream import ScriptedUpstream, error
from tests.integration.admin_metrics import metric
from tests.integration.request_log import all_logged, most_in_window
from tests.servers import ProxyProcess, proxy_process

EC2 = "ec2.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"
CLOUDWATCH = "monitoring.us-east-1.amazonaws.com"


def config(fake: FakeAws, limits: list[dict[str, object]], **policy: object) -> dict[str, object]:
    return {
        "routes": [{"host": EC2, "upstream": fake.url}, {"host": S3, "upstream": fake.url}],
        "limits": limits,
        "limit_policy": {"max_wait": "5s", "max_queue": 1000, **policy},
        "retry": {"max_attempts": 1},
    }


async def ec2(
    session: aiohttp.ClientSession, proxy: ProxyProcess, action: str
) -> tuple[int, dict[str, str], str]:
    async with session.get(
        f"{proxy.url}/?Action={action}&Version=2016-11-15", headers={"Host": EC2}
    ) as answer:
        return answer.status, dict(answer.headers), await answer.text()


def arrivals(fake: FakeAws, action: str) -> list[float]:
    return sorted(s.arrived for s in fake.seen if f"Action={action}" in s.query)


async def test_limited_operation_is_paced_and_others_are_not(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    rule = {"name": "describe", "service": "ec2", "operations": ["DescribeInstances"]}
    limits = [{**rule, "rate": 20, "burst": 5}]
    with proxy_process(tmp_path, config(fake_aws, limits)) as proxy:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            limited = [ec2(session, proxy, "DescribeInstances") for _ in range(25)]
            free = [ec2(session, proxy, "DescribeVpcs") for _ in range(25)]
            answers = await asyncio.gather(*limited, *free)
            assert [a[0] for a in answers] == [200] * 50
            paced, unpaced = (
                arrivals(fake_aws, "DescribeInstances"),
                arrivals(fake_aws, "DescribeVpcs"),
            )
            # 25 requests, burst 5, 20/s: the last is admitted 1 s after the first at the
            # earliest, and the first is admitted after `started`. The lower bound is measured
            # from `started`, not from the first arrival: a stall that delays the first
            # request's arrival (not its admission) would shorten the arrivals' span.
            assert paced[-1] - started >= 0.95
            # The other bounds are on the proxy's own admissions (its request log), not on
            # arrivals at the upstream: a loaded run stalled 0.47 s and then delivered 15
            # requests admitted at the pace within 0.25 s.
            logged = await all_logged(proxy, 50)
            limited_log = [r for r in logged if r.operation == "DescribeInstances"]
            admitted = sorted(r.admitted for r in limited_log)
            asked = sorted(r.asked for r in limited_log)
            asks_span = asked[-1] - asked[0]
            # Never more than burst + rate * window in any window (the 150 ms allow for a
            # stall between the log's clock and the limiter's ask, synchronous code).
            for window in (0.25, 0.5):
                assert most_in_window(admitted, window) <= 5 + 20 * window + 20 * 0.15 + 1
            # The last goes 1 s after the first ask, or at once if asked later than that (a
            # machine that spreads the asks only moves this bound the way it says).
            assert admitted[-1] - asked[0] <= max(1.0, asks_span) + 0.05, (asked, admitted)
            # The unlimited operation was not held back: the limiter never made it wait, all
            # of it was asked while the limited one was still being paced (on the proxy's
            # clock), and all of it arrived before the last limited request. (The arrivals'
            # margin was 0.3 s, and another bound had them all within 1 s of `started`: a
            # loaded machine that delays the sends pushes them later, so the margin is on
            # the asks now.)
            free_log = [r for r in logged if r.operation == "DescribeVpcs"]
            assert (len(free_log), max(r.waited for r in free_log)) == (25, 0.0)
            assert max(r.asked for r in free_log) < admitted[-1] - 0.3
            assert unpaced[-1] < paced[-1]
            decisions = 'throttle_proxy_ratelimit_decisions_total{{decision="{}",rule="describe"}}'
            delayed = await metric(session, proxy, decisions.format("delayed"))
            allowed = await metric(session, proxy, decisions.format("allowed"))
            # 20 wait when all 25 are asked at once; asks a loaded machine spreads out may
            # find a token refilled meanwhile (one per 50 ms of the asks' span), never more.
            assert delayed + allowed == 25
            assert allowed == sum(1 for r in limited_log if r.waited == 0)
            assert 5 <= allowed <= 5 + int(20 * asks_span) + 1, (allowed, asks_span)


async def test_over_max_wait_answers_the_services_own_throttling_error(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    limits = [
        {"name": "run", "service": "ec2", "operations": ["RunInstances"], "rate": 1, "burst": 2}
    ]
    with proxy_process(tmp_path, config(fake_aws, limits, max_wait="100ms")) as proxy:
        async with aiohttp.ClientSession() as session:
            answers = [await ec2(session, proxy, "RunInstances") for _ in range(3)]
            assert [a[0] for a in answers[:2]] == [200, 200]
            status, headers, body = answers[2]
            assert status == 503
            assert headers["x-throttle-proxy-error"] == "rate-limited"
            assert int(headers["Retry-After"]) >= 1
            assert "<Code>RequestLimitExceeded</Code>" in body
            assert len(arrivals(fake_aws, "RunInstances")) == 2  # the refused one never left
            assert "x-throttle-proxy-attempts" not in headers  # so it claims no attempt
            assert [a[1]["x-throttle-proxy-attempts"] for a in answers[:2]] == ["1", "1"]
            rejected = 'throttle_proxy_ratelimit_decisions_total{decision="rejected",rule="run"}'
            assert await metric(session, proxy, rejected) == 1


def cbor_cloudwatch(proxy: ProxyProcess, models: Path) -> Any:
    """botocore's CloudWatch client on Smithy RPC v2 CBOR, the protocol the Go SDK v2 and the
    Ruby SDK speak to CloudWatch by default (botocore prefers its JSON): the model's protocol
    list narrowed to CBOR, loaded from `models`."""
    model = botocore.session.get_session().get_service_data("cloudwatch")
    model["metadata"]["protocols"] = ["smithy-rpc-v2-cbor"]
    path = models / "cloudwatch" / model["metadata"]["apiVersion"] / "service-2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(model), encoding="utf-8")
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(models))
    return session.create_client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=f"http://{CLOUDWATCH}",
        config=BotoConfig(
            signature_version=UNSIGNED,
            proxies={"http": proxy.url},
            retries={"total_max_attempts": 1},
        ),
    )


def _put_metric(client: Any) -> dict[str, Any]:
    """The error response botocore parsed from the call's answer ({} for a success)."""
    try:
        client.put_metric_data(Namespace="app", MetricData=[{"MetricName": "m", "Value": 1.0}])
    except ClientError as error:
        return dict(error.response)
    return {}


def _spend_token(client: Any) -> None:
    # The fake answers EC2-style XML, no CBOR: botocore cannot parse it, and need not.
    with contextlib.suppress(ResponseParserError):
        _put_metric(client)


async def test_cbor_request_over_the_limit_gets_a_cbor_throttle_the_sdk_reads(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    limits = [{"name": "metrics", "service": "monitoring", "rate": 0.001, "burst": 1}]
    full = {
        "routes": [{"host": CLOUDWATCH, "upstream": fake_aws.url}],
        "limits": limits,
        "limit_policy": {"mode": "enforce"},
        "retry": {"max_attempts": 1},
    }
    with proxy_process(tmp_path, full) as proxy:
        client = cbor_cloudwatch(proxy, tmp_path / "models")
        await asyncio.to_thread(_spend_token, client)
        refused = await asyncio.to_thread(_put_metric, client)
        assert refused["Error"]["Code"] == "ThrottlingException"
        assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert (
            refused["ResponseMetadata"]["HTTPHeaders"]["x-throttle-proxy-error"] == "rate-limited"
        )
        context = RetryContext(attempt_number=1, parsed_response=refused)
        assert ThrottledRetryableChecker().is_retryable(context)
        assert len(fake_aws.seen) == 1


async def test_s3_prefixes_get_buckets_of_their_own(tmp_path: Path, fake_aws: FakeAws) -> None:
    limits = [
        {
            "name": "reads",
            "service": "s3",
            "operations": ["GetObject"],
            "per": "prefix",
            "prefix_depth": 1,
            "rate": 10,
            "burst": 5,
        }
    ]
    with proxy_process(tmp_path, config(fake_aws, limits)) as proxy:
        async with aiohttp.ClientSession() as session:

            async def get(key: str) -> int:
                async with session.get(f"{proxy.url}/media/{key}", headers={"Host": S3}) as a:
                    await a.read()
                    return a.status

            started = time.monotonic()
            statuses = await asyncio.gather(
                *(get(f"{prefix}/obj{i}.jpg") for prefix in ("cats", "dogs") for i in range(10))
            )
            assert statuses == [200] * 20

            def per_prefix(prefix: str) -> list[float]:
                seen: list[Seen] = [
                    s for s in fake_aws.seen if s.path.startswith(f"/media/{prefix}/")
                ]
                return sorted(s.arrived - started for s in seen)

            for prefix in ("cats", "dogs"):
                times = per_prefix(prefix)
                # Each prefix: 5 at once, then 5 more at 10/s (its own bucket, not shared).
                # The last of the ten is admitted 0.5 s after the first admission at the
                # earliest, so its lower bound is measured from `started` (a late first
                # arrival would shorten a span measured from it).
                assert len(times) == 10
                assert times[9] >= 0.45
            # The bursts and the buckets' own pace, on the proxy's own admissions (its request
            # log) rather than on arrivals, which a loaded machine delays and bunches: each
            # bucket admits its burst of 5 without a wait, so 10 go at once (one shared bucket:
            # 5, and one more per 100 ms of the asks' span); the last of the 20 goes 0.5 s
            # after the first ask, or at once if asked later than that (one shared bucket:
            # 1.5 s).
            logged = [r for r in await all_logged(proxy, 20) if r.operation == "GetObject"]
            asked = sorted(r.asked for r in logged)
            asks_span = asked[-1] - asked[0]
            assert sum(1 for r in logged if r.waited == 0) >= 10
            last = max(r.admitted for r in logged)
            assert last - asked[0] <= max(0.5, asks_span) + 0.05, (asked, last)


async def test_client_gone_while_waiting_frees_its_place(tmp_path: Path, fake_aws: FakeAws) -> None:
    limits = [
        {"name": "d", "service": "ec2", "operations": ["DescribeInstances"], "rate": 1, "burst": 1}
    ]
    with proxy_process(tmp_path, config(fake_aws, limits, max_wait="10s", max_queue=1)) as proxy:
        async with aiohttp.ClientSession() as session:
            assert (await ec2(session, proxy, "DescribeInstances"))[0] == 200
            waiter = asyncio.create_task(ec2(session, proxy, "DescribeInstances"))
            depth = 'throttle_proxy_ratelimit_queue_depth{rule="d"}'
            for _ in range(100):  # bounded: until it is queued (the only place)
                if await metric(session, proxy, depth) == 1:
                    break
                await asyncio.sleep(0.02)
            assert await metric(session, proxy, depth) == 1
            status, headers, _ = await ec2(session, proxy, "DescribeInstances")
            assert (status, headers["x-throttle-proxy-error"]) == (503, "rate-limited")
            waiter.cancel()  # the client hangs up
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with aiohttp.ClientSession() as session:
            for _ in range(50):  # bounded: the proxy notices the hang-up promptly
                if await metric(session, proxy, depth) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await metric(session, proxy, depth) == 0
            status, _, _ = await ec2(session, proxy, "DescribeInstances")
            assert status == 200  # the freed place (and slot) went to this request
            assert len(arrivals(fake_aws, "DescribeInstances")) == 2


async def test_sighup_reload_applies_a_new_rate_at_once(tmp_path: Path, fake_aws: FakeAws) -> None:
    rule = {"name": "d", "service": "ec2", "operations": ["DescribeInstances"], "burst": 1}
    with proxy_process(
        tmp_path, config(fake_aws, [{**rule, "rate": 0.5}], max_wait="100ms")
    ) as proxy:
        async with aiohttp.ClientSession() as session:
            assert (await ec2(session, proxy, "DescribeInstances"))[0] == 200
            assert (await ec2(session, proxy, "DescribeInstances"))[0] == 503
            full = yaml.safe_load(proxy.config_path.read_text())
            full["limits"] = [{**rule, "rate": 1000}]
            proxy.config_path.write_text(yaml.safe_dump(full))
            proxy.signal(signal.SIGHUP)
            rate = 'throttle_proxy_ratelimit_rate{rule="d"}'
            for _ in range(50):
                if await metric(session, proxy, rate) == 1000:
                    break
                await asyncio.sleep(0.05)
            statuses = [(await ec2(session, proxy, "DescribeInstances"))[0] for _ in range(5)]
            assert statuses == [200] * 5


async def test_adaptive_rule_slows_down_when_aws_throttles(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    upstream.script("throttled", error(503, "RequestLimitExceeded", "ec2"))
    rule = {"name": "a", "service": "ec2", "operations": ["DescribeInstances"], "adaptive": True}
    async with upstream.running() as url:
        cfg = {
            "routes": [{"host": EC2, "upstream": url}],
            "limits": [{**rule, "rate": 100, "burst": 100}],
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp_path, cfg) as proxy:
            async with aiohttp.ClientSession() as session:
                target = f"{proxy.url}/?Action=DescribeInstances&Version=2016-11-15"
                rate = 'throttle_proxy_ratelimit_rate{rule="a"}'
                assert await metric(session, proxy, rate) == 100
                headers = {"Host": EC2, "x-test-script": "throttled"}
                async with session.get(target, headers=headers) as answer:
                    assert answer.status == 503
                    assert "x-throttle-proxy-error" not in answer.headers  # AWS's own answer
                assert await metric(session, proxy, rate) == pytest.approx(70)
                await asyncio.sleep(1.0)
                async with session.get(target, headers={"Host": EC2}) as answer:
                    assert answer.status == 200
                grown = await metric(session, proxy, rate)
                assert 70 < grown <= 100
