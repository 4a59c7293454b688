"""The one place the proxy talks HTTP to AWS: pooled connections, exceptions mapped.

Every exception raised by an upstream send is translated here into UpstreamUnavailable or
UpstreamTimeout (streamed bodies: see `stream_body`), so nothing above this module knows the
transport's error tree.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from proxy.config.model import UpstreamConfig
from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.upstream.http1 import (
    Body,
    Http1Error,
    Http1Pool,
    Http1Response,
    OpenConnection,
    Origin,
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

    def __init__(self, config: UpstreamConfig, open_connection: OpenConnection = open_tcp) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._pool = Http1Pool(
            size=config.pool_size,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            ssl_context=_ssl_context(config),
            open_connection=open_connection,
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
        where = f"{origin.scheme}://{origin.host}:{origin.port}"
        try:
            answer = await self._pool.request(
                origin, method, target, headers, body, deadline, preload=SMALL_BODY
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {where} did not answer in time") from exc
        except (OSError, Http1Error, asyncio.IncompleteReadError) as exc:
            raise UpstreamUnavailable(f"upstream {where} failed: {_describe(exc)}") from exc
        if answer.preloaded is not None:
            answer.release()
            return UpstreamResponse(answer.status, answer.headers, answer.preloaded, None)
        if answer.status < 300:
            return UpstreamResponse(answer.status, answer.headers, None, answer)
        try:
            payload = await answer.read(MAX_ERROR_BODY)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {where} stalled sending its answer") from exc
        except (OSError, Http1Error, asyncio.IncompleteReadError) as exc:
            raise UpstreamUnavailable(f"upstream {where} failed: {_describe(exc)}") from exc
        finally:
            answer.release()
        return UpstreamResponse(answer.status, answer.headers, payload, None)


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
    except TimeoutError as exc:
        raise UpstreamTimeout("upstream stalled in the middle of the body") from exc
    except (OSError, Http1Error, asyncio.IncompleteReadError) as exc:
        raise UpstreamUnavailable(
            f"upstream failed in the middle of the body: {_describe(exc)}"
        ) from exc
