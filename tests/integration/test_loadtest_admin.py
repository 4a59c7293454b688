"""The admin listener's load-test endpoints: fault rules at run time and the run report.

Rules PUT at run time act on the very next request and DELETE takes them out; bad bodies get
the config parser's own message; changing calls need the bearer token when one is set. The
report's counts are the metrics' counts, and `throttle-proxy report` prints them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import make_mocked_request

from proxy.app.admin_api import LoadTestApi
from proxy.clock import SystemClock
from proxy.faults.stage import FaultInjector
from proxy.observability.metrics import Metrics
from proxy.report.recorder import RunRecorder
from tests.integration.fault_rig import FAULT_HEADER, THROTTLE_30, Rig, rig
from tests.servers import credential_env, run_cli

FAST_RETRIES = {
    "max_attempts": 3,
    "base_delay": "1ms",
    "throttle_base_delay": "2ms",
    "max_backoff": "5ms",
    "quota": 100_000,
}


async def admin(
    r: Rig, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
    async with r.session.request(
        method, f"{r.admin_url}{path}", data=data, headers=headers
    ) as answer:
        return answer.status, await answer.json()


async def test_rules_put_at_run_time_act_on_the_next_request_and_delete_removes_them() -> None:
    async with rig({"retry": {"max_attempts": 1}}) as r:
        assert (await r.put_item()).status == 200
        status, body = await admin(r, "PUT", "/faults", [{**THROTTLE_30, "probability": 1.0}])
        assert status == 200
        assert [rule["name"] for rule in body["faults"]] == ["ddb-put-30"]
        injected = await r.put_item()
        assert injected.status == 400
        assert injected.headers[FAULT_HEADER] == "ddb-put-30"
        status, body = await admin(r, "GET", "/faults")
        assert (body["faults"][0]["matched"], body["faults"][0]["injected"]) == (1, 1)
        status, body = await admin(r, "DELETE", "/faults/ddb-put-30")
        assert (status, body) == (200, {"faults": []})
        assert (await r.put_item()).status == 200
        assert (await admin(r, "DELETE", "/faults/ddb-put-30"))[0] == 404
        await admin(r, "PUT", "/faults", [THROTTLE_30])
        status, body = await admin(r, "DELETE", "/faults")
        assert (status, body) == (200, {"faults": []})
        assert len(r.upstream.attempts) == 2  # the injected request never reached it


async def test_bad_rule_bodies_get_the_parsers_message_and_change_nothing() -> None:
    async with rig({"faults": [THROTTLE_30]}) as r:
        status, body = await admin(r, "PUT", "/faults", [{"name": "x", "kind": "explode"}])
        assert status == 400
        assert body == {
            "error": "PUT /faults: faults[0].kind: expected one of throttle, internal, "
            "unavailable, error, latency, reset, timeout, got 'explode'"
        }
        status, body = await admin(r, "PUT", "/faults", {"name": "x"})
        assert (status, body) == (400, {"error": "PUT /faults: faults: expected a list, got dict"})
        status, body = await admin(r, "PUT", "/faults", b"[{")
        assert status == 400
        assert body["error"].startswith("PUT /faults: not valid JSON: ")
        assert [rule["name"] for rule in (await admin(r, "GET", "/faults"))[1]["faults"]] == [
            "ddb-put-30"
        ]


async def test_changing_calls_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret-token\n")
    async with rig({"admin_token_file": str(token_file)}) as r:
        refused = "this call needs Authorization: Bearer <token from admin_token_file>"
        assert await admin(r, "PUT", "/faults", []) == (401, {"error": refused})
        assert await admin(r, "DELETE", "/faults", token="wrong") == (401, {"error": refused})
        assert await admin(r, "POST", "/report/reset") == (401, {"error": refused})
        assert (await admin(r, "PUT", "/faults", [THROTTLE_30], token="s3cret-token"))[0] == 200
        assert (await admin(r, "GET", "/faults"))[0] == 200  # reading needs no token
        assert (await admin(r, "POST", "/report/reset", token="s3cret-token"))[0] == 200


async def test_without_a_token_changes_come_only_from_loopback() -> None:
    metrics = Metrics()
    clock = SystemClock()
    api = LoadTestApi(
        FaultInjector((), None, metrics, clock), RunRecorder(clock), lambda _: 0, None
    )

    def from_peer(address: str) -> aiohttp.web.Request:
        class Transport:
            def get_extra_info(self, name: str, default: object = None) -> object:
                return (address, 40000) if name == "peername" else default

        return make_mocked_request("PUT", "/faults", transport=Transport())

    assert api._refusal(from_peer("127.0.0.1")) is None
    assert api._refusal(from_peer("::1")) is None
    assert api._refusal(from_peer("10.1.2.3")) == (
        403,
        "changes only from loopback (set admin_token_file to allow others)",
    )


def metric_sum(r: Rig, name: str, **match: str) -> float:
    total = 0.0
    for family in r.server.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return total


async def test_report_counts_equal_the_metrics_and_the_cli_prints_them(tmp_path: Path) -> None:
    config = {
        "faults": [THROTTLE_30],
        "fault_seed": 3,
        "retry": FAST_RETRIES,
        # EC2 is limited (no faults, so no retries take a second token); DynamoDB is not.
        "limits": [{"name": "ec2", "service": "ec2", "rate": 50, "burst": 5}],
        "limit_policy": {"max_wait": "60ms"},
    }
    async with rig(config) as r:
        await asyncio.gather(*(r.describe_instances() for _ in range(20)))
        for _ in range(150):
            await r.put_item()
        status, report = await admin(r, "GET", "/report")
        assert status == 200
        totals = report["totals"]
        assert totals["requests"] == 170
        assert totals["requests"] == metric_sum(r, "throttle_proxy_requests_total")
        assert totals["throttled_by_aws"] == metric_sum(
            r, "throttle_proxy_upstream_throttled_total"
        )
        assert totals["faults_injected"] == metric_sum(r, "throttle_proxy_faults_injected_total")
        assert totals["faults_injected"] > 30
        assert totals["retries"] == metric_sum(r, "throttle_proxy_retries_total")
        decisions = "throttle_proxy_ratelimit_decisions_total"
        assert totals["refused_locally"] == metric_sum(r, decisions, decision="rejected")
        assert totals["refused_locally"] > 0
        ec2 = next(op for op in report["operations"] if op["service"] == "ec2")
        assert ec2["delayed"] == metric_sum(r, decisions, decision="delayed") > 0
        assert ec2["admitted_at_once"] == metric_sum(r, decisions, decision="allowed")
        ddb = next(op for op in report["operations"] if op["operation"] == "PutItem")
        assert ddb["retry_quota_left"] == r.server.attempts.quota.available("dynamodb")
        assert 0 < ddb["latency_p50"] <= ddb["latency_p99"]
        assert ec2["wait_p99"] > 0
        assert sum(p[1] for p in report["timeline"]["points"]) == 170

        env = credential_env(tmp_path)
        code, table, err = await run_cli(env, "report", "--admin", r.admin_url)
        assert (code, err) == (0, "")
        lines = table.splitlines()
        assert lines[1].split()[:4] == ["service", "operation", "requests", "at"]
        put_row = next(line for line in lines if " PutItem " in line).split()
        assert put_row[:3] == ["dynamodb", "PutItem", "150"]
        assert lines[-1].split()[:2] == ["total", "170"]
        code, text, _ = await run_cli(env, "report", "--admin", r.admin_url, "--format", "json")
        assert json.loads(text)["totals"]["requests"] == 170

        status, fresh = await admin(r, "POST", "/report/reset")
        assert status == 200, fresh
        assert (fresh["totals"]["requests"], fresh["operations"]) == (0, []), fresh
        assert metric_sum(r, "throttle_proxy_requests_total") == 170  # metrics keep counting


async def test_report_cli_says_when_the_admin_listener_is_unreachable(tmp_path: Path) -> None:
    code, out, err = await run_cli(
        credential_env(tmp_path), "report", "--admin", "http://127.0.0.1:9"
    )
    assert (code, out) == (1, "")
    assert err.startswith("cannot read the report from http://127.0.0.1:9/report: ")
