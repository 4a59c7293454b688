"""Query-string authentication a client brought with it. Pure.

A presigned URL (SigV4 query auth: `X-Amz-Credential` and `X-Amz-Signature`; SigV2 presigned
S3: `AWSAccessKeyId` and `Signature`) already carries its owner's signature: it goes upstream
with its path and query exactly as received and without the proxy's Authorization, date, token
or payload hash (S3 answers "Only one auth mechanism allowed" to both at once, and the pod's
credentials have no business on a request someone else signed). Any other request is signed
by the proxy, so auth parameters a client put in its query (a token or credential of its own,
an incomplete presign) are removed first, as its auth headers are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from proxy.bodies.client import ClientBody, stream_exactly
from proxy.requestvalue import request_value
from proxy.signing.querymemo import memoised_when_short
from proxy.upstream.http1 import Body

_SIGV4_PRESIGN = frozenset({"x-amz-credential", "x-amz-signature"})
_SIGV2_PRESIGN = frozenset({"awsaccesskeyid", "signature"})
# Every query parameter that authenticates a request, compared decoded and case-folded.
AUTH_PARAMETERS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-signedheaders",
        "awsaccesskeyid",
        "signature",
        "securitytoken",
    }
)
# The ones whose values are secrets or identify a key: never logged.
SECRET_PARAMETERS = frozenset(
    {
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
        "awsaccesskeyid",
        "signature",
        "securitytoken",
    }
)
# Substrings one of those names must contain when not percent-encoded (searched for in the
# lower-cased query): the cheap test that lets an ordinary query through without being split.
_TELLTALE = re.compile("x-amz-|signature|awsaccesskeyid|securitytoken")


@request_value
class QueryAuth:
    """The query as it must be sent, and whether the client presigned the request."""

    query: str
    presigned: bool


def _name(pair: str) -> str:
    return unquote(pair.partition("=")[0]).lower()


@memoised_when_short
def client_query_auth(query: str) -> QueryAuth:
    """Presigned: the query unchanged. Otherwise: the query without auth parameters (the
    other parameters keep their bytes and order). Short queries, which apps repeat call after
    call, are memoised: the answer depends on the query alone and is never changed."""
    if "%" not in query and _TELLTALE.search(query.lower()) is None:
        return QueryAuth(query, False)
    pairs = query.split("&")
    given = {_name(pair) for pair in pairs if pair.partition("=")[2]}
    if given >= _SIGV4_PRESIGN or given >= _SIGV2_PRESIGN:
        return QueryAuth(query, True)
    kept = [pair for pair in pairs if _name(pair) not in AUTH_PARAMETERS]
    return QueryAuth("&".join(kept), False)


@dataclass(frozen=True, slots=True)
class PresignedSend:
    """A presigned request as it goes on the wire: nothing of the proxy's credentials."""

    target: str
    headers: list[tuple[str, str]]
    body: Body


def presigned_send(
    host: str, path: str, query: str, headers: list[tuple[str, str]], body: ClientBody
) -> PresignedSend:
    """`headers` are the client's, already without its auth headers and Content-Length."""
    sent = [("Host", host), *headers]
    if body.data is not None:
        wire: Body = body.data
    elif body.spool is not None:
        sent.append(("Content-Length", str(body.length)))
        wire = body.spool.pieces()
    else:
        assert body.source is not None, "a presigned body is buffered, spooled or streamed"
        sent.append(("Content-Length", str(body.length)))
        wire = stream_exactly(body.source, body.length)
    return PresignedSend(f"{path}?{query}", sent, wire)
