"""The one place the proxy talks HTTP to AWS: one pooled aiohttp session, exceptions mapped.

Every aiohttp/asyncio exception raised by an upstream send is translated here into
UpstreamUnavailable or UpstreamTimeout, so nothing above this module knows aiohttp's error tree.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamTimeout, UpstreamUnavailable

# Error bodies are read whole so the retry verdict can see the error code; AWS error documents
# are a few hundred bytes, this cap keeps a misbehaving upstream from filling memory.
MAX_ERROR_BODY = 1024 * 1024

Body = bytes | AsyncIterator[bytes] | None


@dataclass(slots=True)
class UpstreamResponse:
    """One upstream answer.

    For status >= 300 the body is read into `body` (the retry verdict needs the error code);
    otherwise `body` is None and the payload is streamed from `stream`.
    """

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes | None
    stream: aiohttp.StreamReader | None
    _raw: aiohttp.ClientResponse | None = None

    def release(self) -> None:
        """Give the connection back to the pool (or close it if the body was not drained)."""
        if self._raw is not None:
            self._raw.release()
            self._raw = None


class UpstreamClient:
    """The proxy's single ClientSession: pooled keep-alive connections, timeouts on every call."""

    def __init__(self, config: UpstreamConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (credential providers use it for STS, IMDS and containers)."""
        if self._session is None:
            self._session = self._new_session()
        return self._session

    def _new_session(self) -> aiohttp.ClientSession:
        ssl_context: ssl.SSLContext | bool = True
        if not self._config.verify_tls:
            ssl_context = False
        elif self._config.ca_bundle:
            ssl_context = ssl.create_default_context(cafile=self._config.ca_bundle)
        connector = aiohttp.TCPConnector(
            limit=self._config.pool_size,
            ssl=ssl_context,
            ttl_dns_cache=60,
            keepalive_timeout=30,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # Bodies pass through byte for byte: no decompression, no cookies, no auto headers
            # that would change what was signed.
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self._config.connect_timeout,
                sock_read=self._config.read_timeout,
            ),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: Body,
    ) -> UpstreamResponse:
        """Send one request; `url` is already encoded exactly as signed (never re-quoted)."""
        try:
            raw = await self.session.request(
                method,
                URL(url, encoded=True),
                headers=list(headers),
                data=body,
                allow_redirects=False,
                compress=None,
                chunked=None,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream {_origin(url)} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"upstream {_origin(url)} failed: {_describe(exc)}") from exc
        if raw.status < 300:
            return UpstreamResponse(raw.status, raw.headers, None, raw.content, raw)
        try:
            payload = await read_capped(raw.content, MAX_ERROR_BODY)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raw.close()
            raise UpstreamTimeout(f"upstream {_origin(url)} stalled sending its error") from exc
        except aiohttp.ClientError as exc:
            raw.close()
            raise UpstreamUnavailable(f"upstream {_origin(url)} failed: {_describe(exc)}") from exc
        raw.release()
        return UpstreamResponse(raw.status, raw.headers, payload, None, None)


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


def _origin(url: str) -> str:
    parsed = URL(url, encoded=True)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed by upstream"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
