"""GCRA arithmetic and the bucket table, with time as a plain number."""

from __future__ import annotations

import random

import pytest

from proxy.ratelimit.bucket import BucketShape, BucketTable, earliest_admission, refund, reserve

SHAPE = BucketShape(rate=10.0, burst=5.0)


def admit_all(arrivals: list[float], shape: BucketShape) -> list[float]:
    """Admission times of requests arriving at `arrivals` (sorted) on one bucket."""
    tat = arrivals[0]
    admitted = []
    for now in arrivals:
        at = earliest_admission(tat, now, shape)
        tat = reserve(tat, at, shape)
        admitted.append(at)
    return admitted


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] < t - window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_full_bucket_admits_burst_at_once_then_one_per_interval() -> None:
    admitted = admit_all([0.0] * 8, SHAPE)
    assert admitted[:5] == [0.0] * 5
    assert admitted[5:] == pytest.approx([0.1, 0.2, 0.3])


def test_refilled_bucket_is_the_same_as_a_new_one() -> None:
    tat = 0.0
    for _ in range(5):
        tat = reserve(tat, earliest_admission(tat, 0.0, SHAPE), SHAPE)
    # After burst/rate seconds the bucket is full again: tat is in the past.
    assert tat <= 0.5
    assert earliest_admission(tat, 0.5, SHAPE) == 0.5
    assert earliest_admission(0.5, 0.5, SHAPE) == earliest_admission(-100.0, 0.5, SHAPE)


def test_partial_refill_gives_back_tokens_at_the_rate() -> None:
    tat = 0.0
    for _ in range(5):
        tat = reserve(tat, 0.0, SHAPE)
    # 0.25 s later two tokens have refilled (2.5 rounded down): the 3rd waits until 0.3.
    at1 = earliest_admission(tat, 0.25, SHAPE)
    tat = reserve(tat, at1, SHAPE)
    at2 = earliest_admission(tat, 0.25, SHAPE)
    tat = reserve(tat, at2, SHAPE)
    at3 = earliest_admission(tat, 0.25, SHAPE)
    assert (at1, at2) == (0.25, 0.25)
    assert at3 == pytest.approx(0.3)


@pytest.mark.parametrize("seed", range(5))
def test_no_window_holds_more_than_burst_plus_rate_times_window(seed: int) -> None:
    rng = random.Random(seed)
    arrivals = sorted(rng.uniform(0, 5) for _ in range(400))
    admitted = admit_all(arrivals, SHAPE)
    assert all(a >= n for a, n in zip(admitted, arrivals, strict=True))
    for window in (0.0, 0.05, 0.3, 1.0, 3.0):
        assert max_in_window(admitted, window) <= SHAPE.burst + SHAPE.rate * window + 1e-6


def test_charging_at_a_later_common_time_keeps_the_window_guarantee() -> None:
    # Requests of a tight rule admitted late still charge a loose rule at their real time, so
    # requests of the loose rule alone queue behind them instead of piling up.
    loose = BucketShape(rate=10.0, burst=1.0)
    tat = reserve(0.0, 0.0, loose)
    tat = reserve(tat, 1.0, loose)  # admitted at 1.0 because another rule said so
    alone = earliest_admission(tat, 0.95, loose)
    assert alone == pytest.approx(1.1)


def test_refund_takes_back_one_interval() -> None:
    assert refund(2.0, SHAPE) == pytest.approx(1.9)


def test_table_forgets_full_buckets_on_touch_and_sweep() -> None:
    table = BucketTable()
    for i in range(100):
        table.put(f"k{i}", 1.0, now=0.0)
    assert len(table) == 100
    table.put("new", 3.0, now=2.0)  # two oldest are full by now: dropped on the way
    assert len(table) == 99
    assert table.sweep(now=2.0) == 98
    assert list(table) == ["new"]
    assert table.get("k50", 2.0) == 2.0  # a forgotten bucket reads as full


def test_sweep_respects_its_budget_and_stops_at_a_refilling_bucket() -> None:
    table = BucketTable()
    for i in range(10):
        table.put(f"k{i}", 1.0, now=0.0)
    table.put("busy", 9.0, now=0.0)
    table.put("late", 1.0, now=0.0)
    assert table.sweep(now=5.0, budget=4) == 4
    assert table.sweep(now=5.0) == 6
    assert list(table) == ["busy", "late"]


def test_take_back_only_refunds_the_latest_grant() -> None:
    table = BucketTable()
    table.put("k", 1.0, now=0.0)
    table.put("k", 1.1, now=0.0)
    assert not table.take_back("k", 1.0, SHAPE, 1.0)  # a later grant stands on it
    assert table.take_back("k", 1.1, SHAPE, 1.0)
    assert table.get("k", 0.0) == pytest.approx(1.0)
    assert not table.take_back("gone", 1.0, SHAPE, 1.0)


def test_table_rebuilds_after_shrinking_far_below_its_peak() -> None:
    table = BucketTable()
    for i in range(5000):
        table.put(f"k{i}", 1.0, now=0.0)
    old_dict = table._tats
    table.sweep(now=2.0)
    assert len(table) == 0
    assert table._tats is not old_dict  # a fresh, small dict: the big slot array is freed


def test_reshape_keeps_each_level_capped_at_the_new_burst() -> None:
    table = BucketTable()
    # Levels at now=100 under burst 10: "a" spent 8 (level 2), "b" spent 1 (level 9).
    table.put("a", 108.0, 100.0)
    table.put("b", 101.0, 100.0)
    table.reshape(-5.0, 100.0)  # burst 10 -> 5
    assert table.get("a", 100.0) == 103.0  # level 2 stays 2 (spent 3 of 5)
    assert table.get("b", 100.0) == 100.0  # level 9 capped at 5: full, no debt
    assert table.get("new", 100.0) == 100.0
    table.reshape(+5.0, 100.0)  # back to 10
    assert table.get("a", 100.0) == 108.0  # level 2, no credit
    assert table.get("b", 100.0) == 105.0  # level 5 (what it held), not 10
    assert table.get("new", 100.0) == 105.0  # a full bucket held 5 before the growth
    assert table.get("new", 106.0) == 106.0  # and refills to the new burst
