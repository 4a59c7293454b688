"""How the front serves one keep-alive connection: its requests answered in order by one task
that waits between them, and that task let go once the connection idles across a guard tick
(10,000 idle keep-alive connections must not each hold one)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any, cast

from proxy.config.model import ConnectionsConfig
from proxy.front.exchange import Exchange
from proxy.front.protocol import FrontConnection
from tests.polling import eventually

REQUEST = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        return None


class FrontStub:
    """What a FrontConnection reads of its Front, with a handler that answers the target."""

    def __init__(self) -> None:
        self.settings = ConnectionsConfig()
        self.draining = False
        self.handler = self.handle
        self.served: list[str] = []

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def admit(self, conn: FrontConnection) -> bool:
        return True

    def forget(self, conn: FrontConnection) -> None:
        return None

    async def handle(self, exchange: Exchange) -> None:
        await asyncio.sleep(0)  # a real answer waits for its upstream
        self.served.append(exchange.target)
        exchange.respond(200, [], exchange.target.encode())


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {cast(asyncio.Task[Any], asyncio.current_task())}


async def test_one_task_answers_a_connection_in_order_and_an_idle_tick_lets_it_go() -> None:
    front = FrontStub()
    conn = FrontConnection(cast(Any, front))
    transport = RecordingTransport()
    conn.connection_made(cast(Any, transport))

    conn.data_received(REQUEST % 1)
    assert await eventually(lambda: len(front.served) == 1, within=5)
    (serving,) = others()  # between two requests, the connection's one task waits
    conn.data_received((REQUEST % 2) + (REQUEST % 3))  # the next, and one pipelined behind it
    assert await eventually(lambda: len(front.served) == 3, within=5)
    assert others() == {serving}
    assert front.served == ["/1", "/2", "/3"]
    assert [answer.rsplit(b"\r\n\r\n", 1)[1] for answer in transport.written] == [
        b"/1",
        b"/2",
        b"/3",
    ]

    now = front.now()
    conn.check(now)  # the guard's first tick sees the connection idle...
    await asyncio.sleep(0)
    assert others() == {serving}
    conn.check(now)  # ...the next lets its task go
    assert await eventually(lambda: not others(), within=5)
    assert serving.done()
    assert not serving.cancelled()  # it ended, nothing cut

    conn.data_received(REQUEST % 4)  # a request after that starts a task again
    assert await eventually(lambda: front.served[-1:] == ["/4"], within=5)
    assert len(others()) == 1
    conn.connection_lost(None)  # the connection's end cancels its waiting task
    assert await eventually(lambda: not others(), within=5)


async def test_an_idle_connection_holds_no_request_it_answered() -> None:
    # Between two requests the task waits for the next one: the last request it answered
    # (headers, body, its connection's budget reservation long given back) must be garbage by
    # then, not kept until the guard lets the task go, whichever way the request came in.
    front = FrontStub()
    conn = FrontConnection(cast(Any, front))
    conn.connection_made(cast(Any, RecordingTransport()))
    seen: list[weakref.ref[Any]] = []
    answer = front.handle

    async def handle(exchange: Exchange) -> None:
        seen.append(weakref.ref(exchange.headers))
        await answer(exchange)

    front.handler = handle
    conn.data_received(REQUEST % 1)  # starts the connection's task
    assert await eventually(lambda: len(front.served) == 1, within=5)
    conn.data_received(REQUEST % 2)  # handed to the waiting task
    assert await eventually(lambda: len(front.served) == 2, within=5)
    conn.data_received((REQUEST % 3) + (REQUEST % 4))  # the waiting task, then one queued
    assert await eventually(lambda: len(front.served) == 4, within=5)
    await asyncio.sleep(0)
    (serving,) = others()
    assert not serving.done()  # still waiting for a next request
    gc.collect()
    assert [ref() is None for ref in seen] == [True] * 4
    conn.connection_lost(None)
    assert await eventually(lambda: not others(), within=5)
