"""What a complete request head is refused for, before anything downstream reads it.

llhttp parses what HTTP/1.1 allows; some of it the proxy cannot carry: a request asking to
upgrade the connection, and a body in a transfer coding other than chunked. Each check marks
the exchange (its `refusal`, and `closes` where the rest of the stream cannot be trusted), so
the answer goes out in turn, in the service's format, like every other refusal.
"""

from __future__ import annotations

from multidict import CIMultiDict

from proxy.errors import BadRequest
from proxy.front.exchange import Exchange


def decline_upgrade(exchange: Exchange) -> None:
    """An Upgrade (or CONNECT) request: llhttp hands every byte after its head, its body too,
    to the protocol upgraded to, and the proxy speaks no other. So its answer is the
    connection's last (nothing after it is parsed), and a body announced beside an Upgrade,
    which is never read, is refused rather than the request sent upstream without it."""
    exchange.closes = True
    if exchange.body is not None and exchange.method != "CONNECT" and exchange.refusal is None:
        exchange.refusal = BadRequest(
            "a request asking for an Upgrade cannot carry a body through this proxy (its body "
            "would be read as the upgraded protocol's); send it without Upgrade"
        )


def refuse_other_codings(exchange: Exchange, headers: CIMultiDict[str]) -> None:
    """A request with a body: llhttp undoes only the chunked framing, so a body still gzip-
    (or otherwise) coded would go upstream, its coding dropped with the hop-by-hop header, as
    if it were the body itself (RFC 9112 §6.1: refuse a coding not understood)."""
    codings = headers.getall("Transfer-Encoding", ())
    if codings and exchange.refusal is None and [c.lower() for c in codings] != ["chunked"]:
        exchange.refusal = BadRequest(
            f"Transfer-Encoding {', '.join(codings)[:60]!r} is not supported: only chunked"
        )
        exchange.closes = True
