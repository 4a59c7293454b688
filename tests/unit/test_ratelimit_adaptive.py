"""The CUBIC rate of adaptive rules (the SDK adaptive mode's shape, β 0.7, C 0.4)."""

from __future__ import annotations

import math

import pytest

from proxy.ratelimit.adaptive import BETA, MIN_RATE, SCALE, CubicRate


def test_runs_at_the_configured_rate_until_the_first_throttle() -> None:
    cubic = CubicRate(50.0)
    assert cubic.on_success(100.0) == 50.0
    assert not cubic.throttled_once


def test_throttle_cuts_to_beta_then_grows_along_the_cubic() -> None:
    cubic = CubicRate(100.0, cooldown=0.0)
    assert cubic.on_throttle(10.0) == pytest.approx(70.0)
    k = math.cbrt(100.0 * (1 - BETA) / SCALE)
    assert cubic.on_success(10.0) == pytest.approx(70.0)  # the curve starts at the cut
    for t in (0.5, 1.0, k, k + 1.0):
        expected = min(100.0, SCALE * (t - k) ** 3 + 100.0)
        assert cubic.on_success(10.0 + t) == pytest.approx(expected)
    assert cubic.on_success(10.0 + k) == pytest.approx(100.0)  # flat around w_max at K
    assert cubic.on_success(10.0 + 3 * k) == 100.0  # never above the configured rate


def test_repeated_throttles_keep_cutting_but_not_below_the_floor() -> None:
    cubic = CubicRate(10.0, cooldown=0.0)
    rates = [cubic.on_throttle(float(t)) for t in range(30)]
    assert rates[:3] == pytest.approx([7.0, 4.9, 3.43])
    assert min(rates) == MIN_RATE


def test_throttles_within_the_cooldown_cut_once() -> None:
    cubic = CubicRate(100.0, cooldown=0.5)
    assert cubic.on_throttle(1.0) == pytest.approx(70.0)
    assert cubic.on_throttle(1.2) == pytest.approx(70.0)
    assert cubic.on_throttle(1.6) == pytest.approx(49.0)


def test_measured_send_rate_bounds_the_cut() -> None:
    cubic = CubicRate(100.0, cooldown=0.0)
    for i in range(41):  # 20 requests/s for 2 s
        cubic.record_send(i * 0.05)
    assert cubic.on_throttle(2.0) == pytest.approx(0.7 * 20.0, rel=0.05)
    assert cubic.on_success(2.5) < 20.0  # growing back towards w_max = 20


def test_lower_ceiling_on_reload_applies_at_once() -> None:
    cubic = CubicRate(100.0)
    cubic.set_ceiling(40.0)
    assert cubic.rate == 40.0
    cubic.on_throttle(0.0)
    cubic.set_ceiling(200.0)
    assert cubic.rate == pytest.approx(28.0)  # after a throttle, growth is the curve's job
