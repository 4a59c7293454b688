"""The in-process limiter with a fake clock: decisions, several rules, queue, shadow, reload."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from proxy.aws.operations import Operation
from proxy.config.model import LimitPolicy, LimitRule
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit import LocalRateLimiter
from tests.fakes.clock import FakeClock

DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2")
RUN = Operation("ec2", "RunInstances", protocol="ec2")
SQS = Operation("sqs", "SendMessage", protocol="json")


class AdvancingSleep:
    """Sleeps by moving the fake clock: fine while requests run one after another."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


class GatedSleep:
    """Sleeps until the test opens the gate: to look at requests while they wait."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await self.gate.wait()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"throttle_proxy_{name}", labels)
    return 0.0 if value is None else value


def make(
    rules: list[LimitRule],
    policy: LimitPolicy | None = None,
    sleep: AdvancingSleep | GatedSleep | None = None,
) -> tuple[LocalRateLimiter, FakeClock, Metrics]:
    clock, metrics = FakeClock(), Metrics()
    limiter = LocalRateLimiter(
        rules,
        policy or LimitPolicy(max_wait=5.0, max_queue=100),
        metrics,
        clock,
        sleep=sleep or AdvancingSleep(clock),
    )
    return limiter, clock, metrics


async def test_uncovered_request_is_free_and_starts_nothing() -> None:
    limiter, _, _ = make([LimitRule("r", "ec2", 1, 1, ("DescribeInstances",))])
    before = len(asyncio.all_tasks())
    assert await limiter.acquire(SQS) == 0.0
    assert await limiter.acquire(RUN) == 0.0
    assert len(asyncio.all_tasks()) == before
    await limiter.close()


async def test_burst_then_waits_at_the_rate_then_refuses_past_max_wait() -> None:
    clock = FakeClock()
    sleep = AdvancingSleep(clock)
    metrics = Metrics()
    limiter = LocalRateLimiter(
        [LimitRule("d", "ec2", rate=10, burst=3, operations=("DescribeInstances",))],
        LimitPolicy(max_wait=0.25, max_queue=100),
        metrics,
        clock,
        sleep=sleep,
    )
    waits = [await limiter.acquire(DESCRIBE) for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    # The bucket is empty; each further request waits one interval (the sleep moves time).
    assert await limiter.acquire(DESCRIBE) == pytest.approx(0.1)
    # Fill the queue ahead without sleeping: three grants in a row at the same moment.
    limiter._sleep = GatedSleep()
    waiters = [asyncio.create_task(limiter.acquire(DESCRIBE)) for _ in range(2)]
    await asyncio.sleep(0)
    assert limiter._sleep.calls == pytest.approx([0.1, 0.2])
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(DESCRIBE)  # would wait 0.3 s > max_wait 0.25 s
    assert refused.value.rule == "d"
    assert refused.value.retry_after == pytest.approx(0.1)
    assert sample(metrics, "ratelimit_decisions_total", rule="d", decision="allowed") == 3
    assert sample(metrics, "ratelimit_decisions_total", rule="d", decision="delayed") == 3
    assert sample(metrics, "ratelimit_decisions_total", rule="d", decision="rejected") == 1
    assert sample(metrics, "ratelimit_queue_depth", rule="d") == 2
    limiter._sleep.gate.set()
    await asyncio.gather(*waiters)
    assert sample(metrics, "ratelimit_queue_depth", rule="d") == 0
    assert sample(metrics, "ratelimit_wait_seconds_count", rule="d") == 6
    await limiter.close()


async def test_a_refused_request_charges_no_rule() -> None:
    loose = LimitRule("loose", "ec2", rate=100, burst=100)
    tight = LimitRule("tight", "ec2", rate=1, burst=1, operations=("RunInstances",))
    limiter, _, metrics = make([loose, tight], LimitPolicy(max_wait=0.5, max_queue=100))
    assert await limiter.acquire(RUN) == 0.0
    for _ in range(3):
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire(RUN)
        assert refused.value.rule == "tight"
    # Only the one admitted RunInstances drew from the loose bucket: 99 left at once.
    waits = [await limiter.acquire(DESCRIBE) for _ in range(99)]
    assert waits == [0.0] * 99
    assert sample(metrics, "ratelimit_decisions_total", rule="loose", decision="rejected") == 0
    assert sample(metrics, "ratelimit_decisions_total", rule="tight", decision="rejected") == 3
    await limiter.close()


async def test_several_rules_wait_for_the_slowest_and_charge_all_at_that_time() -> None:
    loose = LimitRule("loose", "ec2", rate=10, burst=1)
    tight = LimitRule("tight", "ec2", rate=1, burst=1, operations=("RunInstances",))
    sleep = GatedSleep()
    limiter, clock, _ = make([loose, tight], sleep=sleep)
    assert await limiter.acquire(RUN) == 0.0
    second = asyncio.create_task(limiter.acquire(RUN))
    await asyncio.sleep(0)
    assert sleep.calls == pytest.approx([1.0])  # the tight rule decides
    clock.advance(0.95)
    # A DescribeInstances (loose only) comes after the RunInstances admitted at 1.0: it
    # queues behind it instead of sharing the loose bucket's moment.
    third = asyncio.create_task(limiter.acquire(DESCRIBE))
    await asyncio.sleep(0)
    assert sleep.calls[1] == pytest.approx(0.15)
    sleep.gate.set()
    assert await second == pytest.approx(1.0)
    assert await third == pytest.approx(0.15)
    await limiter.close()


async def test_full_queue_refuses_what_would_wait_but_not_what_goes_at_once() -> None:
    sleep = GatedSleep()
    rule = LimitRule("d", "ec2", rate=10, burst=2, operations=("DescribeInstances",))
    limiter, _, metrics = make([rule], LimitPolicy(max_wait=10, max_queue=2), sleep)
    other = LimitRule("o", "sqs", rate=10, burst=10)
    limiter.update_rules([rule, other], limiter.policy)
    assert [await limiter.acquire(DESCRIBE) for _ in range(2)] == [0.0, 0.0]
    waiters = [asyncio.create_task(limiter.acquire(DESCRIBE)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimited, match="queue full"):
        await limiter.acquire(DESCRIBE)
    assert await limiter.acquire(SQS) == 0.0  # needs no wait: a full queue does not matter
    sleep.gate.set()
    await asyncio.gather(*waiters)
    assert sample(metrics, "ratelimit_decisions_total", rule="d", decision="rejected") == 1
    await limiter.close()


async def test_cancelled_waiter_frees_its_place_and_its_slot() -> None:
    sleep = GatedSleep()
    rule = LimitRule("d", "ec2", rate=10, burst=1, operations=("DescribeInstances",))
    limiter, _, metrics = make([rule], LimitPolicy(max_wait=10, max_queue=1), sleep)
    assert await limiter.acquire(DESCRIBE) == 0.0
    waiter = asyncio.create_task(limiter.acquire(DESCRIBE))
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0
    assert sample(metrics, "ratelimit_queue_depth", rule="d") == 0
    # The queue has room again, and the next request gets the cancelled one's slot.
    nxt = asyncio.create_task(limiter.acquire(DESCRIBE))
    await asyncio.sleep(0)
    assert sleep.calls == pytest.approx([0.1, 0.1])
    sleep.gate.set()
    assert await nxt == pytest.approx(0.1)
    await limiter.close()


async def test_shadow_rule_counts_but_never_delays_or_refuses() -> None:
    rule = LimitRule("s", "ec2", rate=1, burst=1, shadow=True)
    limiter, _, metrics = make([rule], LimitPolicy(max_wait=2.0, max_queue=10))
    waits = [await limiter.acquire(DESCRIBE) for _ in range(5)]
    assert waits == [0.0] * 5
    decisions = {
        d: sample(metrics, "ratelimit_decisions_total", rule="s", decision=d)
        for d in ("shadow_allowed", "shadow_delayed", "shadow_rejected", "allowed")
    }
    # 1 at once, then would-wait 1 s and 2 s, then over max_wait twice.
    assert decisions == {
        "shadow_allowed": 1,
        "shadow_delayed": 2,
        "shadow_rejected": 2,
        "allowed": 0,
    }
    await limiter.close()


async def test_reload_keeps_buckets_of_unchanged_shape_and_applies_new_rate() -> None:
    rule = LimitRule("d", "ec2", rate=10, burst=2, operations=("DescribeInstances",))
    limiter, _, metrics = make([rule])
    await limiter.acquire(DESCRIBE)
    await limiter.acquire(DESCRIBE)
    faster = LimitRule("d", "ec2", rate=100, burst=2, operations=("DescribeInstances",))
    limiter.update_rules([faster], LimitPolicy())
    # Bucket state survived (still empty) and the new rate applies at once.
    assert await limiter.acquire(DESCRIBE) == pytest.approx(0.01)
    assert sample(metrics, "ratelimit_rate", rule="d") == 100
    reshaped = LimitRule("d", "ec2", rate=100, burst=2, operations=("DescribeVpcs",))
    limiter.update_rules([reshaped, LimitRule("x", "ec2", 5, 5)], LimitPolicy())
    assert await limiter.acquire(Operation("ec2", "DescribeVpcs")) == 0.0
    limiter.update_rules([LimitRule("x", "ec2", 5, 5)], LimitPolicy())
    assert metrics.registry.get_sample_value("throttle_proxy_ratelimit_rate", {"rule": "d"}) is None
    await limiter.close()


async def admitted_now(limiter: LocalRateLimiter, op: Operation, count: int) -> int:
    """How many of `count` requests at this instant go at once (max_wait 0)."""
    admitted = 0
    for _ in range(count):
        try:
            await limiter.acquire(op)
        except RateLimited:
            continue
        admitted += 1
    return admitted


NO_WAIT = LimitPolicy(max_wait=0.0, max_queue=100)


async def test_shrinking_a_rule_leaves_no_debt() -> None:
    """The operator's incident case: 20 spent of 1000, then tightened to 1/s burst 1."""
    wide = LimitRule("d", "ec2", rate=1000, burst=1000, operations=("DescribeInstances",))
    limiter, clock, _ = make([wide], NO_WAIT)
    assert await admitted_now(limiter, DESCRIBE, 20) == 20
    tight = LimitRule("d", "ec2", rate=1, burst=1, operations=("DescribeInstances",))
    limiter.update_rules([tight], NO_WAIT)
    # The bucket had room for 980 > 1: it holds the new burst, and the next request goes.
    assert await admitted_now(limiter, DESCRIBE, 3) == 1
    clock.advance(1.0)
    assert await admitted_now(limiter, DESCRIBE, 3) == 1  # then 1/s, never more
    await limiter.close()


