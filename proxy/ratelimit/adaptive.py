"""An adaptive rule's rate, shaped like the AWS SDKs' adaptive retry mode (CUBIC).

Until the first throttle the rule runs at its configured rate. A throttle from AWS drops the
rate to β·w_max, where w_max is the rate at that moment (or the measured send rate, when lower);
successes then grow it along `C·(t - t_fail - K)³ + w_max`, `K = ∛(w_max·(1-β)/C)`: fast at
first, flat around w_max, probing above it later, never beyond the configured rate. Pure:
every method takes `now`.

Unlike one SDK client, a proxy sees many clients' requests in flight at once; a burst of
throttles answering requests sent before the cut would cut again and again, so throttles
within `cooldown` of the last cut count once (TCP CUBIC likewise cuts once per round trip).
The SDK also caps the rate at twice the measured send rate; a proxy's aggregate traffic is
bursty (a quiet second, then many clients at once), so that cap would throttle healthy bursts
and is left out: the measured send rate only bounds w_max at a cut.
"""

from __future__ import annotations

import math

BETA = 0.7
SCALE = 0.4
MIN_RATE = 0.5  # tokens/s: the SDK's floor, so a rule can always probe again
_MEASURE_BUCKET = 0.5  # seconds per send-rate sample (as the SDK)
_SMOOTHING = 0.8


class CubicRate:
    """The current rate of one adaptive rule."""

    __slots__ = (
        "_cooldown",
        "_count",
        "_k",
        "_last_cut",
        "_measured",
        "_sample_start",
        "_w_max",
        "ceiling",
        "rate",
    )

    def __init__(self, ceiling: float, cooldown: float = 0.5) -> None:
        self.ceiling = ceiling
        self.rate = ceiling
        self._cooldown = cooldown
        self._w_max = ceiling
        self._k = 0.0
        self._last_cut: float | None = None
        self._measured = 0.0
        self._sample_start: float | None = None
        self._count = 0

    @property
    def throttled_once(self) -> bool:
        return self._last_cut is not None

    def set_ceiling(self, ceiling: float) -> None:
        """A config reload changed the rule's rate: the new rate bounds the adaptive one."""
        self.ceiling = ceiling
        if not self.throttled_once or self.rate > ceiling:
            self.rate = ceiling
        self._w_max = min(self._w_max, ceiling)

    def record_send(self, now: float) -> None:
        """Count one request let through, for the measured send rate."""
        if self._sample_start is None:
            self._sample_start = now
        elapsed = now - self._sample_start
        if elapsed >= _MEASURE_BUCKET:
            sample = self._count / elapsed
            self._measured = _SMOOTHING * sample + (1 - _SMOOTHING) * self._measured
            self._sample_start = now
            self._count = 0
        self._count += 1

    def on_throttle(self, now: float) -> float:
        """AWS throttled one of the rule's requests; returns the new rate."""
        if self._last_cut is not None and now - self._last_cut < self._cooldown:
            return self.rate
        w_max = self.rate if self._measured <= 0 else min(self.rate, self._measured)
        self._w_max = max(w_max, MIN_RATE)
        self._k = math.cbrt(self._w_max * (1 - BETA) / SCALE)
        self._last_cut = now
        self.rate = max(self._w_max * BETA, MIN_RATE)
        return self.rate

    def on_success(self, now: float) -> float:
        """A request of the rule succeeded; returns the (maybe grown) rate."""
        if self._last_cut is None:
            return self.rate
        elapsed = now - self._last_cut
        cubic = SCALE * (elapsed - self._k) ** 3 + self._w_max
        self.rate = min(self.ceiling, max(cubic, MIN_RATE))
        return self.rate
