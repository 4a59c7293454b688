"""The one place the proxy talks HTTP to AWS: pooled connections, exceptions mapped.

Every exception raised while sending, reading the answer's head and body, or streaming it
(`stream_body`) goes through one function, `map_upstream_error` (as httpx's
map_httpcore_exceptions), so nothing above this module knows the transport's error tree:

  PoolSlotTimeout                       -> PoolExhausted        (nothing sent: not an attempt)
  TimeoutError                          -> UpstreamTimeout
  MalformedResponse                     -> UpstreamBadResponse  (final, never forwarded)
  OSError, Http1Error, IncompleteRead   -> UpstreamUnavailable
  ClientBodyFailed                      -> the client's own failure: a ProxyError it raised,
                                           BadRequest (short body), ClientBodyTimeout (stall)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from proxy.config.model import UpstreamConfig
from proxy.errors import (
    BadRequest,
    ClientBodyTimeout,
    PoolExhausted,
    ProxyError,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.observability.metrics import Metrics
from proxy.upstream.http1 import (
    Body,
    ClientBodyFailed,
    Http1Error,
    Http1Pool,
    Http1Response,
    MalformedResponse,
    OpenConnection,
    Origin,
    PoolSlotTimeout,
    open_tcp,
)

# Error bodies are read whole so the retry verdict can see the error code; AWS error documents
# are a few hundred bytes, this cap keeps a misbehaving upstream from filling memory.
MAX_ERROR_BODY = 1024 * 1024
# Successful answers up to this size are read whole too: one write back to the client instead
# of a streamed response costs far less for the typical small API answer.
SMALL_BODY = 64 * 1024


@dataclass(slots=True)
class UpstreamResponse:
    """One upstream answer.

    `body` holds the whole body when it was read here: always for status >= 300 (the retry
    verdict needs the error code), and for small successful answers (one write back to the
    client). Otherwise `body` is None and the payload is read from `stream`.
    """

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes | None
    stream: Http1Response | None

    def release(self) -> None:
        """Give the connection back to the pool (or close it if the body was not drained)."""
        if self.stream is not None:
            self.stream.release()


class UpstreamClient:
    """Pooled keep-alive connections for proxied traffic, timeouts on every call.

    `session` is a separate aiohttp ClientSession for the proxy's own low-volume calls
    (STS, IMDS, container credentials), where aiohttp's conveniences are worth their cost.
    """

    def __init__(
        self,
        config: UpstreamConfig,
        open_connection: OpenConnection = open_tcp,
        metrics: Metrics | None = None,
    ) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._pool = Http1Pool(
            size=config.pool_size,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            ssl_context=_ssl_context(config),
            open_connection=open_connection,
            on_slot_wait=metrics.upstream_pool_wait_seconds.observe if metrics else None,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session for credential providers."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_ssl_context(self._config)),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self._config.connect_timeout,
                    sock_read=self._config.read_timeout,
                ),
            )
        return self._session

    async def close(self) -> None:
        await self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        origin: Origin,
        target: str,
        headers: list[tuple[str, str]],
        body: Body,
        deadline: float | None = None,
    ) -> UpstreamResponse:
        """Send one request; `target` (path and query) and `headers` go exactly as signed.
        `deadline` (event-loop time) bounds the wait for the answer below read_timeout."""
        try:
            answer = await self._pool.request(
                origin, method, target, headers, body, deadline, preload=SMALL_BODY
            )
        except _TRANSPORT_ERRORS as exc:
            raise map_upstream_error(exc, _where(origin)) from exc
        if answer.preloaded is not None:
            answer.release()
            return UpstreamResponse(answer.status, answer.headers, answer.preloaded, None)
        if answer.status < 300:
            return UpstreamResponse(answer.status, answer.headers, None, answer)
        try:
            payload = await answer.read(MAX_ERROR_BODY)
        except _TRANSPORT_ERRORS as exc:
            raise map_upstream_error(exc, f"{_where(origin)} sending its answer") from exc
        finally:
            answer.release()
        return UpstreamResponse(answer.status, answer.headers, payload, None)


def _where(origin: Origin) -> str:
    """The upstream named in an error (built only when there is one)."""
    return f"upstream {origin.scheme}://{origin.host}:{origin.port}"


# What the pool raises; anything else is a bug of ours and stays as it is.
_TRANSPORT_ERRORS = (OSError, Http1Error, asyncio.IncompleteReadError, ClientBodyFailed)


def map_upstream_error(exc: BaseException, where: str) -> Exception:
    """The proxy's error for a failure on the upstream side (`where` names the upstream).

    The one mapping from transport exceptions to the error tree (see the module docstring)."""
    if isinstance(exc, ClientBodyFailed):
        return _client_failure(exc.failure)
    if isinstance(exc, PoolSlotTimeout):
        return PoolExhausted(f"{where}: {exc}; raise upstream.pool_size or lower the load")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{where} did not answer in time")
    if isinstance(exc, MalformedResponse):
        return UpstreamBadResponse(f"{where} sent a malformed answer: {exc}")
    return UpstreamUnavailable(f"{where} failed: {_describe(exc)}")


def _client_failure(failure: Exception) -> Exception:
    """A streamed upload failed on the client's side: say so, and never blame the upstream."""
    if isinstance(failure, ProxyError):
        return failure  # the client side already named it
    if isinstance(failure, asyncio.IncompleteReadError):
        return BadRequest("the client sent fewer body bytes than its Content-Length")
    if isinstance(failure, TimeoutError):
        return ClientBodyTimeout("the client stopped sending its body")
    return failure  # a connection the client dropped: recorded as the client's (499)


def _ssl_context(config: UpstreamConfig) -> ssl.SSLContext:
    if not config.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=config.ca_bundle)


async def read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or ClientPayloadError once it passes `limit` bytes (never more held)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > limit:
            raise aiohttp.ClientPayloadError(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.IncompleteReadError | Http1Error):
        return str(exc) or "connection closed early"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


async def stream_body(response: UpstreamResponse) -> AsyncIterator[bytes]:
    """The streamed body; a failure mid-body becomes UpstreamUnavailable/UpstreamTimeout."""
    if response.stream is None:
        return
    try:
        async for piece in response.stream.iter_chunks():
            yield piece
    except _TRANSPORT_ERRORS as exc:
        raise map_upstream_error(exc, "upstream mid-body") from exc