async def test_shrinking_keeps_what_was_already_spent_below_the_new_burst() -> None:
    rule = LimitRule("d", "ec2", rate=1, burst=10, operations=("DescribeInstances",))
    limiter, _, _ = make([rule], NO_WAIT)
    assert await admitted_now(limiter, DESCRIBE, 8) == 8  # 2 tokens left
    smaller = LimitRule("d", "ec2", rate=1, burst=5, operations=("DescribeInstances",))
    limiter.update_rules([smaller], NO_WAIT)
    assert await admitted_now(limiter, DESCRIBE, 5) == 2  # level 2, capped at 5: still 2
    await limiter.close()


async def test_growing_a_rule_gives_no_credit_from_nothing() -> None:
    rule = LimitRule("d", "ec2", rate=1, burst=2, operations=("DescribeInstances",))
    limiter, clock, _ = make([rule], NO_WAIT)
    assert await admitted_now(limiter, DESCRIBE, 2) == 2  # empty
    bigger = LimitRule("d", "ec2", rate=10, burst=100, operations=("DescribeInstances",))
    limiter.update_rules([bigger], NO_WAIT)
    assert await admitted_now(limiter, DESCRIBE, 5) == 0  # still empty: no credit
    clock.advance(0.5)
    assert await admitted_now(limiter, DESCRIBE, 10) == 5  # refills at the new rate
    # A budget never used (full at burst 2) holds 2, not 100, right after the growth.
    other_region = DESCRIBE.for_budget("", "eu-west-1")
    limiter.update_rules([rule], NO_WAIT)
    limiter.update_rules([bigger], NO_WAIT)
    assert await admitted_now(limiter, other_region, 10) == 2
    await limiter.close()


