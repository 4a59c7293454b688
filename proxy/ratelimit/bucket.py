"""Token-bucket arithmetic as GCRA (generic cell rate algorithm), pure: time is an argument.

A bucket of `burst` tokens refilled at `rate` tokens/s is kept as one number, its theoretical
arrival time `tat`: the moment the bucket would be full again. A request of `cost` tokens may
go at `max(tat, now) + cost/rate - burst/rate`; granting it moves `tat` forward by `cost/rate`.
Granting a slot in the future is how a request waits: slots are handed out in arrival order,
so waiting is FIFO per bucket without a queue object, and a bucket whose `tat` is in the past
is exactly a full bucket, so its state can be forgotten at any time without changing a
decision (that is what bounds memory).

Admission at a common time `at` (several rules, one request): reserving with
`tat = max(tat, at) + cost/rate` keeps every bucket's guarantee (at most
`burst + rate * window` admissions in any window) because the request really goes at `at`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BucketShape:
    """A bucket's parameters: refill `rate` (tokens/s, > 0) and size `burst` (tokens, >= 1)."""

    rate: float
    burst: float
    # Derived once (a shape is made per rule load; the arithmetic below runs per request).
    interval: float = field(init=False, repr=False, compare=False)  # s one token refills in
    tolerance: float = field(init=False, repr=False, compare=False)  # s of credit when full

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", 1.0 / self.rate)
        object.__setattr__(self, "tolerance", self.burst / self.rate)


# Below this a wait is float rounding, not a wait (units: seconds or tokens, see RefillClock).
EPSILON = 1e-6


def earliest_admission(tat: float, now: float, shape: BucketShape, cost: float = 1.0) -> float:
    """When a request of `cost` tokens may go, given the bucket's `tat` (never before `now`)."""
    # Conditionals, not max(): this runs for every request and rule, and a builtin call costs
    # more than the arithmetic.
    allow = (tat if tat > now else now) + cost * shape.interval - shape.tolerance
    return allow if allow > now + EPSILON else now


def reserve(tat: float, at: float, shape: BucketShape, cost: float = 1.0) -> float:
    """The bucket's new `tat` after granting `cost` tokens to a request that goes at `at`.

    `at` must be at or after `earliest_admission(tat, now, shape, cost)`.
    """
    return (tat if tat > at else at) + cost * shape.interval


def refund(tat: float, shape: BucketShape, cost: float = 1.0) -> float:
    """`tat` with the latest grant of `cost` tokens taken back (a waiter that gave up)."""
    return tat - cost * shape.interval


class RefillClock:
    """A rule's clock counted in tokens refilled so far, for GCRA in token units.

    With `tat` kept in tokens (`BucketShape(1, burst)`) instead of seconds, a rate change is
    just a new slope of this clock: every bucket of the rule keeps its debt in tokens and the
    new rate applies at once, with no pass over the buckets.
    """

    __slots__ = ("_base_t", "_base_v", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._base_v = 0.0
        self._base_t: float | None = None

    def at(self, now: float) -> float:
        """Tokens refilled from the first reading until `now` (seconds, monotonic)."""
        if self._base_t is None:
            self._base_t = now
        return self._base_v + (now - self._base_t) * self.rate

    def set_rate(self, rate: float, now: float) -> None:
        self._base_v = self.at(now)
        self._base_t = now
        self.rate = rate


class BucketTable:
    """The `tat` of every bucket of one rule, keyed by bucket key, oldest-touched first.

    Entries whose `tat` has passed are full buckets and are dropped: a few on every touch
    (amortised O(1)) and all of them by `sweep`. When the table shrinks far below its peak it
    is rebuilt, because a Python dict never gives back the memory of its slot array.
    """

    __slots__ = ("_peak", "_tats", "floor")

    def __init__(self) -> None:
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._peak = 0
        # The `tat` of a bucket not in the table: full (any moment past) until a burst grows,
        # then one that holds only the old burst (see `reshape`). Every stored tat is >= it.
        self.floor = float("-inf")

    def __len__(self) -> int:
        return len(self._tats)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tats)

    def get(self, key: str, now: float) -> float:
        """The bucket's `tat`; a bucket never seen (or forgotten) is full: `now` (or, after
        the burst grew, holds the old burst: `floor`)."""
        tat = self._tats.get(key)
        if tat is None:
            return now if now > self.floor else self.floor
        return tat

    def reshape(self, burst_change: float, now: float) -> None:
        """The rule's burst changed by `burst_change` tokens: every bucket keeps its level
        (tokens it could spend now), capped at the new burst.

        In tat terms the spent part `tat - now` grows or shrinks by the change, never below
        zero: shrinking leaves no debt (a bucket with room under the new burst admits at
        once), growing gives no credit (a full bucket holds the old burst, and refills to the
        new one at the rule's rate). One pass over the buckets: reloads are rare.
        """
        if burst_change == 0:
            return
        tats = self._tats
        for key, tat in tats.items():
            tats[key] = max(now, max(tat, now) + burst_change)
        self.floor = max(now, max(self.floor, now) + burst_change)

    def put(self, key: str, tat: float, now: float) -> None:
        """Store a bucket's new `tat`, and drop up to two idle buckets on the way."""
        tats = self._tats
        if key in tats:
            tats.move_to_end(key)
        tats[key] = tat
        if len(tats) > self._peak:
            self._peak = len(tats)
        for _ in range(2):
            oldest = next(iter(tats))
            if oldest == key or tats[oldest] > now:
                break
            del tats[oldest]

    def take_back(self, key: str, granted_tat: float, shape: BucketShape, cost: float) -> bool:
        """Refund a grant if it is still the bucket's latest one; True when refunded.

        A grant that later grants were stacked on is not refunded: giving its slot back would
        let a newcomer share a moment with a later waiter and break the window guarantee.
        """
        if self._tats.get(key) != granted_tat:
            return False
        self._tats[key] = refund(granted_tat, shape, cost)
        return True

    def sweep(self, now: float, budget: int | None = None) -> int:
        """Drop full buckets (`tat <= now`) from the oldest-touched end; returns how many.

        Stops at the first bucket still refilling or after `budget` removals. Buckets are in
        touch order, and a bucket's `tat` is at most `max_wait + burst/rate` after its last
        touch, so stopping early only delays a removal by that much.
        """
        tats = self._tats
        removed = 0
        while tats and (budget is None or removed < budget):
            key = next(iter(tats))
            if tats[key] > now:
                break
            del tats[key]
            removed += 1
        if self._peak > 1024 and len(tats) * 4 < self._peak:
            self._tats = OrderedDict(tats)
            self._peak = len(tats)
        return removed
