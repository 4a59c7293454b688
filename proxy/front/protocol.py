"""One client connection: httptools (llhttp) parses, requests are answered one at a time, in
the order they came (pipelining), and the connection's phase says which timeout applies.

Phases: HEAD (a request's line and headers are arriving: header_timeout from its first byte or
from the accept), BUSY (a request is being answered: body_timeout while the pipeline waits for
body bytes, send_timeout while the client does not read), IDLE (keep-alive, nothing asked:
idle_timeout). The guard (proxy.front.guard) checks every connection's deadlines on one
coarse timer instead of arming timers per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict

from proxy.errors import (
    ClientBodyIncomplete,
    ClientClosed,
    HeaderTooLarge,
    ProxyError,
)
from proxy.front.body import RequestBody
from proxy.front.errors import client_error
from proxy.front.exchange import Exchange
from proxy.front.headchecks import decline_upgrade, refuse_other_codings
from proxy.observability.logs import get_logger

if TYPE_CHECKING:
    from proxy.front.guard import Front

log = get_logger("proxy.front")

HEAD, BUSY, IDLE = "head", "busy", "idle"
# Requests parsed ahead of the one being answered before the socket is not read further.
_MAX_PIPELINED = 16
_NO_HEADERS: CIMultiDict[str] = CIMultiDict()
# How long a connection refused at accept (the connection cap) is read, and what it sends
# dropped, before it is cut.
_LINGER = 1.0
# A lingering close reads on while the client keeps sending (at most _LINGER_GAP between two
# reads), for _LINGER_MAX at most: a client writing its whole body before it reads the answer
# may take longer than a second (nginx's lingering_timeout and lingering_time).
_LINGER_GAP = 5.0
_LINGER_MAX = 30.0
# Request methods as str, by the bytes the parser reports (llhttp accepts only its own list).
_METHODS: dict[bytes, str] = {}


class FrontConnection(asyncio.Protocol):
    __slots__ = (
        "_body_paused",
        "_current",
        "_drain_waiter",
        "_head_bytes",
        "_headers",
        "_idle_seen",
        "_linger",
        "_lingered",
        "_next_request",
        "_parser",
        "_parsing",
        "_pending",
        "_queue_paused",
        "_raw_head_bytes",
        "_task",
        "_transport",
        "_url",
        "closed",
        "deadline",
        "front",
        "head_started",
        "in_head",
        "paused_since",
        "phase",
    )

    def __init__(self, front: Front) -> None:
        self.front = front
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._raw_head_bytes = 0
        self._parsing: Exchange | None = None  # whose body the parser is filling
        self._current: Exchange | None = None  # the one being answered
        self._pending: deque[Exchange] = deque()
        # The task answering this connection's requests, one after another; between two it
        # waits on `_next_request` (a task per busy connection, not one per request). A
        # connection idle across a guard tick lets its task go (None), so an idle keep-alive
        # connection holds no task: `_idle_seen` says a tick has seen this wait already.
        self._task: asyncio.Task[None] | None = None
        self._next_request: asyncio.Future[Exchange | None] | None = None
        self._idle_seen = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._lingered = False  # bytes came while lingering, since the last look
        self._body_paused = False
        self._queue_paused = False
        self.closed = False
        self.phase = HEAD
        self.in_head = False
        self.head_started = 0.0
        self.deadline = 0.0
        self.paused_since: float | None = None  # when the client stopped taking our writes

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if not self.front.admit(self):
            # Refused: answer, half-close, and read what the client already sent until it
            # closes (or _LINGER passes). Closing at once with its request unread would reset
            # the connection and lose the 503 on the way (nginx's lingering close).
            self.closed = True
            transport.write(self.front.refusal_answer)
            if transport.can_write_eof():
                transport.write_eof()
            self._linger = asyncio.get_running_loop().call_later(_LINGER, transport.abort)
            return
        self._parser = httptools.HttpRequestParser(self)
        self.phase = HEAD
        self.head_started = self.front.now()
        self.deadline = self.head_started + self.front.settings.header_timeout

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            self._lingered = True
            return  # refused, or the request stream is already broken: ignore the rest
        was_in_head = self.in_head
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT, or an Upgrade request: answered (CONNECT is refused), nothing after it
            # on this connection is HTTP we could parse.
            self._stop_parsing()
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(client_error(exc, in_body=self._parsing is not None))
            return
        if was_in_head and self.in_head:
            # A head still incomplete after a whole read: the parser holds its partial header
            # line, so bound that too (the callbacks count only what they were handed).
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self.front.settings.max_header_bytes:
                self._parse_failed(self._header_too_large())

    def eof_received(self) -> bool:
        """The client half-closed. Inside a body: the body is short (400, answered on the
        write side still open). Otherwise the client is gone, as nginx reads it (499)."""
        parsing = self._parsing
        self._stop_parsing()
        if parsing is not None and parsing.body is not None:
            parsing.body.fail(
                ClientBodyIncomplete(
                    f"the client ended the connection after {parsing.body.received} body bytes"
                )
            )
            return True
        return False  # the transport closes: connection_lost cancels what is in flight

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.closed:
            self.closed = True
            self.front.forget(self)
        parsing = self._parsing
        if parsing is not None and parsing.body is not None:
            parsing.body.fail(ClientClosed("the client closed the connection mid-body"))
        self._parser = None
        self._pending.clear()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None:
            waiter.cancel()  # its awaiter is the task cancelled next (or _serve itself)
        if self._task is not None:
            self._task.cancel()  # the pipeline records 499 and lets go of the upstream

    def pause_writing(self) -> None:
        self.paused_since = self.front.now()

    def resume_writing(self) -> None:
        self.paused_since = None
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_head = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._raw_head_bytes = 0
        self.head_started = self.front.now()
        if self.phase != BUSY:
            self.phase = HEAD
            self.deadline = self.head_started + self.front.settings.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.front.settings.max_header_bytes:
            raise self._header_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        self._head_bytes += len(name) + len(value) + 4  # as received: the cap is on the wire
        # llhttp leaves a value's trailing whitespace on; a field value excludes it (RFC 9110
        # §5.5), as AWS reads it: `PutItem ` must be classified (and limited) as PutItem.
        value = value.rstrip(b" \t")
        headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))
        settings = self.front.settings
        if len(headers) > settings.max_headers:
            raise HeaderTooLarge(f"more than {settings.max_headers} request headers")
        if self._head_bytes > settings.max_header_bytes:
            raise self._header_too_large()

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self.in_head = False
        headers = CIMultiDict(self._headers)
        has_body = "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0"
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:  # llhttp knows a few dozen methods: this stays small
            method = _METHODS[raw_method] = raw_method.decode("latin-1")
        exchange = Exchange(
            self,
            method,
            self._url.decode("utf-8", "surrogateescape"),
            parser.get_http_version(),
            headers,
            RequestBody(self) if has_body else None,
            parser.should_keep_alive(),
        )
        if exchange.version not in ("1.1", "1.0"):
            exchange.refusal = client_error(httptools.HttpParserError("bad HTTP version"))
            exchange.closes = True
        if parser.should_upgrade():
            decline_upgrade(exchange)
        if has_body:
            refuse_other_codings(exchange, headers)
        self._parsing = exchange if has_body else None
        self._enqueue(exchange)

    def on_body(self, body: bytes) -> None:
        parsing = self._parsing
        if parsing is not None and parsing.body is not None:
            parsing.body.feed(body)

    def on_message_complete(self) -> None:
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing.body is not None:
            parsing.body.finish()

    # -- flow control (RequestBody's ReadFlow) --------------------------------------------

    def now(self) -> float:
        return self.front.now()

    def pause_body(self) -> None:
        self._body_paused = True
        self._set_reading()

    def resume_body(self) -> None:
        self._body_paused = False
        self._set_reading()

    def _set_reading(self) -> None:
        transport = self._transport
        if transport is None or self.closed:
            return
        if self._body_paused or self._queue_paused:
            transport.pause_reading()
        elif self._parser is not None:
            transport.resume_reading()

    # -- writing (Exchange's side) ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self._transport is None:
            raise ClientClosed("the client connection is closed")
        self._transport.write(data)

    async def drain(self) -> None:
        if self.paused_since is None:
            return
        if self.closed:
            raise ClientClosed("the client connection is closed")
        waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
        await waiter

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close after what is written has gone out."""
        self._stop_parsing()
        if self._transport is not None:
            self._transport.close()

    def close_lingering(self) -> None:
        """Close after the answer to a request whose body is still arriving: half-close, then
        read and drop what the client sends until it closes (or stops sending). Closing with
        those bytes unread would reset the connection, and a client still writing its body
        would get EPIPE or ECONNRESET instead of the answer (nginx's lingering close)."""
        transport = self._transport
        if transport is None or self.closed or not transport.can_write_eof():
            self.close()
            return
        self._parser = None  # data_received drops whatever comes now
        self._parsing = None
        self._current = None
        self._pending.clear()
        transport.write_eof()
        transport.resume_reading()
        loop = asyncio.get_running_loop()
        self._lingered = False
        self._linger = loop.call_later(_LINGER_GAP, self._linger_on, loop.time() + _LINGER_MAX)

    def _linger_on(self, until: float) -> None:
        """A lingering close goes on while bytes still come, until `until`; then it is cut."""
        transport = self._transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        if self._lingered and loop.time() + _LINGER_GAP <= until:
            self._lingered = False
            self._linger = loop.call_later(_LINGER_GAP, self._linger_on, until)
            return
        transport.abort()

    # -- serving, in order ---------------------------------------------------------------

    def _enqueue(self, exchange: Exchange) -> None:
        if self._task is None:
            self.phase = BUSY
            self._task = asyncio.get_running_loop().create_task(self._serve(exchange))
            return
        waiter = self._next_request
        if waiter is not None and not waiter.done():
            self._next_request = None
            self.phase = BUSY
            waiter.set_result(exchange)
            return
        self._pending.append(exchange)
        if len(self._pending) >= _MAX_PIPELINED and not self._queue_paused:
            self._queue_paused = True
            self._set_reading()

    async def _serve(self, exchange: Exchange) -> None:
        """Answer the connection's requests in order, waiting for each next one in between; a
        lost connection cancels this (an answer in flight records 499)."""
        front = self.front
        handler = front.handler
        assert handler is not None
        loop = asyncio.get_running_loop()
        while True:
            self._current = exchange
            self.phase = BUSY
            try:
                await handler(exchange)
            except Exception:
                # The pipeline answers every error itself; this is a bug of ours: log it,
                # close this connection, keep serving everyone else.
                log.exception("front-handler-failed")
                exchange.closes = True
            finally:
                exchange.release()
            if not exchange.finished or exchange.closes:
                self._task = None
                if exchange.finished and exchange.body_arriving:
                    self.close_lingering()
                else:
                    self.close()
                return
            if self.paused_since is not None and not self.closed:
                await self.drain()  # the client reads this answer before the next one
            if self._pending:
                exchange = self._pending.popleft()
                if self._queue_paused and len(self._pending) < _MAX_PIPELINED // 2:
                    self._queue_paused = False
                    self._set_reading()
                continue
            self._current = None
            if self.in_head:
                self.phase = HEAD
                self.deadline = self.head_started + front.settings.header_timeout
            else:
                self.phase = IDLE
                self.deadline = front.now() + front.settings.idle_timeout
                if front.draining:
                    self._task = None
                    self.close()
                    return
            waiter = self._next_request = loop.create_future()
            self._idle_seen = False
            del exchange  # not held while the connection idles
            following = await waiter
            if following is None:
                return  # let go by the guard (self._task is already None)
            # Held by `exchange` alone: the `del` above lets it go at the next idle wait.
            exchange, following = following, None

    # -- refusals -------------------------------------------------------------------------

    def _header_too_large(self) -> HeaderTooLarge:
        limit = self.front.settings.max_header_bytes
        return HeaderTooLarge(f"request line and headers are over {limit} bytes")

    def _parse_failed(self, error: ProxyError) -> None:
        """The bytes cannot be parsed further: answer in turn, then close."""
        parsing, self._parsing = self._parsing, None
        self._stop_parsing()
        if parsing is not None and parsing.body is not None and not self.in_head:
            parsing.body.fail(error)  # the request being read gets the error as its body's
            parsing.closes = True
            return
        self.in_head = False
        refused = Exchange(self, "", "", "1.1", _NO_HEADERS, None, False)
        refused.refusal = error
        self._enqueue(refused)

    def _stop_parsing(self) -> None:
        self._parser = None
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    # -- the guard's checks ---------------------------------------------------------------

    def check(self, now: float) -> None:
        """Enforce the phase's timeout (called by the guard's timer)."""
        settings = self.front.settings
        waiter = self._next_request
        if waiter is not None:
            if self._idle_seen and not waiter.done():
                # Idle since the last tick: the task ends, the next request starts another.
                self._next_request = None
                self._task = None
                waiter.set_result(None)
            self._idle_seen = True
        if self.phase != BUSY:
            if now >= self.deadline:
                if self.phase == HEAD:
                    self.front.timed_out("header")
                    self._write_quietly(self.front.header_timeout_answer)
                    self.close()
                else:
                    self.front.timed_out("idle")
                    self.close()
            return
        current = self._current
        body = current.body if current is not None else None
        if (
            body is not None
            and body.waiting_since is not None
            and now - body.waiting_since >= settings.body_timeout
        ):
            self.front.timed_out("body")
            assert current is not None
            current.closes = True
            body.fail(self.front.body_timeout_error())
        if self.paused_since is not None and now - self.paused_since >= settings.send_timeout:
            self.front.timed_out("send")
            if current is not None:
                current.close_reason = "client-send-timeout"
            self.abort()

    def _write_quietly(self, data: bytes) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(data)