async def test_each_region_and_account_has_its_own_budget() -> None:
    rule = LimitRule("d", "ec2", rate=1, burst=5, operations=("DescribeInstances",))
    limiter, _, _ = make([rule], NO_WAIT)
    east = DESCRIBE.for_budget("111122223333", "us-east-1")
    west = DESCRIBE.for_budget("111122223333", "eu-west-1")
    other = DESCRIBE.for_budget("444455556666", "us-east-1")
    assert [await admitted_now(limiter, op, 8) for op in (east, west, other, east)] == [5, 5, 5, 0]
    regional = LimitRule("r", "ec2", rate=1, burst=5, scope="region")
    limiter.update_rules([regional], NO_WAIT)
    # One budget per region, whatever the account.
    assert [await admitted_now(limiter, op, 8) for op in (east, other, west)] == [5, 0, 5]
    await limiter.close()


async def test_adaptive_rule_slows_on_throttles_and_grows_back() -> None:
    rule = LimitRule("a", "ec2", rate=100, burst=10, adaptive=True)
    limiter, clock, metrics = make([rule])
    limiter.observe_success(DESCRIBE)
    assert sample(metrics, "ratelimit_rate", rule="a") == 100
    limiter.observe_throttle(DESCRIBE)
    assert sample(metrics, "ratelimit_rate", rule="a") == pytest.approx(70)
    limiter.observe_throttle(DESCRIBE)  # same moment: one cut per cooldown
    assert sample(metrics, "ratelimit_rate", rule="a") == pytest.approx(70)
    clock.advance(2.0)
    limiter.observe_success(DESCRIBE)
    grown = sample(metrics, "ratelimit_rate", rule="a")
    assert 70 < grown < 100
    clock.advance(60.0)
    limiter.observe_success(DESCRIBE)
    assert sample(metrics, "ratelimit_rate", rule="a") == 100  # capped by the configured rate
    limiter.observe_throttle(SQS)  # no adaptive rule covers it: nothing happens
    await limiter.close()


