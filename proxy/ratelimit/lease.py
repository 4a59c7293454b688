"""Slices of a shared bucket leased to one replica, so most requests are decided in memory.

The shared limiter takes up to `lease_size` tokens of a Redis bucket in one script call (only
tokens the bucket can give at once, never a future slot) and admits requests from that slice
here, with no round trip and no await. A slice is refilled in the background when half of it
is spent, and expires `SLICE_TTL` seconds after its last refill was asked for, so a replica
that stops calling does not sit on tokens. Nothing is given back to Redis: an unspent token
was charged there and is simply lost, which can only admit less. (Giving it back is not
safe: once the bucket has refilled past those tokens, a give-back credits room the bucket
never had.)

What this costs in accuracy: tokens a replica holds were charged in Redis before they are
spent, so in any window a bucket admits at most `burst + rate*t` plus what the replicas held
when the window began: `replicas * lease_size` at most (a slice never holds more than
`lease_size`, counting a refill in flight).

How big a slice may be, and why: at most a tenth of the burst (a bucket is never split into
a few hoards), and at most `rate * lease_interval` tokens (what the bucket refills in that
time). Below two tokens a slice saves nothing, and the bucket is decided in
Redis request by request. A slice grows from `FIRST_SLICE` by doubling while it keeps being
spent before it expires, and halves when it expires unspent: a replica sending a few requests
a second wastes a few tokens at most.

Pure bookkeeping: time comes in as `now` (the limiter's monotonic clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SLICE_TTL = 1.0  # seconds a slice may be spent after its refill was asked for
FIRST_SLICE = 4  # tokens asked for first; doubled while spent in time
BURST_SHARE = 0.1  # a slice holds at most this share of the bucket's burst
MAX_SLICES = 10_000  # buckets with a slice at once (see LeaseBook._make_room)


def lease_size(rate: float, burst: float, lease_interval: float) -> int:
    """The most tokens one replica may hold of a bucket of `rate` and `burst`; 0: no lease."""
    size = min(math.floor(burst * BURST_SHARE), math.floor(rate * lease_interval))
    return size if size >= 2 else 0


@dataclass(slots=True)
class Slice:
    """This replica's tokens of one bucket."""

    tokens: int = 0
    target: int = FIRST_SLICE  # the size the next refill brings the slice up to
    expires: float = 0.0
    refilling: bool = False
    retry_at: float = 0.0  # after a short grant: no new ask before the bucket could refill


class LeaseBook:
    """Every slice this replica holds, by Redis bucket key. A reload replaces the book whole:
    unspent tokens are never spent, so a tightened rule gets no credit from them, and a
    refill still out when it lands finds its slice gone."""

    def __init__(self) -> None:
        self._slices: dict[str, Slice] = {}

    def __len__(self) -> int:
        return len(self._slices)

    def held(self, key: str) -> int:
        """Tokens of `key` this replica may spend (expiry is applied on the next take)."""
        found = self._slices.get(key)
        return found.tokens if found is not None else 0

    def take(self, keys: list[str], now: float) -> bool:
        """One token from the slice of every key, or none at all (False: some slice is
        empty or expired)."""
        slices = self._slices
        for key in keys:
            found = slices.get(key)
            if found is None or found.tokens < 1 or found.expires <= now:
                if found is not None:
                    _expire(found, now)
                return False
        for key in keys:
            slices[key].tokens -= 1
        return True

    def ask(self, key: str, size: int, now: float) -> int:
        """How many tokens to ask Redis for now to refill `key`'s slice (0: no need, a
        refill is out, or the bucket was short a moment ago). Marks the slice refilling."""
        found = self._slices.get(key)
        if found is None:
            if len(self._slices) >= MAX_SLICES:
                self._make_room(now)
                if len(self._slices) >= MAX_SLICES:
                    return 0
            found = self._slices[key] = Slice()
        if found.refilling or now < found.retry_at:
            return 0
        if found.expires > now:
            if found.tokens > found.target // 2:
                return 0
            # Spent down to half before it expired: the replica is busy, grow the slice.
            found.target *= 2
        else:
            _expire(found, now)
        found.target = max(2, min(found.target, size))
        wanted = found.target - found.tokens
        if wanted <= 0:
            return 0
        found.refilling = True
        return wanted

    def _make_room(self, now: float) -> None:
        """Drop the expired slices; if most are live (keys sprayed faster than slices
        expire), drop every slice with no refill out, their tokens unspent (that only admits
        less): a book that stayed full would be rebuilt on every new key, O(n) each.

        A slice with a refill out stays: dropping it would let the next ask send a second
        refill, and both grants would land on one slice (over S)."""
        kept = {k: s for k, s in self._slices.items() if s.expires > now or s.refilling}
        if len(kept) >= MAX_SLICES // 2:
            kept = {k: s for k, s in kept.items() if s.refilling}
        self._slices = kept

    def granted(self, key: str, asked: int, got: int, asked_at: float, rate: float) -> None:
        """Redis gave `got` of the `asked` tokens, for a call sent at `asked_at`."""
        found = self._slices.get(key)
        if found is None:  # a replaced book (reload): the tokens are lost, never spent
            return
        found.refilling = False
        if got > 0:
            found.tokens += got
            found.expires = asked_at + SLICE_TTL
        if got < asked:
            # The bucket is (nearly) empty: requests queue in Redis, in order, and this
            # replica asks again only once the bucket could have refilled what it asked.
            found.retry_at = asked_at + (asked - got) / rate
            found.target = max(2, found.target // 2)

    def failed(self, key: str, asked_at: float, retry_interval: float) -> None:
        """The refill call failed: ask again after `retry_interval`."""
        found = self._slices.get(key)
        if found is not None:
            found.refilling = False
            found.retry_at = asked_at + retry_interval


def _expire(found: Slice, now: float) -> None:
    if found.expires <= now and found.tokens > 0:
        found.tokens = 0
        found.target = max(2, found.target // 2)
