"""The pool's slot counter at its edges: a waiter that gives up just as a slot is handed to it
passes the slot on, so no slot is ever lost (the pool would shrink by one each time)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.upstream.http1 import _Slots


async def test_a_free_slot_is_a_counter_and_comes_back() -> None:
    slots = _Slots(2)
    slots.free -= 1
    slots.free -= 1
    assert slots.free == 0
    slots.release()
    assert slots.free == 1


async def test_a_released_slot_goes_to_the_first_waiter_in_order() -> None:
    loop = asyncio.get_running_loop()
    slots = _Slots(0)
    first = asyncio.create_task(slots.wait(loop))
    second = asyncio.create_task(slots.wait(loop))
    await asyncio.sleep(0)
    slots.release()
    await asyncio.sleep(0)
    assert first.done()
    assert not second.done()
    slots.release()
    await second
    assert slots.free == 0


async def test_a_waiter_cancelled_after_the_hand_over_passes_its_slot_on() -> None:
    loop = asyncio.get_running_loop()
    slots = _Slots(0)
    late = asyncio.create_task(slots.wait(loop))
    other = asyncio.create_task(slots.wait(loop))
    await asyncio.sleep(0)
    slots.release()  # handed to `late`, which has not run yet
    late.cancel()  # ... and gives up before it does
    with pytest.raises(asyncio.CancelledError):
        await late
    await asyncio.wait_for(other, 1)  # the slot went on to the next waiter
    slots.release()
    assert slots.free == 1


async def test_a_waiter_that_timed_out_is_skipped_and_the_slot_stays_free() -> None:
    loop = asyncio.get_running_loop()
    slots = _Slots(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await slots.wait(loop)
    slots.release()
    assert slots.free == 1  # not handed to the waiter that left