async def test_idle_prefix_state_is_forgotten() -> None:
    rule = LimitRule("p", "s3", rate=5500, burst=5500, per="prefix")
    limiter, clock, _ = make([rule])
    state = limiter.rules.states[0]
    for i in range(20_000):
        op = Operation("s3", "GetObject", bucket="b", key=f"p{i}/x", protocol="rest-xml")
        await limiter.acquire(op)
    assert len(state.buckets) == 20_000
    clock.advance(1.0)
    assert limiter.sweep_idle() == 20_000
    assert len(state.buckets) == 0
    gc.collect()
    assert sys.getsizeof(state.buckets._tats) < 10_000
    await limiter.close()


async def test_background_sweeper_runs_on_its_own() -> None:
    rule = LimitRule("p", "s3", rate=5500, burst=5500, per="prefix")
    limiter, clock, _ = make([rule], LimitPolicy(idle_expiry=0.01))
    for i in range(50):
        await limiter.acquire(Operation("s3", "GetObject", bucket="b", key=f"p{i}/x"))
    clock.advance(1.0)
    for _ in range(100):  # bounded: the sweeper wakes every 50 ms
        if not len(limiter.rules.states[0].buckets):
            break
        await asyncio.sleep(0.01)
    assert len(limiter.rules.states[0].buckets) == 0
    await limiter.close()


# --- rules that charge by resources (EC2's resource token buckets) --------------------------

TERMINATE_3 = Operation("ec2", "TerminateInstances", protocol="ec2", resources=3)
TERMINATE_1 = Operation("ec2", "TerminateInstances", protocol="ec2", resources=1)


def resource_rule(rate: float = 1.0, burst: float = 5.0) -> LimitRule:
    return LimitRule(
        "terminate-resources", "ec2", rate, burst, ("TerminateInstances",), cost="resources"
    )


