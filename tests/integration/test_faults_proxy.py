"""Fault rules through the real proxy: a ProxyServer on loopback in front of the scripted fake.

Injected answers are parsed by botocore as the service's own errors, never reach the fake
upstream, and the retry loop, quota and metrics treat them as AWS's answers (`at: upstream`)
or never see them (`at: client`).
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from tests.integration.fault_rig import FAULT_HEADER, THROTTLE_30, Rig, botocore_error_code, rig
from tests.servers import EXAMPLE_KEY_ID, EXAMPLE_SECRET, clean_env

NO_RETRIES = {"max_attempts": 1}
FAST_RETRIES = {
    "max_attempts": 3,
    "base_delay": "1ms",
    "throttle_base_delay": "2ms",
    "max_backoff": "5ms",
    "quota": 100_000,
}


async def throttled_sequence(count: int) -> tuple[list[bool], Rig]:
    async with rig({"faults": [THROTTLE_30], "fault_seed": 42, "retry": NO_RETRIES}) as r:
        sequence = []
        for _ in range(count):
            answer = await r.put_item()
            injected = FAULT_HEADER in answer.headers
            if injected:
                assert answer.status == 400
                assert answer.headers[FAULT_HEADER] == "ddb-put-30"
                assert botocore_error_code(answer) == "ThrottlingException"
            else:
                assert answer.status == 200, answer
            sequence.append(injected)
        return sequence, r


async def test_seeded_throttle_rule_repeats_and_hits_its_share() -> None:
    first, r = await throttled_sequence(2000)
    injected = sum(first)
    assert 540 <= injected <= 660, injected  # 30% ± 3% of 2,000
    # Injected attempts never reached the upstream; the others all did.
    assert len(r.upstream.attempts) == 2000 - injected
    assert r.sample("throttle_proxy_faults_injected_total", rule="ddb-put-30", kind="throttle") == (
        injected
    )
    # The loop judged each injected answer as AWS's throttle.
    assert r.sample(
        "throttle_proxy_upstream_throttled_total",
        service="dynamodb",
        operation="PutItem",
        error_code="ThrottlingException",
    ) == float(injected)
    second, _ = await throttled_sequence(2000)
    assert second == first


async def test_retries_absorb_injected_throttles() -> None:
    async with rig({"faults": [THROTTLE_30], "fault_seed": 7, "retry": FAST_RETRIES}) as r:
        answers = [await r.put_item() for _ in range(300)]
    errors = sum(1 for a in answers if a.status != 200)
    injected = r.sample("throttle_proxy_faults_injected_total", rule="ddb-put-30", kind="throttle")
    retries = r.sample("throttle_proxy_retries_total", service="dynamodb", reason="throttling")
    assert injected > 60  # about 30% of 300 first attempts, plus the retries' own draws
    assert errors < 0.3 * 300 / 4  # three attempts: about 0.3^3 of requests still fail
    # Every injected throttle was retried, except the ones that were a request's last attempt.
    assert retries == injected - errors
    assert len(r.upstream.attempts) == 300 - errors


async def test_at_client_answers_the_app_and_bypasses_the_loop() -> None:
    rule = {"name": "ec2-client", "service": "ec2", "kind": "throttle", "at": "client"}
    async with rig({"faults": [rule], "retry": FAST_RETRIES}) as r:
        answer = await r.describe_instances()
    assert answer.status == 503
    assert b"<Code>RequestLimitExceeded</Code>" in answer.body
    assert answer.headers[FAULT_HEADER] == "ec2-client"
    assert "x-throttle-proxy-attempts" not in answer.headers
    assert r.upstream.attempts == []
    assert r.sample("throttle_proxy_retries_total", service="ec2", reason="throttling") == 0
    assert r.sample("throttle_proxy_faults_injected_total", rule="ec2-client", kind="throttle") == 1


async def test_latency_rule_delays_the_call_within_its_jitter() -> None:
    rule = {"name": "slow", "service": "ec2", "kind": "latency", "latency": "150ms"}
    rule["jitter"] = "100ms"
    async with rig({"faults": [rule]}) as r:
        elapsed = []
        for _ in range(5):
            started = time.perf_counter()
            answer = await r.describe_instances()
            elapsed.append(time.perf_counter() - started)
            assert answer.status == 200  # latency goes on to the call
    assert len(r.upstream.attempts) == 5
    assert min(elapsed) >= 0.150
    # Jitter adds at most 100 ms; the generous slack only guards against a wedged proxy.
    assert sum(elapsed) / len(elapsed) < 0.250 + 0.5


async def test_internal_and_error_kinds_are_retried_as_5xx() -> None:
    rules = [
        {"name": "boom", "service": "ec2", "kind": "internal", "every": 2},
        {"name": "teapot", "service": "dynamodb", "kind": "error", "status": 418, "code": "Tea"},
    ]
    async with rig({"faults": rules, "retry": FAST_RETRIES}) as r:
        ec2 = await r.describe_instances()  # attempt 1 goes, attempt 2 would be injected
        ec2_again = await r.describe_instances()
        ddb = await r.put_item()
    assert ec2.status == 200
    assert ec2_again.status == 200
    assert ec2_again.headers["x-throttle-proxy-attempts"] == "2"
    assert r.sample("throttle_proxy_retries_total", service="ec2", reason="transient") == 1
    assert ddb.status == 418
    assert botocore_error_code(ddb) == "Tea"
    assert ddb.headers["x-throttle-proxy-attempts"] == "1"  # 418 is final: no retry


async def test_reset_and_timeout_are_the_usual_upstream_failures() -> None:
    rules = [
        {"name": "cut", "service": "ec2", "kind": "reset"},
        {"name": "hang", "service": "dynamodb", "kind": "timeout"},
    ]
    # A short read timeout: the injected silence lasts that long, three times.
    short = {"connect_timeout": "1s", "read_timeout": "300ms"}
    async with rig({"faults": rules, "retry": FAST_RETRIES, "upstream": short}) as r:
        reset = await r.describe_instances()
        timeout = await r.put_item()
    assert reset.status == 502
    assert reset.headers["x-throttle-proxy-error"] == "upstream-unavailable"
    assert reset.headers["x-throttle-proxy-attempts"] == "3"
    assert r.sample("throttle_proxy_retries_total", service="ec2", reason="connection") == 2
    assert timeout.status == 504
    assert timeout.headers["x-throttle-proxy-error"] == "upstream-timeout"
    assert r.sample("throttle_proxy_retries_total", service="dynamodb", reason="timeout") == 2
    assert r.upstream.attempts == []
    assert r.sample("throttle_proxy_faults_injected_total", rule="hang", kind="timeout") == 3


async def test_reset_at_client_cuts_the_apps_connection() -> None:
    rule = {"name": "cut-app", "service": "ec2", "kind": "reset", "at": "client"}
    async with rig({"faults": [rule], "retry": FAST_RETRIES}) as r:
        try:
            await r.describe_instances()
        except aiohttp.ClientConnectionError:
            cut = True
        else:
            cut = False
        assert cut, "the app's connection must be cut, not answered"
        assert r.upstream.attempts == []
        assert r.sample("throttle_proxy_faults_injected_total", rule="cut-app", kind="reset") == 1
        ok = await r.put_item()  # the proxy keeps serving everyone else
    assert ok.status == 200


async def test_identity_narrows_a_rule_to_the_routes_that_sign_as_it(tmp_path: Path) -> None:
    # A route of its own identity (a profile of the shared credentials file) beside the
    # top-level one: a rule naming that identity fires on its route only.
    (tmp_path / "credentials").write_text(
        f"[batch]\naws_access_key_id = {EXAMPLE_KEY_ID}\naws_secret_access_key = {EXAMPLE_SECRET}\n"
    )
    batch_host = "dynamodb.eu-west-1.amazonaws.com"
    rule = {"name": "batch-only", "service": "dynamodb", "identity": "batch", "every": 1}
    async with rig(
        {"faults": [{**rule, "kind": "throttle"}], "retry": {"max_attempts": 1}},
        identity_routes={batch_host: {"name": "batch", "profile": "batch"}},
        env=clean_env(tmp_path),
    ) as r:
        mine = await r.put_item()
        batch = await r.put_item(batch_host)
    assert (mine.status, FAULT_HEADER in mine.headers) == (200, False)
    assert (batch.status, batch.headers.get(FAULT_HEADER)) == (400, "batch-only")
    assert botocore_error_code(batch) == "ThrottlingException"
    assert len(r.upstream.attempts) == 1  # the injected answer never reached the fake
