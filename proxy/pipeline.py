"""The request path, in order, in one place.

route → read body → classify → limit → attempt loop (credentials → sign → send → judge,
backoff) → stream back; metrics and one structured log line per request.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDictProxy

from proxy.aws_errors import ERROR_HEADER, render_error
from proxy.bodies import ClientBody, declared_length, read_client_body, sha256_hex
from proxy.clock import Clock
from proxy.config import Config
from proxy.credentials.base import CredentialSource
from proxy.errors import BadRequest, ProxyError
from proxy.headers import forwardable_request_headers, response_headers
from proxy.logs import get_logger
from proxy.metrics import Metrics, status_class
from proxy.operations import Operation, classify
from proxy.ratelimit import RateLimiter
from proxy.retry import AttemptRunner
from proxy.routing import Router, Target
from proxy.sigv4 import SigningKeyCache, sign
from proxy.streaming import streaming_upload
from proxy.upstream import UpstreamClient, UpstreamResponse

log = get_logger("proxy.request")

ATTEMPTS_HEADER = "x-throttle-proxy-attempts"
# Response headers AWS uses for its request id, in the order we look for them.
_REQUEST_ID_HEADERS = ("x-amzn-RequestId", "x-amz-request-id", "x-amzn-requestid")
_S3_SERVICES = frozenset({"s3", "s3express", "s3-object-lambda"})
_request_ids = itertools.count(1)
_ID_PREFIX = os.urandom(4).hex()


@dataclass
class RequestContext:
    """What one request learned on its way through, for the log line and the metrics."""

    request_id: str
    started: float
    method: str
    target: Target | None = None
    operation: Operation | None = None
    attempts: int = 0
    waited: float = 0.0
    status: int = 0
    aws_request_id: str | None = None
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineParts:
    """Everything the pipeline calls; swapped whole on reload."""

    config: Config
    router: Router
    limiter: RateLimiter
    attempts: AttemptRunner


class RequestPipeline:
    """Handles one client request end to end (the aiohttp low-level handler)."""

    def __init__(
        self,
        parts: PipelineParts,
        *,
        credentials: CredentialSource,
        upstream: UpstreamClient,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.parts = parts
        self._credentials = credentials
        self._upstream = upstream
        self._metrics = metrics
        self._clock = clock
        self._keys = SigningKeyCache()
        self._debug = parts.config.log_level == "debug"

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ctx = RequestContext(
            request_id=f"{_ID_PREFIX}-{next(_request_ids):x}",
            started=time.perf_counter(),
            method=request.method,
        )
        parts = self.parts  # one config for the whole request, even across a reload
        self._metrics.inflight_requests.inc()
        try:
            response = await self._proxy(request, parts, ctx)
        except ProxyError as error:
            response = await self._answer_error(request, error, ctx)
        finally:
            self._metrics.inflight_requests.dec()
        self._record(ctx)
        return response

    async def _proxy(
        self, request: web.BaseRequest, parts: PipelineParts, ctx: RequestContext
    ) -> web.StreamResponse:
        config = parts.config
        target = parts.router.resolve(request.method, request.raw_path, request.headers.get("Host"))
        ctx.target = target
        service = target.endpoint.service
        streamable = service in _S3_SERVICES and request.method in ("PUT", "POST")
        body = await read_client_body(
            request.content,
            declared_length(request.headers.get("Content-Length")),
            config.max_buffered_body,
            streamable,
        )
        op = classify(
            request.method, target.endpoint, target.path, target.query, request.headers, body.data
        )
        ctx.operation = op
        ctx.waited = await parts.limiter.acquire(op)
        headers = forwardable_request_headers(request.headers)
        payload_hash = await sha256_hex(body.data) if body.data is not None else None

        async def send(attempt: int) -> UpstreamResponse:
            ctx.attempts = attempt
            return await self._send_once(
                request.method, target, headers, body, payload_hash, config
            )

        result = await parts.attempts.run(op, send, body.replayable)
        ctx.attempts = result.attempts
        return await self._stream_back(request, result.response, ctx)

    async def _send_once(
        self,
        method: str,
        target: Target,
        headers: list[tuple[str, str]],
        body: ClientBody,
        payload_hash: str | None,
        config: Config,
    ) -> UpstreamResponse:
        # A fresh snapshot and signature for every attempt: a retry may cross a refresh.
        creds = await self._credentials.get()
        now = self._clock.time()
        if payload_hash is not None and body.data is not None:
            signed = sign(target.to_sign(method, headers, payload_hash), creds, now, self._keys)
            url = _url(target, signed.path, signed.query)
            if self._debug:
                # Header values go through the log redaction (Authorization, token, signature).
                log.debug("upstream-attempt", url=url, headers=dict(signed.headers))
            return await self._upstream.send(method, url, signed.headers, body.data)
        upload = streaming_upload(
            method=method,
            target=target,
            headers=headers,
            body=body,
            creds=creds,
            now=now,
            keys=self._keys,
            unsigned_over_https=config.unsigned_payload,
        )
        return await self._upstream.send(
            method, _url(target, upload.path, upload.query), upload.headers, upload.body
        )

    async def _stream_back(
        self, request: web.BaseRequest, upstream: UpstreamResponse, ctx: RequestContext
    ) -> web.StreamResponse:
        ctx.status = upstream.status
        ctx.aws_request_id = _aws_request_id(upstream.headers)
        response = web.StreamResponse(status=upstream.status, reason=None)
        response.headers.extend(response_headers(upstream.headers))
        response.headers[ATTEMPTS_HEADER] = str(ctx.attempts)
        length = upstream.headers.get("Content-Length")
        try:
            if upstream.body is not None:
                response.content_length = len(upstream.body)
                await response.prepare(request)
                await response.write(upstream.body)
            else:
                if length is not None and length.isdigit():
                    response.content_length = int(length)
                await response.prepare(request)
                if upstream.stream is not None and request.method != "HEAD":
                    async for chunk in upstream.stream.iter_any():
                        await response.write(chunk)
            await response.write_eof()
        finally:
            upstream.release()
        return response

    async def _answer_error(
        self, request: web.BaseRequest, error: ProxyError, ctx: RequestContext
    ) -> web.StreamResponse:
        ctx.error = error.reason
        ctx.attempts = max(ctx.attempts, getattr(error, "attempts", 0))
        protocol = ctx.operation.protocol if ctx.operation else "plain"
        answer = render_error(error, protocol, ctx.request_id)
        ctx.status = answer.status
        self._metrics.client_errors_total.labels(error.reason).inc()
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        if ctx.attempts:
            response.headers[ATTEMPTS_HEADER] = str(ctx.attempts)
        if isinstance(error, BadRequest) or request.method == "CONNECT":
            # The connection may hold unread garbage; do not reuse it.
            response.force_close()
        return response

    def _record(self, ctx: RequestContext) -> None:
        duration = time.perf_counter() - ctx.started
        service = ctx.target.endpoint.service if ctx.target else "unknown"
        operation = ctx.operation.label if ctx.operation else "other"
        self._metrics.requests_total.labels(service, operation, status_class(ctx.status)).inc()
        self._metrics.request_duration_seconds.labels(service, operation).observe(duration)
        log.info(
            "request",
            request_id=ctx.request_id,
            method=ctx.method,
            host=ctx.target.host_header if ctx.target else None,
            service=service,
            operation=ctx.operation.name if ctx.operation else None,
            status=ctx.status,
            duration_ms=round(duration * 1000, 2),
            attempts=ctx.attempts,
            waited_ms=round(ctx.waited * 1000, 2),
            aws_request_id=ctx.aws_request_id,
            error=ctx.error,
        )


def _url(target: Target, path: str, query: str) -> str:
    return f"{target.origin}{path}?{query}" if query else f"{target.origin}{path}"


def _aws_request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


__all__ = ["ERROR_HEADER", "PipelineParts", "RequestPipeline"]
