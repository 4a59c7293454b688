"""The running proxy's log stream: one write per event-loop turn, in order, nothing lost."""

from __future__ import annotations

import asyncio
import io

from proxy.observability.logstream import TurnFlushedStream


class CountingTarget(io.StringIO):
    """A text stream that counts the writes it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_of_one_turn_go_out_in_one_write_in_order() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    for n in range(50):
        stream.write(f"line {n}\n")
        stream.flush()  # what structlog and logging call after every line
    assert target.getvalue() == ""  # not yet: the turn has not ended
    await asyncio.sleep(0)
    assert target.getvalue() == "".join(f"line {n}\n" for n in range(50))
    assert target.writes == 1
    stream.write("next turn\n")
    await asyncio.sleep(0)
    assert target.getvalue().endswith("line 49\nnext turn\n")
    assert target.writes == 2


async def test_a_turn_that_gathers_too_much_writes_at_once() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target, flush_at=100)
    stream.write("a" * 60)
    assert target.writes == 0
    stream.write("b" * 60)  # 120 >= 100: out now, without waiting for the turn's end
    assert target.getvalue() == "a" * 60 + "b" * 60
    await asyncio.sleep(0)
    assert target.writes == 1  # the scheduled flush found nothing left


def test_outside_a_running_loop_each_write_goes_out_at_once() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write("starting\n")
    assert target.getvalue() == "starting\n"


async def test_close_writes_what_the_turn_gathered() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write("last words\n")
    stream.close()  # an orderly exit, before the loop ran the scheduled flush
    assert target.getvalue() == "last words\n"
    await asyncio.sleep(0)
    assert target.writes == 1
    assert not stream.closed  # the target is not the stream's to close


async def test_a_closed_target_loses_the_lines_quietly() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write("too late\n")
    target.close()
    assert stream.closed
    await asyncio.sleep(0)  # the flush finds the target closed: no exception in the loop