async def test_a_resource_rule_charges_one_token_per_resource() -> None:
    clock = FakeClock()
    sleep = AdvancingSleep(clock)
    metrics = Metrics()
    limiter = LocalRateLimiter(
        [resource_rule(rate=2, burst=5)],
        LimitPolicy(max_wait=5, max_queue=100),
        metrics,
        clock,
        sleep=sleep,
    )
    # 5 tokens: the first call takes 3 at once, the second needs 3 with 2 left, so it waits
    # for one token to refill (0.5 s at 2/s) and then empties the bucket.
    assert await limiter.acquire(TERMINATE_3) == 0.0
    assert await limiter.acquire(TERMINATE_3) == pytest.approx(0.5)
    # Now empty: one instance waits one interval, as a request would.
    assert await limiter.acquire(TERMINATE_1) == pytest.approx(0.5)
    # A decision is still counted once per request, not per token.
    assert (
        sample(metrics, "ratelimit_decisions_total", rule="terminate-resources", decision="allowed")
        == 1
    )
    assert (
        sample(metrics, "ratelimit_decisions_total", rule="terminate-resources", decision="delayed")
        == 2
    )
    assert sample(metrics, "ratelimit_wait_seconds_count", rule="terminate-resources") == 3
    await limiter.close()


async def test_a_request_rule_still_charges_one_token_whatever_the_resources() -> None:
    per_request = LimitRule("terminate", "ec2", 1, 2, ("TerminateInstances",))
    limiter, _, _ = make([per_request], LimitPolicy(max_wait=0.0, max_queue=100))
    assert [await limiter.acquire(TERMINATE_3) for _ in range(2)] == [0.0, 0.0]
    with pytest.raises(RateLimited):
        await limiter.acquire(TERMINATE_3)
    await limiter.close()


async def test_resources_are_charged_atomically_across_all_rules() -> None:
    requests = LimitRule("terminate", "ec2", 1, 10, ("TerminateInstances",))
    resources = resource_rule(rate=1, burst=5)
    limiter, _, metrics = make([requests, resources], LimitPolicy(max_wait=0.0, max_queue=100))
    assert await limiter.acquire(TERMINATE_3) == 0.0
    # 2 instance tokens left: 3 more is refused by the resource rule and charges neither.
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(TERMINATE_3)
    assert refused.value.rule == "terminate-resources"
    assert sample(metrics, "ratelimit_decisions_total", rule="terminate", decision="rejected") == 0
    # The request rule was not charged by the refusal: 9 request tokens, 2 instance tokens.
    assert [await limiter.acquire(TERMINATE_1) for _ in range(2)] == [0.0, 0.0]
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(TERMINATE_1)
    assert refused.value.rule == "terminate-resources"
    await limiter.close()


async def test_more_resources_than_the_burst_is_refused_at_once_never_queued() -> None:
    sleep = GatedSleep()
    # max_wait would let a 6-token call wait for its one missing token: it must not.
    limiter, _, metrics = make(
        [resource_rule(rate=100, burst=5)], LimitPolicy(max_wait=60, max_queue=100), sleep
    )
    huge = Operation("ec2", "TerminateInstances", protocol="ec2", resources=6)
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(huge)
    assert refused.value.rule == "terminate-resources"
    assert str(refused.value) == (
        "client-side rate limit 'terminate-resources' exceeded: the request needs 6 tokens, "
        "more than the bucket holds (5)"
    )
    assert sleep.calls == []
    assert limiter.waiting == 0
    assert (
        sample(
            metrics, "ratelimit_decisions_total", rule="terminate-resources", decision="rejected"
        )
        == 1
    )
    # Nothing was charged: a full burst still goes at once.
    five = Operation("ec2", "TerminateInstances", protocol="ec2", resources=5)
    assert await limiter.acquire(five) == 0.0
    await limiter.close()


