"""The one place where client-side failures (parser, socket, asyncio) become ProxyErrors.

As httpx maps its transport's exceptions in one function, everything the connection layer
raises or sees from the client goes through `client_error`, so the pipeline only ever handles
the proxy's own error tree, and each failure is counted where it happened: on the client.
"""

from __future__ import annotations

import httptools

from proxy.errors import (
    BadRequest,
    ClientBodyIncomplete,
    ClientClosed,
    ProxyError,
    VersionNotSupported,
)


def client_error(exc: BaseException, *, in_body: bool = False) -> ProxyError:
    """The ProxyError for `exc`, raised while reading a request (`in_body`: inside its body)."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, httptools.HttpParserCallbackError):
        # One of our callbacks refused (a cap): the parser wraps what it raised.
        cause = exc.__context__
        if isinstance(cause, ProxyError):
            return cause
        return BadRequest("the request could not be parsed")
    if isinstance(exc, httptools.HttpParserError):
        detail = str(exc) or type(exc).__name__
        if "HTTP version" in detail:
            return VersionNotSupported("only HTTP/1.0 and HTTP/1.1 are spoken here")
        if in_body:
            return ClientBodyIncomplete(f"the request body is malformed: {detail}")
        return BadRequest(f"malformed request: {detail}")
    if isinstance(exc, ConnectionError | OSError):
        return ClientClosed(f"the client connection failed: {type(exc).__name__}")
    return BadRequest(f"the request could not be read: {type(exc).__name__}")
