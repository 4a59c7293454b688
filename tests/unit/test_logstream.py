"""The running proxy's log stream: request lines once per event-loop turn, in order, nothing
lost; every other event at once."""

from __future__ import annotations

import asyncio
import io
from typing import TextIO, cast

from proxy.observability.logs import configure_logging, get_logger
from proxy.observability.logstream import TurnFlushedStream
from proxy.observability.requestlog import write_request_line
from tests.unit.test_requestlog import FIELDS


class CountingTarget(io.StringIO):
    """A text stream that counts the writes it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_request_lines_of_one_turn_go_out_in_one_write_in_order() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    for n in range(50):
        stream.write_soon(f"line {n}\n")
    assert target.getvalue() == ""  # not yet: the turn has not ended
    await asyncio.sleep(0)
    assert target.getvalue() == "".join(f"line {n}\n" for n in range(50))
    assert target.writes == 1
    stream.write_soon("next turn\n")
    await asyncio.sleep(0)
    assert target.getvalue().endswith("line 49\nnext turn\n")
    assert target.writes == 2


async def test_another_event_goes_out_at_once_after_the_lines_before_it() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write_soon("request 1\n")
    # What structlog's and logging's writers do for every event: write, then flush.
    stream.write('{"event": "reloaded"}\n')
    stream.flush()
    assert target.getvalue() == 'request 1\n{"event": "reloaded"}\n'
    assert target.writes == 1
    await asyncio.sleep(0)
    assert target.writes == 1  # the turn's flush found nothing left


async def test_a_turn_that_gathers_too_much_writes_at_once() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target, flush_at=100)
    stream.write_soon("a" * 60)
    assert target.writes == 0
    stream.write_soon("b" * 60)  # 120 >= 100: out now, without waiting for the turn's end
    assert target.getvalue() == "a" * 60 + "b" * 60
    await asyncio.sleep(0)
    assert target.writes == 1


def test_outside_a_running_loop_each_line_goes_out_at_once() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write_soon("starting\n")
    assert target.getvalue() == "starting\n"


async def test_close_writes_what_the_turn_gathered() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write_soon("last words\n")
    stream.close()  # an orderly exit, before the loop ran the scheduled flush
    assert target.getvalue() == "last words\n"
    await asyncio.sleep(0)
    assert target.writes == 1
    assert not stream.closed  # the target is not the stream's to close


async def test_a_closed_target_loses_the_lines_quietly() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    stream.write_soon("too late\n")
    target.close()
    assert stream.closed
    await asyncio.sleep(0)  # the flush finds the target closed: no exception in the loop


async def test_the_proxy_defers_only_its_request_lines() -> None:
    target = CountingTarget()
    stream = TurnFlushedStream(target)
    configure_logging("info", cast(TextIO, stream))
    try:
        write_request_line(get_logger("proxy.request"), **FIELDS)
        assert target.getvalue() == ""  # the request line waits for the turn's end
        get_logger("proxy.server").warning("reload-failed", path="/etc/proxy.yaml")
        lines = target.getvalue().splitlines()  # the warning went out at once, after it
        assert ['"request_id": "1a2b3c4d-1f"' in lines[0], '"reload-failed"' in lines[1]] == [
            True,
            True,
        ]
    finally:
        configure_logging("info", io.StringIO())
