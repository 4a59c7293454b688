"""The request path, in order, in one module (DESIGN.md, "The request path").

    accept → route → body → classify → [client fault] → limit → attempt loop → answer, then record

Each stage is a function of the request context, run in the order of STAGES: one whose work
is done at once returns None, one that must wait returns what to await (a request costs a
coroutine only where it waits; most stages of a small GET never do). A stage that
refuses raises a ProxyError, which becomes the answer in the service's own format; record
writes the one log line and the metrics whatever happened. The front (proxy.front) hands
every request over as an Exchange (its own request object and response writer): nothing here
knows sockets, parsers or frameworks. The context (pipeline.context) owns the upstream answer it
holds and is the one place that releases it; an attempt's send is pipeline.send, the record
pipeline.record.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.aws.errors import protocol_of_head, render_error
from proxy.aws.headers import forwardable_request_headers, response_headers
from proxy.aws.operations import classify, error_protocol
from proxy.aws.routing import single_host
from proxy.aws.s3family import speaks_s3
from proxy.bodies.client import ClientBody, declared_length, sha256_hex
from proxy.bodies.intake import read_body, refuse_before_continue
from proxy.clock import Clock
from proxy.credentials.base import CredentialSource
from proxy.credentials.identities import Identities
from proxy.errors import (
    BadRequest,
    ClientClosed,
    ClientTimeout,
    HeaderTooLarge,
    PayloadTooLarge,
    ProxyError,
    VersionNotSupported,
)
from proxy.faults.stage import FaultInjector
from proxy.front.errors import client_error
from proxy.front.exchange import Exchange
from proxy.observability.logs import REQUEST_LOG_LEVELS, get_logger
from proxy.observability.metrics import Metrics
from proxy.pipeline.context import PipelineParts, RequestContext, Services
from proxy.pipeline.record import RequestRecord
from proxy.pipeline.send import send_once
from proxy.report.recorder import RunRecorder
from proxy.signing.sigv4 import EMPTY_SHA256, SigningKeyCache
from proxy.upstream.client import UpstreamClient, UpstreamResponse, stream_body

log = get_logger("proxy.request")

ATTEMPTS_HEADER = "x-throttle-proxy-attempts"
# Response headers AWS uses for its request id, in the order we look for them.
_REQUEST_ID_HEADERS = ("x-amzn-RequestId", "x-amz-request-id")
# Refusals after which the connection may hold unread or unparsable bytes: not reused.
_CLOSING_ERRORS = (BadRequest, PayloadTooLarge, HeaderTooLarge, ClientTimeout, VersionNotSupported)
_request_ids = itertools.count(1)
_ID_PREFIX = os.urandom(4).hex()


Stage = Callable[[RequestContext], Awaitable[None] | None]


# -- the stages, in order ------------------------------------------------------------------


def accept(ctx: RequestContext) -> None:
    """A request the front could not parse (or capped) is refused before anything else."""
    refusal = ctx.exchange.refusal
    if refusal is not None and not ctx.exchange.method:
        raise refusal


def route(ctx: RequestContext) -> None:
    """Where it goes and whether it may go there (three ways in; CONNECT refused)."""
    exchange = ctx.exchange
    ctx.target = ctx.parts.router.resolve(
        exchange.method, exchange.target, single_host(exchange.headers.getall("Host", ()))
    )
    # From the same config snapshot as the route: a reload never re-binds a request.
    identities = ctx.parts.identities or ctx.services.only_identity
    assert identities is not None
    ctx.identity = identities.get(ctx.target.identity)
    if exchange.refusal is not None:
        # Routed first (505 for an HTTP version we do not speak) so the refusal is written
        # in the service's format.
        raise exchange.refusal


def body(ctx: RequestContext) -> Awaitable[None] | None:
    """Refuse what cannot be taken (413, the memory budget's 503) before inviting the body
    with 100 Continue; then buffer it, spool it, or hand it over as a stream (bodies.intake)."""
    exchange, config, target = ctx.exchange, ctx.parts.config, ctx.target
    assert target is not None
    headers = exchange.headers
    source = exchange.body
    if source is None and "Expect" not in headers:
        # No body (the parser saw no Content-Length and no chunked framing): a plain GET.
        ctx.forwardable = forwardable_request_headers(headers)
        return None
    streamable = speaks_s3(target.endpoint.service) and exchange.method in ("PUT", "POST")
    length = declared_length(headers.get("Content-Length"))
    limits = ctx.services.body_limits(config)
    refuse_before_continue(length, limits, streamable)
    if source is not None:
        # What will be held in memory counts against buffered_body_budget: a body that fits
        # max_buffered_body, or a chunked one (it may grow to that before it spools or is
        # refused). Larger bodies stream or spool with flow control, a few pieces at a time.
        if length is None:
            exchange.reserve_body(config.max_buffered_body)
        elif length <= config.max_buffered_body:
            exchange.reserve_body(length)
    expect = headers.get("Expect")
    if expect is not None and exchange.version == "1.1":
        if expect.lower() != "100-continue":
            raise BadRequest(f"unsupported Expect: {expect[:40]}")
        # botocore sends it on every S3 upload: say go ahead now that the request is routable
        # and fits, so the client does not sit out its one-second wait.
        exchange.send_continue()
    ctx.forwardable = forwardable_request_headers(headers)
    if source is None:
        return None
    return _read_body(
        ctx,
        read_body(
            source,
            headers,
            ctx.forwardable,
            length,
            limits,
            s3_upload=streamable,
            has_body=True,
            resigned=not target.presigned,
        ),
    )


async def _read_body(ctx: RequestContext, reading: Awaitable[ClientBody]) -> None:
    ctx.body = await reading


def classify_request(ctx: RequestContext) -> None:
    """Which AWS operation (rate-limit rules, metric labels, error format)."""
    exchange, target = ctx.exchange, ctx.target
    assert target is not None
    assert ctx.identity is not None
    ctx.operation = classify(
        exchange.method,
        target.endpoint,
        target.path,
        target.query,
        exchange.headers,
        ctx.body.data,
        account=ctx.identity.budget_account,
        region=target.endpoint.region,
    )


def client_fault(ctx: RequestContext) -> Awaitable[None] | None:
    """Load tests: a fault rule `at: client` answers the app itself (or cuts it off)."""
    return _client_fault(ctx) if ctx.services.faults.client_on else None


async def _client_fault(ctx: RequestContext) -> None:
    faults = ctx.services.faults
    target, op, exchange = ctx.target, ctx.operation, ctx.exchange
    assert target is not None
    assert op is not None
    injected = await faults.at_client(
        op,
        target,
        ctx.request_id,
        exchange.abort_quietly,
        silence=ctx.parts.config.retry.max_total_time,
    )
    if injected is not None:
        ctx.status, ctx.error = injected.status, "fault-injected"
        exchange.respond(injected.status, injected.headers.items(), injected.body)


async def limit(ctx: RequestContext) -> None:
    """Wait for every matching rule's token (or be refused in the service's throttle format)."""
    assert ctx.operation is not None
    ctx.waited = await ctx.parts.limiter.acquire(ctx.operation)


async def attempt_loop(ctx: RequestContext) -> None:
    """Sign and send until an answer worth keeping; the loop and its budgets are retry's."""
    parts, exchange, target, op, body = (
        ctx.parts,
        ctx.exchange,
        ctx.target,
        ctx.operation,
        ctx.body,
    )
    assert target is not None
    assert op is not None
    forwardable = ctx.forwardable
    if forwardable is None:
        forwardable = forwardable_request_headers(exchange.headers)
    headers = body.upstream_headers(forwardable)
    if body.data is not None:
        # Awaited only for a body to hash (a large one is hashed off the loop).
        payload_hash: str | None = await sha256_hex(body.data) if body.data else EMPTY_SHA256
    else:
        payload_hash = body.spool.sha256 if body.spool is not None else None
    # One deadline on one clock: retry.max_total_time bounds the backoffs and the wait for an
    # answer alike (the pool compares it with the loop's time: the same monotonic clock).
    deadline = parts.attempts.deadline()
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + parts.config.upstream.read_timeout

    async def send(attempt: int) -> UpstreamResponse:
        if attempt > 1:
            ctx.hold(None)  # the previous answer's connection is free before the next send
            # A retry is a call too: it waits for a token like any other.
            ctx.waited += await parts.limiter.acquire(op)
        faults = ctx.services.faults
        if faults.upstream_on:
            response = await faults.at_upstream(
                op,
                target,
                ctx.request_id,
                lambda: send_once(ctx, headers, payload_hash, deadline),
                read_timeout=parts.config.upstream.read_timeout,
                deadline=deadline,
            )
        else:
            response = await send_once(ctx, headers, payload_hash, deadline)
        ctx.hold(response)
        return response

    result = await parts.attempts.run(op, send, body.replayable, deadline)
    ctx.hold(result.response)
    ctx.attempts = result.attempts


