"""Which headers cross the proxy, each way (RFC 9110 hop-by-hop rules plus signing needs)."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy, istr

# Hop-by-hop headers (RFC 9110 §7.6.1) and their common non-standard relatives: they describe
# one connection, never the message, so they are not forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the proxy itself: the upstream Host, the body length it really sends, and the
# client's own credentials, which are never forwarded.
_REQUEST_DROPPED = HOP_BY_HOP | {
    "host",
    "content-length",
    "expect",
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
}
_RESPONSE_DROPPED = HOP_BY_HOP | {"content-length"}


Headers = CIMultiDict[str] | CIMultiDictProxy[str]
# Already case-folded: a lookup with it skips folding the name again (a third of its cost).
_CONNECTION = istr("Connection")


def _connection_listed(headers: Headers) -> frozenset[str]:
    """Headers named in `Connection:` are hop-by-hop too."""
    listed: set[str] = set()
    for value in headers.getall(_CONNECTION, ()):
        listed.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(listed)


def _filter(headers: Headers, dropped: frozenset[str]) -> list[tuple[str, str]]:
    if _CONNECTION in headers:
        dropped = dropped | _connection_listed(headers)
    # The (name, value) pairs the multidict hands out are kept as they are, not rebuilt.
    return [item for item in headers.items() if item[0].lower() not in dropped]


def forwardable_request_headers(headers: Headers) -> list[tuple[str, str]]:
    """The client's headers that go upstream (the signer adds host, date, hash, auth)."""
    return _filter(headers, _REQUEST_DROPPED)


def response_headers(headers: Headers) -> list[tuple[str, str]]:
    """AWS's response headers as they go back to the client (x-amzn-RequestId etc. intact)."""
    return _filter(headers, _RESPONSE_DROPPED)
