"""One request and its answer, as the pipeline sees them: no framework, no parser.

The front builds an Exchange when a request's head is parsed and hands it to the pipeline,
which reads `method`, `target`, `headers` and `body` and answers through `respond` (one write:
small answers and errors) or `start` / `write` / `end` (streamed answers). The exchange keeps
the framing honest: a Content-Length it announces is the number of bytes it sends, or the
connection is cut; an answer with no known length is chunked (HTTP/1.1) or ends with the
connection (HTTP/1.0).
"""

from __future__ import annotations

from collections.abc import Collection
from http import HTTPStatus
from typing import TYPE_CHECKING

from multidict import CIMultiDict

from proxy.errors import ProxyError

if TYPE_CHECKING:
    from proxy.front.body import RequestBody
    from proxy.front.protocol import FrontConnection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES: dict[int, str] = {}
_NO_BODY_STATUSES = frozenset({204, 304})
_join_lines = "\r\n".join
_join_field = ": ".join  # ("name", "value") -> "name: value"
Headers = Collection[tuple[str, str]]  # sized: the line count checks the head


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n"
    return line


class Exchange:
    """A parsed request (read side) and the writer of its one answer (write side)."""

    __slots__ = (
        "_conn",
        "_continued",
        "_reserved",
        "_sent",
        "_to_send",
        "body",
        "chunked",
        "close_reason",
        "closes",
        "finished",
        "headers",
        "method",
        "refusal",
        "started",
        "target",
        "version",
    )

    def __init__(
        self,
        conn: FrontConnection,
        method: str,
        target: str,
        version: str,
        headers: CIMultiDict[str],
        body: RequestBody | None,
        keep_alive: bool,
    ) -> None:
        self._conn = conn
        self.method = method
        self.target = target  # the raw request target: origin form or absolute form
        self.version = version
        self.headers = headers
        self.body = body  # None: no body at all (no Content-Length, not chunked)
        self.closes = not keep_alive  # the connection ends after this answer
        # Set by the front for a request it refuses (parser error, cap, version): the
        # pipeline answers it like any other refusal, in order, logged and counted.
        self.refusal: ProxyError | None = None
        # Why the front cut the connection (send timeout), for the log line.
        self.close_reason: str | None = None
        self.started = False
        self.finished = False
        self.chunked = False
        self._continued = False
        self._reserved = 0
        self._to_send: int | None = None  # bytes the announced Content-Length still owes
        self._sent = 0

    # -- read side ---------------------------------------------------------------------

    def reserve_body(self, size: int) -> None:
        """Count `size` body bytes against buffered_body_budget until the request ends;
        Overloaded (503, Retry-After) when the budget cannot take them."""
        self._conn.front.budget.take(size)
        self._reserved += size

    def send_continue(self) -> None:
        """Answer `Expect: 100-continue`: the client may send its body now."""
        if self._continued or self.started or self.version != "1.1":
            return
        self._continued = True
        if self.body is not None and not self.body.complete:
            self._conn.write(_CONTINUE)

    @property
    def body_complete(self) -> bool:
        return self.body is None or self.body.complete

    @property
    def body_arriving(self) -> bool:
        """The client may still be sending this request's body (it was answered unread)."""
        return self.body is not None and self.body.arriving

    # -- write side --------------------------------------------------------------------

    def _head(self, status: int, headers: Headers, framing: str) -> bytes:
        if self.body is not None and not self.body.complete:
            # Unread body bytes would be parsed as the next request: this answer is the last.
            self.closes = True
        if self._conn.front.draining:
            self.closes = True
        connection = (
            "Connection: close\r\n"
            if self.closes
            else ("Connection: keep-alive\r\n" if self.version == "1.0" else "")
        )
        status_line = _status_line(status)
        if headers:
            # ": ".join makes each "name: value" in C: no Python-level loop over the headers.
            head = f"{status_line}{_join_lines(map(_join_field, headers))}\r\n"
        else:
            head = status_line
        lines = len(headers) + 1
        if head.count("\n") != lines or head.count("\r") != lines or "\0" in head:
            # Every CR and LF must be a line end written here: never a header injected.
            raise ValueError("refusing to send a header with CR, LF or NUL")
        return f"{head}{framing}{connection}\r\n".encode("utf-8", "surrogateescape")

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """The whole answer in one write (small answers, errors)."""
        if self.started:
            raise RuntimeError("a second answer to one request")
        self.started = True
        if status in _NO_BODY_STATUSES:
            # 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6).
            self._conn.write(self._head(status, headers, ""))
        else:
            head = self._head(status, headers, f"Content-Length: {len(body)}\r\n")
            self._conn.write(head if self.method == "HEAD" else head + body)
        self.finished = True

    def start(self, status: int, headers: Headers, length: int | None) -> None:
        """Send the head of a streamed answer of `length` bytes (None: not known)."""
        if self.started:
            raise RuntimeError("a second answer to one request")
        self.started = True
        if status in _NO_BODY_STATUSES:
            framing = ""
            self._to_send = 0
        elif length is not None:
            framing = f"Content-Length: {length}\r\n"
            self._to_send = 0 if self.method == "HEAD" else length
        elif self.version == "1.1":
            framing = "Transfer-Encoding: chunked\r\n"
            self.chunked = self.method != "HEAD"
        else:
            framing = ""
            self.closes = True  # HTTP/1.0: the end of the connection ends the body
        self._conn.write(self._head(status, headers, framing))

    async def write(self, data: bytes) -> None:
        """Send body bytes; waits while the client is not reading (up to send_timeout)."""
        if not data:
            return
        if self._to_send is not None:
            if self._sent + len(data) > self._to_send:
                self.abort("more body than the announced Content-Length")
                return
            self._sent += len(data)
        if self.chunked:
            self._conn.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._conn.write(data)
        await self._conn.drain()

    def end(self) -> None:
        """The streamed answer is complete."""
        if self._to_send is not None and self._sent != self._to_send:
            # The client was promised more bytes than exist: only a cut connection says so.
            self.abort("body shorter than the announced Content-Length")
            return
        if self.chunked:
            self._conn.write(b"0\r\n\r\n")
        self.finished = True

    def abort(self, why: str) -> None:
        """Cut the connection: a started answer cannot be completed honestly."""
        self.closes = True
        self.close_reason = self.close_reason or why
        self._conn.abort()

    def abort_quietly(self) -> None:
        """Cut the connection without an answer (a fault rule's `reset` at the client)."""
        self.closes = True
        self._conn.abort()

    def release(self) -> None:
        """The request is over: give its body bytes back to the budget."""
        if self._reserved:
            self._conn.front.budget.give_back(self._reserved)
            self._reserved = 0