def answer(ctx: RequestContext) -> Awaitable[None] | None:
    """Stream the upstream answer back: small ones in one write, others as they arrive."""
    upstream, exchange = ctx.upstream, ctx.exchange
    assert upstream is not None
    ctx.status = upstream.status
    ctx.aws_request_id = _aws_request_id(upstream.headers)
    headers = response_headers(upstream.headers)
    headers.append((ATTEMPTS_HEADER, str(ctx.attempts)))
    head_only = exchange.method == "HEAD"
    if upstream.body is not None and not head_only:
        exchange.respond(upstream.status, headers, upstream.body)
        return None
    length = upstream.headers.get("Content-Length")
    exchange.start(
        upstream.status, headers, int(length) if length is not None and length.isdigit() else None
    )
    if head_only:
        exchange.end()
        return None
    return _stream_answer(ctx, upstream, exchange)


async def _stream_answer(
    ctx: RequestContext, upstream: UpstreamResponse, exchange: Exchange
) -> None:
    try:
        async for chunk in stream_body(upstream):
            await exchange.write(chunk)
    except ClientClosed:
        raise
    except ProxyError as error:
        # Headers are gone: the only honest signal left is a cut connection, and the record
        # says the request failed (never a 2xx for a cut body).
        ctx.status, ctx.error = error.status, error.reason
        ctx.services.metrics.proxy_errors_total.labels(error.reason).inc()
        log.warning("upstream-body-failed", error=error.message)
        exchange.abort(error.reason)
        return
    exchange.end()


