"""Leased slices of a shared bucket: their size, refill, growth, expiry and back-off, and the
over-admission bound they give (`burst + rate*t + replicas*lease_size` in any window),
checked against a model of the Redis bucket on a FakeClock."""

from __future__ import annotations

import math
import random

import pytest

from proxy.ratelimit.lease import (
    FIRST_SLICE,
    MAX_SLICES,
    SLICE_TTL,
    LeaseBook,
    lease_size,
)
from tests.fakes.clock import FakeClock

KEY = "{tp:acct/us-east-1}:describe:"
OTHER = "{tp:acct/us-east-1}:ec2-all:"


@pytest.mark.parametrize(
    ("rate", "burst", "interval", "size"),
    [
        (1e6, 1e6, 0.05, 50_000),  # never binds: 50 ms of refill
        (2000, 1000, 0.05, 100),  # 100 = rate x interval = burst / 10
        (1000, 1000, 0.05, 50),  # rate x interval
        (1000, 200, 0.05, 20),  # a tenth of the burst
        (100, 100, 0.05, 5),
        (20, 10, 0.05, 0),  # one token: nothing to save, decided in Redis
        (0.5, 5, 0.05, 0),
        (1e9, 1e9, 0.0, 0),  # lease_interval 0: leasing off
    ],
)
def test_lease_size_is_bounded_by_burst_rate_and_cap(
    rate: float, burst: float, interval: float, size: int
) -> None:
    assert lease_size(rate, burst, interval) == size


def test_first_ask_is_small_and_one_refill_is_out_at_a_time() -> None:
    clock = FakeClock()
    book = LeaseBook()
    now = clock.monotonic()
    assert not book.take([KEY], now)  # nothing held yet: the request goes to Redis
    assert book.ask(KEY, 50, now) == FIRST_SLICE
    assert book.ask(KEY, 50, now) == 0  # the refill is still out
    book.granted(KEY, FIRST_SLICE, FIRST_SLICE, now, rate=1000)
    assert book.held(KEY) == FIRST_SLICE
    assert book.ask(KEY, 50, now) == 0  # full enough
    assert book.ask(KEY, 3, now) == 0  # a small size never grows a slice past what it holds


def test_a_slice_spent_in_time_doubles_up_to_the_size() -> None:
    clock = FakeClock()
    book = LeaseBook()
    size = 20
    asked = book.ask(KEY, size, clock.monotonic())
    book.granted(KEY, asked, asked, clock.monotonic(), rate=1000)
    targets = []
    for _ in range(60):
        clock.advance(0.001)
        now = clock.monotonic()
        assert book.take([KEY], now)
        wanted = book.ask(KEY, size, now)
        if wanted:
            targets.append(book.held(KEY) + wanted)
            book.granted(KEY, wanted, wanted, now, rate=1000)
        assert book.held(KEY) <= size
    assert targets[:3] == [8, 16, 20]
    assert set(targets[3:]) == {20}


def test_held_and_in_flight_never_pass_the_size() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    book = LeaseBook()
    size = 10
    out: list[tuple[int, float]] = []  # refills asked for and not landed yet
    for _ in range(5000):
        clock.advance(rng.uniform(0, 0.01))
        now = clock.monotonic()
        if out and rng.random() < 0.3:
            wanted, at = out.pop(0)
            book.granted(KEY, wanted, rng.randint(0, wanted), at, rate=200)
        book.take([KEY], now)
        wanted = book.ask(KEY, size, now)
        if wanted:
            out.append((wanted, now))
        assert book.held(KEY) + sum(w for w, _ in out) <= size


def test_take_is_all_or_nothing_over_the_keys() -> None:
    now = FakeClock().monotonic()
    book = LeaseBook()
    book.granted(KEY, 0, 0, now, rate=1)  # unknown key: ignored
    wanted = book.ask(KEY, 10, now)
    book.granted(KEY, wanted, wanted, now, rate=1000)
    assert not book.take([KEY, OTHER], now)  # OTHER holds nothing
    assert book.held(KEY) == wanted  # so KEY was not charged
    wanted_other = book.ask(OTHER, 10, now)
    book.granted(OTHER, wanted_other, 1, now, rate=1000)
    assert book.take([KEY, OTHER], now)
    assert (book.held(KEY), book.held(OTHER)) == (wanted - 1, 0)
    assert not book.take([KEY, OTHER], now)


def test_an_expired_slice_is_not_spent_and_shrinks() -> None:
    clock = FakeClock()
    book = LeaseBook()
    now = clock.monotonic()
    wanted = book.ask(KEY, 50, now)
    book.granted(KEY, wanted, wanted, now, rate=1000)
    clock.advance(SLICE_TTL - 0.001)
    assert book.take([KEY], clock.monotonic())
    clock.advance(0.001)
    assert not book.take([KEY], clock.monotonic())  # tokens left, but expired
    assert book.held(KEY) == 0
    # The slice was left unspent: the next one is half the size.
    assert book.ask(KEY, 50, clock.monotonic()) == FIRST_SLICE // 2


def test_a_short_grant_backs_off_until_the_bucket_could_refill() -> None:
    clock = FakeClock()
    book = LeaseBook()
    now = clock.monotonic()
    wanted = book.ask(KEY, 50, now)
    book.granted(KEY, wanted, 1, now, rate=100)  # the bucket had one token
    missing = wanted - 1
    clock.advance(missing / 100 - 0.001)
    assert book.ask(KEY, 50, clock.monotonic()) == 0  # no ask per request while it binds
    clock.advance(0.001)
    assert book.ask(KEY, 50, clock.monotonic()) > 0


