"""Pure HTTP/1.1 response framing: parse a response head strictly and decide how its body ends.

Strict because a proxy forwards what it parses: an answer whose framing two parsers could read
two ways (Content-Length and Transfer-Encoding together, two lengths, a bare CR or LF inside a
header) is how responses get smuggled or truncated, so such an answer is refused whole
(MalformedResponse) before anything of it reaches the client. RFC 9112 §6.3 and §11.2; the
same rules llhttp, nginx and Envoy apply in their strict modes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from multidict import CIMultiDict, CIMultiDictProxy

_NO_BODY_STATUSES = frozenset({204, 304})
# status-line = HTTP-version SP 3DIGIT SP reason-phrase; the reason may be empty (and some
# servers omit the space before an empty one). Visible ASCII, SP, HTAB and obs-text only.
_STATUS = rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?"
# field-line = token ":" OWS field-value OWS, each line ended by CRLF. A CR, LF, NUL or other
# control byte anywhere inside a line fails this, and so does an obs-fold continuation line.
_FIELDS = rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*"
_STATUS_LINE = re.compile(_STATUS)
_FIELD_LINES = re.compile(_FIELDS)
# The whole head in one match (the common case: well formed); the two above say what is wrong.
_HEAD = re.compile(_STATUS + rb"\r\n(" + _FIELDS + rb")\r\n")
# One field of a block that matched _FIELDS, decoded: name, and the value without its leading
# OWS (trailing OWS is rare and cut apart). findall hands over every (name, value) pair from C.
_FIELD = re.compile(r"([^:]+):[\t ]*([^\r]*)\r\n")


class Http1Error(Exception):
    """The upstream spoke something that is not valid HTTP/1.1 (or closed mid-message)."""


class MalformedResponse(Http1Error):
    """The upstream answered, but not in well-framed HTTP/1.1: never forwarded, never retried."""


class ResponseHead(NamedTuple):
    """A parsed head and the framing of the body after it.

    `length`: body bytes to read; None means chunked (when `chunked`) or until close."""

    status: int
    headers: CIMultiDictProxy[str]
    length: int | None
    chunked: bool
    keep_alive: bool


def _short(raw: bytes) -> str:
    """A piece of the upstream's bytes for an error message: one line, at most 60 characters."""
    return repr(raw[:60])


def parse_status_line(line: bytes) -> tuple[int, str]:
    """(status, minor version) of `HTTP/1.x NNN reason`; MalformedResponse otherwise."""
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise MalformedResponse(f"bad status line {_short(line)}")
    return int(match.group(2)), match.group(1).decode("ascii")


def parse_fields(block: bytes) -> CIMultiDictProxy[str]:
    """Header fields from `block` (lines each ending in CRLF, without the final empty line)."""
    if _FIELD_LINES.fullmatch(block) is None:
        bad = next(
            (line for line in block.split(b"\r\n") if not _FIELD_LINES.fullmatch(line + b"\r\n")),
            block,
        )
        raise MalformedResponse(f"bad header line {_short(bad)}")
    return _fields(block)


def _fields(block: bytes) -> CIMultiDictProxy[str]:
    """Header fields of a `block` that matched _FIELDS."""
    # obs-text (bytes >= 0x80) survives the round trip: encode with surrogateescape.
    text = block.decode("utf-8", "surrogateescape")
    fields: list[tuple[str, str]] = _FIELD.findall(text)
    if " \r" in text or "\t\r" in text:
        fields = [(name, value.rstrip(" \t")) for name, value in fields]
    return CIMultiDictProxy(CIMultiDict(fields))


def parse_response_head(head: bytes, method: str) -> ResponseHead:
    """Parse `head` (status line through the empty line) of the answer to `method`."""
    match = _HEAD.fullmatch(head)
    if match is None:
        status_line, _, block = head.partition(b"\r\n")
        parse_status_line(status_line)
        parse_fields(block[:-2])  # the head ends with the empty line's CRLF
        raise MalformedResponse(f"bad response head {_short(head)}")  # no final empty line
    minor_digit, status_digits, block = match.groups()
    status, minor = int(status_digits), "1" if minor_digit == b"1" else "0"
    headers = _fields(block)
    length, chunked = _body_framing(status, minor, headers, method)
    connection = headers.get("Connection", "").lower()
    keep_alive = "close" not in connection and (minor == "1" or "keep-alive" in connection)
    if length is None and not chunked:
        keep_alive = False  # the body ends when the connection does
    return ResponseHead(status, headers, length, chunked, keep_alive)


def _body_framing(
    status: int, minor: str, headers: CIMultiDictProxy[str], method: str
) -> tuple[int | None, bool]:
    """(length, chunked) per RFC 9112 §6.3, refusing every ambiguous combination."""
    codings = headers.getall("Transfer-Encoding", ())
    lengths = headers.getall("Content-Length", ())
    if codings and lengths:
        raise MalformedResponse("answer has both Content-Length and Transfer-Encoding")
    if len(lengths) > 1:
        raise MalformedResponse(f"answer has {len(lengths)} Content-Length headers")
    if codings:
        if minor == "0":
            raise MalformedResponse("HTTP/1.0 answer with Transfer-Encoding")
        if len(codings) > 1 or codings[0].lower() != "chunked":
            raise MalformedResponse(
                f"unsupported Transfer-Encoding {', '.join(codings)[:40]!r} (only chunked)"
            )
    length: int | None = None
    if lengths:
        text = lengths[0]
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise MalformedResponse(f"bad Content-Length {text[:40]!r}")
        length = int(text)
    if method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
        return 0, False
    if codings:
        return None, True
    return length, False