STAGES: tuple[Stage, ...] = (
    accept,
    route,
    body,
    classify_request,
    client_fault,
    limit,
    attempt_loop,
    answer,
)


# -- the pipeline: stages in order, refusals answered, the record written ----------------


class RequestPipeline:
    """Runs STAGES for each request the front hands over."""

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
        self.services = Services(
            credentials,
            upstream,
            metrics,
            clock,
            SigningKeyCache(),
            parts.config.log_level == "debug",
            self.faults,
            only_identity=Identities.single(credentials),
        )
        self._metrics = metrics
        self.inflight = 0  # requests in handle now: the in-flight gauge and the drain read it
        # At warning and above the per-request line is not written: skip building it too.
        self._record = RequestRecord(
            metrics, recorder, parts.config.log_level in REQUEST_LOG_LEVELS
        )

    async def handle(self, exchange: Exchange) -> None:
        ctx = RequestContext(
            exchange,
            self.parts,
            self.services,
            f"{_ID_PREFIX}-{next(_request_ids):x}",
            time.perf_counter(),
        )
        self.inflight += 1
        try:
            for stage in STAGES:
                waiting = stage(ctx)
                if waiting is not None:
                    await waiting
                if exchange.finished:
                    break  # answered early (a fault rule at the client)
        except ProxyError as error:
            self._answer_error(ctx, error)
        except ConnectionError as exc:  # the client's socket, as the front maps it
            self._answer_error(ctx, client_error(exc))
        except asyncio.CancelledError:
            # The client went away (the front cancels its request) or the proxy is stopping.
            ctx.status, ctx.error = ClientClosed.status, exchange.close_reason or "client-closed"
            raise
        except Exception:
            # A bug of ours: say so in the service's format, log it, keep serving the rest.
            log.exception("internal-error", request_id=ctx.request_id)
            self._answer_error(ctx, ProxyError("internal error in throttle-proxy; see its log"))
        finally:
            self.inflight -= 1
            ctx.hold(None)
            ctx.body.discard()  # a spooled body's file goes whatever happened
            self._record(ctx)

    def _answer_error(self, ctx: RequestContext, error: ProxyError) -> None:
        exchange = ctx.exchange
        ctx.error = exchange.close_reason or error.reason
        # Attempts that reached the upstream (the retry loop counts them; refusals made none).
        ctx.attempts = error.attempts
        if isinstance(error, ClientClosed):
            ctx.status = error.status
            return
        if exchange.started:
            # Never a second answer into a started one: cut the connection.
            exchange.abort(error.reason)
            return
        answer = render_error(error, _error_protocol(ctx), ctx.request_id)
        ctx.status = answer.status
        self._metrics.proxy_errors_total.labels(error.reason).inc()
        headers = list(answer.headers.items())
        if ctx.attempts:
            headers.append((ATTEMPTS_HEADER, str(ctx.attempts)))
        if isinstance(error, _CLOSING_ERRORS) or exchange.method in ("CONNECT", ""):
            # The connection may hold unread garbage (or a body we refused); do not reuse it.
            exchange.closes = True
        try:
            exchange.respond(answer.status, headers, answer.body)
        except ClientClosed:
            ctx.status = ClientClosed.status


def _error_protocol(ctx: RequestContext) -> str:
    """The wire protocol to answer an error in: the operation's, else the service's as far as
    the request's head says (a refusal before the body was read), else plain text."""
    if ctx.operation is not None:
        return ctx.operation.protocol
    target, exchange = ctx.target, ctx.exchange
    if target is None:
        if exchange.method in ("", "CONNECT"):
            return "plain"  # no HTTP request we could read, or a tunnel: no SDK's format
        return protocol_of_head(exchange.target, exchange.headers)  # host-not-allowed
    try:
        return error_protocol(
            exchange.method, target.endpoint, target.path, target.query, exchange.headers
        )
    except Exception:  # a refusal must not fail on its way out: plain text then
        return "plain"


def _aws_request_id(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None