def test_a_failed_refill_asks_again_after_the_retry_interval() -> None:
    clock = FakeClock()
    book = LeaseBook()
    now = clock.monotonic()
    book.ask(KEY, 50, now)
    book.failed(KEY, now, retry_interval=1.0)
    clock.advance(0.999)
    assert book.ask(KEY, 50, clock.monotonic()) == 0
    clock.advance(0.001)
    assert book.ask(KEY, 50, clock.monotonic()) == FIRST_SLICE


def _full_book(now: float) -> LeaseBook:
    """A book holding MAX_SLICES live slices, each granted at `now`."""
    book = LeaseBook()
    for i in range(MAX_SLICES):
        wanted = book.ask(f"k{i}", 10, now)
        book.granted(f"k{i}", wanted, wanted, now, rate=1000)
    return book


def test_slices_are_bounded_in_number() -> None:
    clock = FakeClock()
    book = _full_book(clock.monotonic())
    clock.advance(SLICE_TTL)
    assert book.ask("one-more", 10, clock.monotonic()) == FIRST_SLICE  # expired ones cleared
    assert len(book) == 1


def test_a_book_full_of_live_slices_is_cleared_once_not_per_new_key() -> None:
    # Keys sprayed faster than slices expire: the live slices are dropped (their tokens
    # unspent, which only admits less), so the book is not rebuilt on every new key.
    clock = FakeClock()
    book = _full_book(clock.monotonic())
    now = clock.monotonic()
    assert book.ask("first", 10, now) == FIRST_SLICE
    book.granted("first", FIRST_SLICE, FIRST_SLICE, now, rate=1000)
    assert len(book) == 1
    assert book.held("k0") == 0
    for i in range(MAX_SLICES - 1):  # the book fills up again before it is cleared again
        wanted = book.ask(f"new{i}", 10, now)
        book.granted(f"new{i}", wanted, wanted, now, rate=1000)
    assert len(book) == MAX_SLICES
    assert book.held("first") == FIRST_SLICE


def test_a_slice_with_a_refill_out_survives_the_clearing() -> None:
    # Full of slices, an expired one whose refill is still out must stay: dropped, its next
    # ask would send a second refill, and both grants would land on one slice (over S).
    clock = FakeClock()
    book = LeaseBook()
    now = clock.monotonic()
    first = book.ask("victim", 10, now)  # a refill goes out, not yet granted
    for i in range(MAX_SLICES - 1):
        wanted = book.ask(f"k{i}", 10, now)
        book.granted(f"k{i}", wanted, wanted, now, rate=1000)
    clock.advance(SLICE_TTL)  # every granted slice expires; the victim's refill is still out
    now = clock.monotonic()
    assert book.ask("newcomer", 10, now) == FIRST_SLICE  # the clearing ran
    assert book.ask("victim", 10, now) == 0  # its refill is out: no second one
    book.granted("victim", first, first, now - SLICE_TTL, rate=1000)
    assert book.held("victim") <= 10


class _ModelBucket:
    """The Redis bucket as the scripts keep it (GCRA, in seconds)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tat = rate, burst, 0.0

    def room(self, now: float) -> int:
        return math.floor(self.burst - (max(self.tat, now) - now) * self.rate + 1e-9)

    def charge(self, count: int, now: float) -> None:
        self.tat = max(self.tat, now) + count / self.rate


@pytest.mark.parametrize("seed", range(5))
def test_two_replicas_admit_at_most_burst_plus_rate_t_plus_their_slices(seed: int) -> None:
    rate, burst, interval = 200.0, 100.0, 0.05
    size = lease_size(rate, burst, interval)
    rng = random.Random(seed)
    clock = FakeClock()
    bucket = _ModelBucket(rate, burst)
    books = [LeaseBook(), LeaseBook()]
    landing: list[tuple[float, int, int, int, float]] = []  # (at, replica, asked, got, sent)
    admitted: list[float] = []
    end = clock.monotonic() + 3.0
    while clock.monotonic() < end:
        clock.advance(rng.expovariate(1500))  # offered: 1,500/s, 7.5x the rate
        now = clock.monotonic()
        for item in [x for x in landing if x[0] <= now]:
            landing.remove(item)
            _, replica, asked, got, sent = item
            books[replica].granted(KEY, asked, got, sent, rate)
        replica = rng.randrange(2)
        book = books[replica]
        if book.take([KEY], now):
            admitted.append(now)
        elif bucket.room(now) >= 1:  # the request's own script call (max_wait 0)
            bucket.charge(1, now)
            admitted.append(now)
        wanted = book.ask(KEY, size, now)
        if wanted:
            got = min(wanted, max(bucket.room(now), 0))
            bucket.charge(got, now)  # charged when Redis runs the script...
            # ...and spendable one round trip later.
            landing.append((now + rng.uniform(0.0001, 0.01), replica, wanted, got, now))
    assert len(admitted) > burst + rate * 2  # the slices were used, the rule bound
    worst = max(
        (j - i + 1) - (burst + rate * (admitted[j] - admitted[i]))
        for i in range(len(admitted))
        for j in range(i, len(admitted))
    )
    assert worst <= 2 * size