async def test_a_cancelled_resource_waiter_gives_back_all_its_tokens() -> None:
    sleep = GatedSleep()
    limiter, clock, _ = make(
        [resource_rule(rate=1, burst=5)], LimitPolicy(max_wait=10, max_queue=100), sleep
    )
    assert await limiter.acquire(TERMINATE_3) == 0.0
    waiter = asyncio.create_task(limiter.acquire(TERMINATE_3))
    await asyncio.sleep(0)
    assert sleep.calls == pytest.approx([1.0])
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # All 3 tokens came back: 2 are left now, as before the waiter.
    limiter._sleep = AdvancingSleep(clock)  # a wait would show as a wait, not a hang
    two = Operation("ec2", "TerminateInstances", protocol="ec2", resources=2)
    assert await limiter.acquire(two) == 0.0
    await limiter.close()


async def test_changing_cost_on_reload_is_a_new_bucket() -> None:
    limiter, _, _ = make([resource_rule(rate=1, burst=5)], LimitPolicy(max_wait=0.0, max_queue=100))
    five = Operation("ec2", "TerminateInstances", protocol="ec2", resources=5)
    assert await limiter.acquire(five) == 0.0
    per_request = LimitRule("terminate-resources", "ec2", 1, 5, ("TerminateInstances",))
    limiter.update_rules([per_request], LimitPolicy(max_wait=0.0, max_queue=100))
    # A different shape: a fresh bucket of 5 requests, not the spent one of 5 instances.
    assert [await limiter.acquire(five) for _ in range(5)] == [0.0] * 5
    await limiter.close()


async def test_shadow_resource_rule_counts_an_oversized_request_as_shadow_rejected() -> None:
    shadow = LimitRule("s", "ec2", 1, 2, ("TerminateInstances",), shadow=True, cost="resources")
    limiter, _, metrics = make([shadow])
    assert await limiter.acquire(TERMINATE_3) == 0.0
    assert await limiter.acquire(TERMINATE_1) == 0.0
    assert sample(metrics, "ratelimit_decisions_total", rule="s", decision="shadow_rejected") == 1
    assert sample(metrics, "ratelimit_decisions_total", rule="s", decision="shadow_allowed") == 1
    await limiter.close()


def test_coverage_is_worked_out_once_per_known_operation_and_never_for_made_up_names() -> None:
    rules = [
        LimitRule("describes", "ec2", 1, 5, ("Describe*",)),
        LimitRule("unfiltered", "ec2", 1, 5, ("DescribeInstances",), unfiltered=True),
        LimitRule("watch", "ec2", 1, 5, shadow=True),
        LimitRule("sqs", "sqs", 1, 5),
    ]
    limiter, _, _ = make(rules)
    ruleset = limiter.rules
    unfiltered = Operation("ec2", "DescribeInstances", protocol="ec2", unfiltered=True)
    first = ruleset.coverage(unfiltered)
    assert [s.name for s in first.rules] == ["describes", "unfiltered", "watch"]
    assert [s.name for s in first.enforcing] == ["describes", "unfiltered"]
    assert [s.name for s in first.shadows] == ["watch"]
    # The same kind of operation (any account, region) gets the same entry; the flag counts.
    assert ruleset.coverage(unfiltered.for_budget("111122223333", "eu-west-1")) is first
    assert [s.name for s in ruleset.coverage(DESCRIBE).rules] == ["describes", "watch"]
    assert ruleset.matching(RUN) == tuple(s for s in ruleset.states if s.name == "watch")
    assert ruleset.coverage(Operation("s3", "GetObject")).rules == ()
    # Names a client makes up are matched every time and never kept: the memo stays bounded.
    kept = len(ruleset._memo)
    for n in range(100):
        made_up = Operation("ec2", f"DescribeMadeUp{n}", protocol="ec2")
        assert [s.name for s in ruleset.coverage(made_up).rules] == ["describes", "watch"]
    assert len(ruleset._memo) == kept
    # A reload builds a new ruleset: nothing worked out for the old rules carries over.
    limiter.update_rules([LimitRule("describes", "ec2", 1, 5, ("Run*",))], LimitPolicy())
    assert [s.name for s in limiter.rules.coverage(unfiltered).rules] == []
    assert [s.name for s in limiter.rules.coverage(RUN).rules] == ["describes"]
