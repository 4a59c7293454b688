"""Forgetting idle buckets never changes a decision: a bound prefix hammered while a client
sprays distinct prefixes (which evicts buckets on every touch), sweeps run and the rules are
reloaded gets exactly the admissions of a bucket that is never forgotten."""

from __future__ import annotations

import bisect
import random

import pytest

from proxy.aws.operations import Operation
from proxy.config.model import LimitPolicy, LimitRule
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit import LocalRateLimiter
from tests.fakes.clock import FakeClock

# Powers of two, and clock steps of 1/64 s: the limiter's token clock and the model's seconds
# are then exact, so the two must agree to the last admission.
RATE, BURST = 32.0, 8.0
RULE = LimitRule(
    "reads", "s3", RATE, BURST, operations=("GetObject",), per="prefix", prefix_depth=1
)


def get(prefix: str) -> Operation:
    return Operation("s3", "GetObject", protocol="rest-xml", bucket="b", key=f"{prefix}/o")


class NeverForgets:
    """GCRA in seconds with every bucket kept for ever: what the limiter must decide."""

    def __init__(self) -> None:
        self.tats: dict[str, float] = {}

    def admits(self, key: str, now: float) -> bool:
        tat = max(self.tats.get(key, now), now)
        if tat + 1 / RATE - BURST / RATE > now + 1e-6:
            return False
        self.tats[key] = tat + 1 / RATE
        return True


@pytest.mark.parametrize("seed", range(3))
async def test_eviction_and_sweeps_never_change_a_bound_prefixs_admissions(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    limiter = LocalRateLimiter([RULE], LimitPolicy(max_wait=0.0), Metrics(), clock)
    model = NeverForgets()
    start = clock.monotonic()
    hot_admitted: list[float] = []
    fresh = hot_refused = 0
    try:
        for _ in range(3000):
            clock.advance(rng.choice((0, 0, 0, 0, 1, 1, 2, 8)) / 64)
            now = clock.monotonic() - start
            roll = rng.random()
            if roll < 0.03:
                limiter.sweep_idle()
                continue
            if roll < 0.04:
                limiter.update_rules([RULE], limiter.policy)  # same shape: buckets kept
                continue
            if roll < 0.5:  # the hot prefix hammered past its rate, or a few warm ones
                prefixes = ["hot"] * rng.randint(1, 12) + [f"warm{rng.randrange(5)}"]
            else:  # a storm of new prefixes: the hot bucket, in debt, becomes the oldest
                prefixes = [f"spray{fresh + n}" for n in range(rng.randint(1, 40))]
                fresh += len(prefixes)
            for prefix in prefixes:
                try:
                    await limiter.acquire(get(prefix))
                    admitted = True
                except RateLimited:
                    admitted = False
                assert admitted == model.admits(prefix, now), (prefix, now)
                if prefix == "hot":
                    if admitted:
                        hot_admitted.append(now)
                    else:
                        hot_refused += 1
        assert hot_refused > 100  # the hot prefix was bound, not idle
        assert len(limiter.rules.states[0].buckets) < fresh // 10  # and eviction ran
        for window in (0.0, 0.25, 1.0, 4.0):
            most = max(
                bisect.bisect_right(hot_admitted, first + window) - index
                for index, first in enumerate(hot_admitted)
            )
            assert most <= BURST + RATE * window, window
    finally:
        await limiter.close()
