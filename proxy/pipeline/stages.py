"""The request path, in order, in one place.

route → (100 Continue) → read body → classify → limit → attempt loop (limit again on a retry →
credentials → sign → send → judge, backoff) → answer; metrics and one structured log line per
request, whatever happened to it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import Counter, Histogram

from proxy.aws.errors import render_error
from proxy.aws.headers import forwardable_request_headers, response_headers
from proxy.aws.operations import Operation, classify, error_protocol
from proxy.aws.routing import Router, Target
from proxy.bodies.client import ClientBody, declared_length, sha256_hex
from proxy.bodies.intake import BodyLimits, read_body, refuse_before_continue
from proxy.bodies.spool import SpoolArea
from proxy.clock import Clock
from proxy.config.model import Config
from proxy.credentials.base import CredentialSource
from proxy.errors import BadRequest, ClientBodyTimeout, PayloadTooLarge, ProxyError
from proxy.faults.stage import FaultInjector
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics, status_class
from proxy.ratelimit import RateLimiter
from proxy.report.recorder import RunRecorder
from proxy.retry import AttemptRunner
from proxy.signing.queryauth import presigned_send
from proxy.signing.sigv4 import SigningKeyCache, sign
from proxy.signing.streaming import streaming_upload
from proxy.upstream.client import UpstreamClient, UpstreamResponse, stream_body

log = get_logger("proxy.request")

ATTEMPTS_HEADER = "x-throttle-proxy-attempts"
# Logged and counted for a client that went away before its answer (nginx's convention).
CLIENT_CLOSED = 499
# Response headers AWS uses for its request id, in the order we look for them.
_REQUEST_ID_HEADERS = ("x-amzn-RequestId", "x-amz-request-id")
_S3_SERVICES = frozenset({"s3", "s3express", "s3-object-lambda"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
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
        faults: FaultInjector | None = None,
        recorder: RunRecorder | None = None,
    ) -> None:
        self.parts = parts
        self.faults = faults or FaultInjector((), None, metrics, clock)
        self.recorder = recorder
        self._credentials = credentials
        self._upstream = upstream
        self._metrics = metrics
        self._clock = clock
        self._keys = SigningKeyCache()
        self._debug = parts.config.log_level == "debug"
        # At warning and above the per-request line is not written: skip building it too.
        self._log_requests = parts.config.log_level in ("debug", "info")
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._spool: SpoolArea | None = None

    def _body_limits(self, config: Config) -> BodyLimits:
        """The body limits of `config`; one spool area (and disk budget) while its settings
        stay the same across reloads."""
        spool = self._spool
        if spool is None or spool.settings != (config.spool_dir, config.spool_budget):
            spool = self._spool = SpoolArea(config.spool_dir, config.spool_budget)
        return BodyLimits(config.max_buffered_body, config.max_body, spool)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ctx = RequestContext(
            request_id=f"{_ID_PREFIX}-{next(_request_ids):x}",
            started=time.perf_counter(),
            method=request.method,
        )
        parts = self.parts  # one config for the whole request, even across a reload
        self._metrics.inflight_requests.inc()
        try:
            return await self._proxy(request, parts, ctx)
        except ProxyError as error:
            return self._answer_error(request, error, ctx)
        except asyncio.IncompleteReadError:
            short = BadRequest("the client sent fewer body bytes than its Content-Length")
            return self._answer_error(request, short, ctx)
        except (asyncio.CancelledError, ConnectionError):
            # The client went away (aiohttp cancels the handler) or the write failed.
            ctx.status, ctx.error = CLIENT_CLOSED, "client-closed"
            raise
        except Exception:
            # A bug of ours: say so in the service's format, log it, keep serving the rest.
            log.exception("internal-error", request_id=ctx.request_id)
            internal = ProxyError("internal error in throttle-proxy; see its log")
            return self._answer_error(request, internal, ctx)
        finally:
            self._metrics.inflight_requests.dec()
            self._record(ctx)

    async def _proxy(
        self, request: web.BaseRequest, parts: PipelineParts, ctx: RequestContext
    ) -> web.StreamResponse:
        config = parts.config
        method = request.method
        target = parts.router.resolve(method, request.raw_path, request.headers.get("Host"))
        ctx.target = target
        streamable = target.endpoint.service in _S3_SERVICES and method in ("PUT", "POST")
        length = declared_length(request.headers.get("Content-Length"))
        limits = self._body_limits(config)
        # Refuse an oversized body before inviting it with 100 Continue.
        refuse_before_continue(length, limits, streamable)
        await _answer_expect(request)
        headers = forwardable_request_headers(request.headers)
        body = await read_body(
            request.content,
            request.headers,
            headers,
            length,
            limits,
            s3_upload=streamable,
            has_body=request.body_exists,
            resigned=not target.presigned,
        )
        try:
            return await self._send_body(request, parts, ctx, target, body, headers)
        finally:
            body.discard()  # a spooled body's file goes whatever happened

    async def _send_body(
        self,
        request: web.BaseRequest,
        parts: PipelineParts,
        ctx: RequestContext,
        target: Target,
        body: ClientBody,
        headers: list[tuple[str, str]],
    ) -> web.StreamResponse:
        config, method = parts.config, request.method
        op = classify(
            method, target.endpoint, target.path, target.query, request.headers, body.data
        )
        ctx.operation = op
        if self.faults.client_on:
            injected = await self.faults.at_client(
                op, target, ctx.request_id, _cutter(request), silence=config.retry.max_total_time
            )
            if injected is not None:
                ctx.status, ctx.error = injected.status, "fault-injected"
                return web.Response(
                    status=injected.status, body=injected.body, headers=injected.headers
                )
        ctx.waited = await parts.limiter.acquire(op)
        headers = body.upstream_headers(headers)
        if body.data is not None:
            payload_hash: str | None = await sha256_hex(body.data)
        else:
            payload_hash = body.spool.sha256 if body.spool is not None else None
        # retry.max_total_time bounds the wait for an answer too, not only the backoffs.
        deadline = asyncio.get_running_loop().time() + config.retry.max_total_time

        async def send(attempt: int) -> UpstreamResponse:
            if attempt > 1:
                # A retry is a call too: it waits for a token like any other.
                ctx.waited += await parts.limiter.acquire(op)
            if self.faults.upstream_on:
                return await self.faults.at_upstream(
                    op,
                    target,
                    ctx.request_id,
                    lambda: self._send_once(
                        parts, method, target, headers, body, payload_hash, deadline
                    ),
                    read_timeout=config.upstream.read_timeout,
                    deadline=deadline,
                )
            return await self._send_once(
                parts, method, target, headers, body, payload_hash, deadline
            )

        result = await parts.attempts.run(op, send, body.replayable)
        ctx.attempts = result.attempts
        return await self._answer(request, result.response, ctx)

    async def _send_once(
        self,
        parts: PipelineParts,
        method: str,
        target: Target,
        headers: list[tuple[str, str]],
        body: ClientBody,
        payload_hash: str | None,
        deadline: float,
    ) -> UpstreamResponse:
        # A fresh snapshot and signature for every attempt: a retry may cross a refresh.
        if target.presigned:
            # Signed by the client in its query: sent as received, none of our credentials.
            wire = presigned_send(target.host_header, target.path, target.query, headers, body)
            if self._debug:
                log.debug("upstream-attempt", target=wire.target, headers=dict(wire.headers))
            return await self._upstream.send(
                method, target.origin, wire.target, wire.headers, wire.body, deadline
            )
        creds = await self._credentials.get()
        now = self._clock.time()
        if payload_hash is not None:
            if body.spool is not None:
                # Read from disk again for every attempt; the length is the file's.
                headers = [*headers, ("Content-Length", str(body.length))]
            signed = sign(target.to_sign(method, headers, payload_hash), creds, now, self._keys)
            request_target = _request_target(signed.path, signed.query)
            if self._debug:
                # Header values go through the log redaction (Authorization, token, signature).
                log.debug("upstream-attempt", target=request_target, headers=dict(signed.headers))
            payload = body.data if body.spool is None else body.spool.pieces()
            return await self._upstream.send(
                method, target.origin, request_target, signed.headers, payload, deadline
            )
        upload = streaming_upload(
            method=method,
            target=target,
            headers=headers,
            body=body,
            creds=creds,
            now=now,
            keys=self._keys,
            unsigned_over_https=parts.config.unsigned_payload,
        )
        return await self._upstream.send(
            method,
            target.origin,
            _request_target(upload.path, upload.query),
            upload.headers,
            upload.body,
            deadline,
        )

    async def _answer(
        self, request: web.BaseRequest, upstream: UpstreamResponse, ctx: RequestContext
    ) -> web.StreamResponse:
        try:
            ctx.status = upstream.status
            ctx.aws_request_id = _aws_request_id(upstream.headers)
            headers = response_headers(upstream.headers)
            headers.append((ATTEMPTS_HEADER, str(ctx.attempts)))
            if upstream.body is not None and request.method != "HEAD":
                # Small answers and errors: one write.
                return web.Response(status=upstream.status, body=upstream.body, headers=headers)
            response = web.StreamResponse(status=upstream.status, headers=headers)
            length = upstream.headers.get("Content-Length")
            if length is not None and length.isdigit():
                response.content_length = int(length)
            await response.prepare(request)
            if request.method != "HEAD":
                try:
                    async for chunk in stream_body(upstream):
                        await response.write(chunk)
                except ProxyError as error:
                    # Headers are gone: the only honest signal left is a cut connection, and
                    # the record says the request failed (never a 2xx for a cut body).
                    ctx.status, ctx.error = error.status, error.reason
                    self._metrics.proxy_errors_total.labels(error.reason).inc()
                    log.warning("upstream-body-failed", error=error.message)
                    response.force_close()
                    return response
                except (asyncio.CancelledError, ConnectionError):
                    raise  # the client went away: handle() records it
                except Exception:
                    # Never a second response into a started one: log, cut, move on.
                    ctx.error = "internal-error"
                    log.exception("stream-back-failed", request_id=ctx.request_id)
                    response.force_close()
                    return response
            await response.write_eof()
            return response
        finally:
            upstream.release()

    def _answer_error(
        self, request: web.BaseRequest, error: ProxyError, ctx: RequestContext
    ) -> web.StreamResponse:
        ctx.error = error.reason
        # Attempts that reached the upstream (the retry loop counts them; refusals made none).
        ctx.attempts = error.attempts
        if ctx.operation is not None:
            protocol = ctx.operation.protocol
        elif ctx.target is not None:
            # Refused before the operation was known (a body too large): the service's format
            # all the same, so the SDK parses it.
            target = ctx.target
            protocol = error_protocol(
                request.method, target.endpoint, target.path, target.query, request.headers
            )
        else:
            protocol = "plain"
        answer = render_error(error, protocol, ctx.request_id)
        ctx.status = answer.status
        self._metrics.proxy_errors_total.labels(error.reason).inc()
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        if ctx.attempts:
            response.headers[ATTEMPTS_HEADER] = str(ctx.attempts)
        if isinstance(error, BadRequest | ClientBodyTimeout | PayloadTooLarge) or (
            request.method == "CONNECT"
        ):
            # The connection may hold unread garbage (or a body we refused); do not reuse it.
            response.force_close()
        return response

    def _record(self, ctx: RequestContext) -> None:
        duration = time.perf_counter() - ctx.started
        service = ctx.target.endpoint.service if ctx.target else "unknown"
        operation = ctx.operation.label if ctx.operation else "other"
        key = (service, operation, status_class(ctx.status))
        children = self._children.get(key)
        if children is None:
            # labels() takes a lock and validates every call: look each series up once (the
            # labels are bounded, so this map is too).
            children = (
                self._metrics.requests_total.labels(*key),
                self._metrics.request_duration_seconds.labels(service, operation),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(duration)
        if self.recorder is not None:
            refused = ctx.error == "rate-limited"
            self.recorder.request(service, operation, ctx.status, duration, ctx.waited, refused)
        if not self._log_requests:
            return
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


async def _answer_expect(request: web.BaseRequest) -> None:
    """`Expect: 100-continue` (botocore sends it on every S3 upload): say go ahead, once the
    request is known to be routable, so the client does not sit out its one-second wait."""
    expect = request.headers.get("Expect")
    if expect is None or request.version < (1, 1):
        return
    if expect.lower() != "100-continue":
        raise BadRequest(f"unsupported Expect: {expect[:40]}")
    await request.writer.write(_CONTINUE)
    request.writer.output_size = 0  # the interim answer is not part of the response's size


def _cutter(request: web.BaseRequest) -> Callable[[], None]:
    """Closes the client's connection (a fault rule's `reset` at the client)."""

    def cut() -> None:
        if request.transport is not None:
            request.transport.abort()

    return cut


def _request_target(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def _aws_request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None
