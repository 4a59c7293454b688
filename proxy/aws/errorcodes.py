"""The AWS error code of an error response, whichever protocol wrote it.

Pure and cheap on any input: the body is never given to an XML parser (no entity expansion, no
deep recursion); XML codes are found with plain substring searches, JSON only when the body is a
small object. Where each protocol puts its code (shared/REFERENCE.md §2):

- query:        <ErrorResponse><Error><Code>X</Code>
- EC2:          <Response><Errors><Error><Code>X</Code>
- REST-XML/S3:  <Error><Code>X</Code>
- JSON:         {"__type": "com.amazon.coral.service#X"}  (after the last '#', before ':')
- REST-JSON:    x-amzn-ErrorType: X:http://... header, then body "code" / "Code"
- RPC v2 CBOR:  the text string after the map key "__type" (found by bytes, not decoded)
- empty or HTML bodies (typically a 5xx from a load balancer): no code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

# AWS error documents are a few hundred bytes; looking further only costs time on garbage.
SCAN_LIMIT = 64 * 1024
MAX_CODE_LENGTH = 128

_ERROR_ELEMENT = re.compile(r"<Error[\s>]")
_CODE_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
_JSON_CODE_KEYS = ("__type", "code", "Code")
# CBOR: text string (major type 3) of length 6, then "__type".
_CBOR_TYPE_KEY = b"\x66__type"


def error_code(headers: Mapping[str, str], body: bytes | None) -> str | None:
    """The error code of a response, or None when it carries none (empty, HTML, garbage).

    `headers` must be case-insensitive (aiohttp's CIMultiDictProxy, or any Mapping whose keys
    are already in the spelling AWS uses)."""
    from_header = headers.get("x-amzn-ErrorType") or headers.get("x-amzn-errortype")
    if from_header:
        code = clean_code(from_header)
        if code:
            return code
    if not body:
        return None
    if _CBOR_TYPE_KEY in body[:SCAN_LIMIT]:
        return _cbor_code(body[:SCAN_LIMIT])
    text = body[:SCAN_LIMIT].decode("utf-8", errors="replace").lstrip()
    if text.startswith("{"):
        return _json_code(text)
    if text.startswith("<"):
        return _xml_code(text)
    return None


def clean_code(raw: str) -> str | None:
    """The bare code from a namespaced or annotated value, or None if it is not code-shaped.

    `aws.protocoltests#ThrottlingException` and `ThrottlingException:http://internal...` both
    give `ThrottlingException`; anything with other characters is rejected so a code can never
    smuggle arbitrary text into a metric label or a log line."""
    code = raw.rsplit("#", 1)[-1].split(":", 1)[0].strip()
    if not code or len(code) > MAX_CODE_LENGTH or not _CODE_CHARS.fullmatch(code):
        return None
    return code


def _xml_code(text: str) -> str | None:
    # The first <Code> inside the first <Error> element: query, EC2 (<Errors><Error>) and S3
    # all put it there. Substring searches keep this linear on hostile input.
    error_at = _ERROR_ELEMENT.search(text)
    if error_at is None:
        return None
    start = text.find("<Code>", error_at.end())
    if start < 0:
        return None
    start += len("<Code>")
    end = text.find("</Code>", start, start + MAX_CODE_LENGTH + 64)
    if end < 0:
        return None
    return clean_code(text[start:end])


def _json_code(text: str) -> str | None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    for key in _JSON_CODE_KEYS:
        value = document.get(key)
        if isinstance(value, str):
            code = clean_code(value)
            if code:
                return code
    return None


def _cbor_code(body: bytes) -> str | None:
    # The value after the key must be a definite-length text string: one header byte 0x60-0x77
    # (length in the byte) or 0x78 followed by a one-byte length. Anything else: no code.
    at = body.find(_CBOR_TYPE_KEY) + len(_CBOR_TYPE_KEY)
    if at >= len(body):
        return None
    head = body[at]
    if 0x60 <= head <= 0x77:
        start, length = at + 1, head - 0x60
    elif head == 0x78 and at + 1 < len(body):
        start, length = at + 2, body[at + 1]
    else:
        return None
    raw = body[start : start + length]
    if len(raw) != length:
        return None
    return clean_code(raw.decode("utf-8", errors="replace"))
