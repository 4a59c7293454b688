"""One attempt's send: sign (or pass a presigned request through as received) and hand it
to the upstream client. A fresh signature for every attempt: a retry may cross a refresh."""

from __future__ import annotations

from proxy.observability.logs import get_logger
from proxy.pipeline.context import RequestContext
from proxy.signing.queryauth import presigned_send
from proxy.signing.sigv4 import sign
from proxy.signing.streaming import streaming_upload
from proxy.upstream.client import UpstreamResponse

log = get_logger("proxy.request")


async def send_once(
    ctx: RequestContext,
    headers: list[tuple[str, str]],
    payload_hash: str | None,
    deadline: float,
) -> UpstreamResponse:
    services, method, target, body = ctx.services, ctx.exchange.method, ctx.target, ctx.body
    assert target is not None
    if target.presigned:
        # Signed by the client in its query: sent as received, none of our credentials.
        wire = presigned_send(target.host_header, target.path, target.query, headers, body)
        if services.debug:
            log.debug("upstream-attempt", target=wire.target, headers=dict(wire.headers))
        return await services.upstream.send(
            method, target.origin, wire.target, wire.headers, wire.body, deadline
        )
    # A fresh snapshot and signature for every attempt: a retry may cross a refresh.
    assert ctx.identity is not None
    creds = await ctx.identity.source.get()
    now = services.clock.time()
    if payload_hash is not None:
        if body.spool is not None:
            # Read from disk again for every attempt; the length is the file's.
            headers = [*headers, ("Content-Length", str(body.length))]
        signed = sign(target.to_sign(method, headers, payload_hash), creds, now, services.keys)
        request_target = _request_target(signed.path, signed.query)
        if services.debug:
            # Header values go through the log redaction (Authorization, token, signature).
            log.debug("upstream-attempt", target=request_target, headers=dict(signed.headers))
        payload = body.data if body.spool is None else body.spool.pieces()
        return await services.upstream.send(
            method, target.origin, request_target, signed.headers, payload, deadline
        )
    upload = streaming_upload(
        method=method,
        target=target,
        headers=headers,
        body=body,
        creds=creds,
        now=now,
        keys=services.keys,
        unsigned_over_https=ctx.parts.config.unsigned_payload,
    )
    return await services.upstream.send(
        method,
        target.origin,
        _request_target(upload.path, upload.query),
        upload.headers,
        upload.body,
        deadline,
    )


def _request_target(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path
