"""The front's answer writer and request body, against a recording connection: framing kept
honest (Content-Length is the byte count, else the connection is cut), no header injection,
flow control of a body, and the client's failures as the proxy's errors."""

from __future__ import annotations

from typing import Any, cast

import pytest
from multidict import CIMultiDict

from proxy.errors import ClientBodyIncomplete, ClientClosed, Overloaded
from proxy.front.body import HIGH_WATER, RequestBody
from proxy.front.budget import BodyBudget
from proxy.front.exchange import Exchange
from proxy.observability.metrics import Metrics


class RecordingConnection:
    """Stands in for FrontConnection: what was written, whether it was cut, flow control."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self.paused = 0
        self.resumed = 0
        metrics = Metrics()
        self.front = type(
            "FrontStub",
            (),
            {"draining": False, "budget": BodyBudget(1000, metrics.buffered_body_bytes)},
        )()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drain(self) -> None:
        return None

    def abort(self) -> None:
        self.aborted = True

    def pause_body(self) -> None:
        self.paused += 1

    def resume_body(self) -> None:
        self.resumed += 1

    def now(self) -> float:
        return 0.0

    @property
    def wire(self) -> bytes:
        return b"".join(self.written)


def exchange(
    conn: RecordingConnection,
    method: str = "GET",
    version: str = "1.1",
    body: RequestBody | None = None,
    keep_alive: bool = True,
) -> Exchange:
    return Exchange(cast(Any, conn), method, "/", version, CIMultiDict(), body, keep_alive)


def test_respond_is_one_write_with_its_length() -> None:
    conn = RecordingConnection()
    exchange(conn).respond(200, [("Content-Type", "text/xml")], b"<ok/>")
    assert conn.written == [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\n<ok/>"
    ]


def test_head_gets_the_length_but_no_body_and_204_no_length() -> None:
    conn = RecordingConnection()
    exchange(conn, method="HEAD").respond(200, [], b"12345")
    assert conn.wire == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    conn = RecordingConnection()
    exchange(conn).respond(204, [], b"")
    assert conn.wire == b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_unknown_length_is_chunked_for_1_1_and_close_delimited_for_1_0() -> None:
    conn = RecordingConnection()
    answer = exchange(conn)
    answer.start(200, [], None)
    await answer.write(b"abc")
    answer.end()
    assert conn.wire == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    conn = RecordingConnection()
    old = exchange(conn, version="1.0")
    old.start(200, [], None)
    await old.write(b"abc")
    old.end()
    assert conn.wire == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc"
    assert old.closes


async def test_a_body_short_of_its_content_length_cuts_the_connection() -> None:
    conn = RecordingConnection()
    answer = exchange(conn)
    answer.start(200, [], 10)
    await answer.write(b"12345")
    answer.end()
    assert conn.aborted
    assert not answer.finished


async def test_more_than_the_content_length_is_never_sent() -> None:
    conn = RecordingConnection()
    answer = exchange(conn)
    answer.start(200, [], 3)
    await answer.write(b"12345")
    assert conn.aborted
    assert b"12345" not in conn.wire


def test_cr_or_lf_in_a_header_is_refused_not_written() -> None:
    conn = RecordingConnection()
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        exchange(conn).respond(200, [("X-A", "1\r\nSet-Cookie: x")], b"")
    assert conn.written == []


def test_connection_header_follows_keep_alive_and_unread_bodies() -> None:
    conn = RecordingConnection()
    exchange(conn, version="1.0").respond(200, [], b"")
    assert b"Connection: keep-alive\r\n" in conn.wire
    conn = RecordingConnection()
    body = RequestBody(conn)
    body.feed(b"part")  # not complete: the rest would be read as the next request
    answer = exchange(conn, method="POST", body=body)
    answer.respond(413, [], b"")
    assert b"Connection: close\r\n" in conn.wire
    assert answer.closes


def test_100_continue_only_for_an_unread_1_1_body_and_once() -> None:
    conn = RecordingConnection()
    answer = exchange(conn, method="PUT", body=RequestBody(conn))
    answer.send_continue()
    answer.send_continue()
    assert conn.written == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    conn = RecordingConnection()
    exchange(conn, method="PUT", version="1.0", body=RequestBody(conn)).send_continue()
    assert conn.written == []


def test_the_budget_is_given_back_when_the_request_ends() -> None:
    conn = RecordingConnection()
    answer = exchange(conn)
    answer.reserve_body(600)
    assert conn.front.budget.used == 600
    with pytest.raises(Overloaded, match="buffered_body_budget"):
        exchange(conn).reserve_body(600)
    answer.release()
    answer.release()
    assert conn.front.budget.used == 0


async def test_body_pauses_the_socket_above_high_water_and_resumes_below() -> None:
    conn = RecordingConnection()
    body = RequestBody(conn)
    for _ in range(5):
        body.feed(b"x" * (HIGH_WATER // 4))
    assert conn.paused == 1
    body.finish()
    got = b"".join([piece async for piece in body.iter_chunked(1000)])
    assert len(got) == 5 * (HIGH_WATER // 4)
    assert conn.resumed == 1


async def test_short_or_broken_bodies_are_the_clients_errors() -> None:
    conn = RecordingConnection()
    body = RequestBody(conn)
    body.feed(b"abc")
    body.fail(ClientBodyIncomplete("ended early"))
    with pytest.raises(ClientBodyIncomplete):
        await body.readexactly(10)
    gone = RequestBody(conn)
    gone.fail(ClientClosed("gone"))
    with pytest.raises(ClientClosed):
        await gone.read()


async def test_readexactly_keeps_what_follows() -> None:
    conn = RecordingConnection()
    body = RequestBody(conn)
    body.feed(b"hello world")
    body.finish()
    assert await body.readexactly(5) == b"hello"
    assert await body.read() == b" world"
    assert await body.read() == b""
