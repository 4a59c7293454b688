"""A fake AWS endpoint that answers each attempt of a request as its script says.

A request names its script with the header `x-test-script: <name>`; the n-th request carrying
that name gets the script's n-th reply (the last reply repeats once the script runs out).
Requests without a script get `200 ok`. A reply sets the status, the error code and the
protocol format it is written in (query, ec2, json, rest-json, rest-xml, empty, html), a delay,
a connection reset instead of an answer, and `x-amz-retry-after` / `Retry-After`. Every request
is recorded with its headers and body so tests can count attempts and check signatures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from tests.fakes import serve

SCRIPT_HEADER = "x-test-script"
ErrorFormat = Literal["query", "ec2", "json", "rest-json", "rest-xml", "empty", "html"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    code: str | None = None
    error_format: ErrorFormat = "empty"
    delay: float = 0.0
    reset: bool = False
    amz_retry_after_ms: int | None = None
    retry_after: str | None = None
    body: bytes = b"ok"


def ok(body: bytes = b"ok", delay: float = 0.0) -> Reply:
    return Reply(200, body=body, delay=delay)


def error(
    status: int,
    code: str | None,
    error_format: ErrorFormat,
    *,
    delay: float = 0.0,
    amz_retry_after_ms: int | None = None,
    retry_after: str | None = None,
) -> Reply:
    """An AWS-style error answer written in `error_format`."""
    return Reply(
        status,
        code,
        error_format,
        delay=delay,
        amz_retry_after_ms=amz_retry_after_ms,
        retry_after=retry_after,
    )


RESET = Reply(reset=True)


@dataclass(frozen=True)
class RecordedAttempt:
    """One request as the upstream received it."""

    script: str | None
    number: int  # 1-based, per script
    method: str
    path_qs: str  # raw, exactly as sent
    headers: tuple[tuple[str, str], ...]
    body: bytes
    received_at: float  # time.monotonic()

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


class ScriptedUpstream:
    """The fake's scripts and records; serve it with `async with upstream.running() as url`."""

    def __init__(self) -> None:
        self._scripts: dict[str, tuple[Reply, ...]] = {}
        self._counters: dict[str, itertools.count[int]] = {}
        self.attempts: list[RecordedAttempt] = []

    def script(self, name: str, *replies: Reply) -> None:
        """Answer the requests named `name` with `replies`, in order (the last one repeats)."""
        if not replies:
            raise ValueError("a script needs at least one reply")
        self._scripts[name] = replies
        self._counters[name] = itertools.count(1)

    def attempts_of(self, name: str) -> list[RecordedAttempt]:
        return [a for a in self.attempts if a.script == name]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        async with serve(app) as url:
            yield url

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        name = request.headers.get(SCRIPT_HEADER)
        replies = self._scripts.get(name or "")
        number = next(self._counters[name]) if name in self._counters else 1
        self.attempts.append(
            RecordedAttempt(
                name,
                number,
                request.method,
                request.raw_path,
                _raw_headers(request),
                body,
                time.monotonic(),
            )
        )
        reply = replies[min(number, len(replies)) - 1] if replies else ok()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.reset:
            return _reset(request)
        return _answer(reply, number)


def _raw_headers(request: web.Request) -> tuple[tuple[str, str], ...]:
    # The exact names, order and repeats the proxy sent (request.headers would merge them).
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)


def _reset(request: web.Request) -> web.StreamResponse:
    # Abort the socket without a response: the client sees the connection drop mid-request.
    transport = request.transport
    assert transport is not None
    transport.abort()
    return web.Response(status=500)


def _answer(reply: Reply, number: int) -> web.Response:
    request_id = f"scripted-{number}"
    headers = {"x-amzn-RequestId": request_id}
    if reply.amz_retry_after_ms is not None:
        headers["x-amz-retry-after"] = str(reply.amz_retry_after_ms)
    if reply.retry_after is not None:
        headers["Retry-After"] = reply.retry_after
    if reply.status < 300:
        return web.Response(status=reply.status, body=reply.body, headers=headers)
    body, content_type = _error_body(reply, request_id, headers)
    headers["Content-Type"] = content_type
    return web.Response(status=reply.status, body=body, headers=headers)


def _error_body(reply: Reply, request_id: str, headers: dict[str, str]) -> tuple[bytes, str]:
    code = reply.code or "InternalError"
    message = "scripted error"
    fmt = reply.error_format
    if fmt == "query":
        text = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return text.encode(), "text/xml"
    if fmt == "ec2":
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return text.encode(), "text/xml;charset=UTF-8"
    if fmt == "json":
        document = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
        return json.dumps(document).encode(), "application/x-amz-json-1.0"
    if fmt == "rest-json":
        headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/com.amazon.coral/"
        return json.dumps({"message": message}).encode(), "application/json"
    if fmt == "rest-xml":
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return text.encode(), "application/xml"
    if fmt == "html":
        text = f"<html><body><h1>{reply.status} Service Unavailable</h1></body></html>"
        return text.encode(), "text/html"
    return b"", "text/plain"


_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


def signature_is_valid(attempt: RecordedAttempt, secret_key: str) -> bool:
    """Recompute the attempt's SigV4 signature with botocore (the reference) and compare."""
    authorization = attempt.header("Authorization") or ""
    match = _AUTHORIZATION.match(authorization)
    amz_date = attempt.header("X-Amz-Date")
    host = attempt.header("Host")
    if match is None or amz_date is None or host is None:
        return False
    signed = match["signed"].split(";")
    signed_headers: dict[str, str] = {}
    for name, value in attempt.headers:
        if name.lower() in signed:  # repeats are joined, as SigV4 canonicalises them
            previous = signed_headers.get(name)
            signed_headers[name] = value if previous is None else f"{previous},{value}"
    request = AWSRequest(
        method=attempt.method,
        url=f"https://{host}{attempt.path_qs}",
        data=attempt.body,
        headers=signed_headers,
    )
    request.context["timestamp"] = amz_date
    credentials = BotocoreCredentials(
        match["key"], secret_key, attempt.header("X-Amz-Security-Token")
    )
    signer_class = S3SigV4Auth if match["service"] == "s3" else SigV4Auth
    signer = signer_class(credentials, match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return bool(expected == match["signature"])
