"""The shared limiter's local over-limit memory: buckets Redis refused, until they fit again.

A bucket Redis refused for longer than a request may wait is refused here, without a call,
until the moment Redis said it would fit (envoy ratelimit's local over-limit cache). An entry
only spares Redis a call: forgetting one early is safe (Redis still refuses), remembering one
late never happens (each entry holds the moment Redis gave). Bounded: keys come from clients
(S3 prefixes), so a spray of them must not grow it past OVER_LIMIT_CAP.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.errors import RateLimited
from proxy.ratelimit.ruleset import RuleState

OVER_LIMIT_CAP = 10_000  # entries at most


class OverLimitMemory:
    """Bucket keys Redis refused, with the moment each fits again."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def refuse_if_known(self, enforcing: Sequence[RuleState], keys: list[str], now: float) -> None:
        """Raise RateLimited for the first of `keys` still known to be over its limit."""
        until_of = self._until
        for state, key in zip(enforcing, keys, strict=True):
            until = until_of.get(key)
            if until is not None and until > now:
                state.metrics.decisions["rejected"].inc()
                raise RateLimited(
                    f"client-side rate limit {state.name!r} exceeded (shared); "
                    f"retry after {until - now:.3f}s",
                    max(until - now, 1.0 / state.rate),
                    state.name,
                )

    def remember(
        self,
        keys: list[str],
        costs: list[int],
        own_waits: list[float],
        now: float,
        max_wait: float,
    ) -> None:
        """After a refusal: each key Redis would refuse for longer than `max_wait`, until then."""
        if len(self._until) >= OVER_LIMIT_CAP:
            # Keep what is still refused; if that is most of it (a client spraying keys
            # faster than they expire), forget it all: a map that stays full would grow past
            # the cap and be rebuilt on every refusal.
            live = {k: u for k, u in self._until.items() if u > now}
            self._until = live if len(live) < OVER_LIMIT_CAP // 2 else {}
        for key, cost, own in zip(keys, costs, own_waits, strict=True):
            # A refusal of several tokens says nothing of when one token fits.
            if own > max_wait and cost == 1:
                # Until then Redis would refuse this bucket anyway: no need to ask.
                self._until[key] = now + own - max_wait

    def clear(self) -> None:
        """Forget everything (new rules: what was refused under the old ones says nothing)."""
        self._until.clear()
