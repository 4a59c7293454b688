"""Strict response-head parsing (proxy.upstream.framing) and the one upstream error mapping."""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.errors import (
    BadRequest,
    ClientBodyTimeout,
    PoolExhausted,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.upstream.client import map_upstream_error
from proxy.upstream.framing import MalformedResponse, parse_response_head
from proxy.upstream.http1 import ClientBodyFailed, Http1Error, PoolSlotTimeout


def head(*lines: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return ("\r\n".join([status, *lines]) + "\r\n\r\n").encode("latin-1")


def test_a_content_length_answer_is_framed_by_its_length() -> None:
    parsed = parse_response_head(head("Content-Length: 12", "x-amz-request-id: r1"), "GET")
    assert (parsed.status, parsed.length, parsed.chunked, parsed.keep_alive) == (
        200,
        12,
        False,
        True,
    )
    assert parsed.headers["X-Amz-Request-Id"] == "r1"


def test_chunked_answers_have_no_length_and_keep_the_connection() -> None:
    parsed = parse_response_head(head("Transfer-Encoding: Chunked"), "GET")
    assert (parsed.length, parsed.chunked, parsed.keep_alive) == (None, True, True)


def test_no_framing_at_all_reads_until_close() -> None:
    parsed = parse_response_head(head(status="HTTP/1.0 200 OK"), "GET")
    assert (parsed.length, parsed.chunked, parsed.keep_alive) == (None, False, False)


def test_head_and_204_have_no_body_whatever_they_declare() -> None:
    assert parse_response_head(head("Content-Length: 99"), "HEAD").length == 0
    assert parse_response_head(head(status="HTTP/1.1 204 No Content"), "GET").length == 0


def test_values_are_trimmed_and_obs_text_survives_byte_for_byte() -> None:
    raw = b"HTTP/1.1 200 OK\r\nx-amz-meta-n: \t caf\xe9 \t\r\nContent-Length: 0\r\n\r\n"
    value = parse_response_head(raw, "GET").headers["x-amz-meta-n"]
    assert value.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_an_empty_reason_phrase_is_accepted() -> None:
    assert (
        parse_response_head(head("Content-Length: 0", status="HTTP/1.1 503"), "GET").status == 503
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            head("Content-Length: 5", "Transfer-Encoding: chunked"),
            "answer has both Content-Length and Transfer-Encoding",
        ),
        (head("Content-Length: 5", "Content-Length: 5"), "answer has 2 Content-Length headers"),
        (head("Content-Length: 5, 5"), "bad Content-Length '5, 5'"),
        (head("Content-Length: 99999999999999999999"), "bad Content-Length '99999999999999999999'"),
        (
            head("Transfer-Encoding: gzip"),
            "unsupported Transfer-Encoding 'gzip' (only chunked)",
        ),
        (
            head("Transfer-Encoding: chunked", status="HTTP/1.0 200 OK"),
            "HTTP/1.0 answer with Transfer-Encoding",
        ),
        (head("a: one\ntwo"), "bad header line b'a: one\\ntwo'"),
        (head("a: one\rtwo"), "bad header line b'a: one\\rtwo'"),
        (head("a: one\x00two"), "bad header line b'a: one\\x00two'"),
        (head("a: one\x7ftwo"), "bad header line b'a: one\\x7ftwo'"),
        (head("a b: one"), "bad header line b'a b: one'"),
        (head("a : one"), "bad header line b'a : one'"),
        (head(": one"), "bad header line b': one'"),
        (head("a: one", " folded"), "bad header line b' folded'"),
        (head(status="HTTP/1.1 20 OK"), "bad status line b'HTTP/1.1 20 OK'"),
        (head(status="HTTP/1.1 099 Low"), "bad status line b'HTTP/1.1 099 Low'"),
        (head(status="HTTP/1.1 600 High"), "bad status line b'HTTP/1.1 600 High'"),
        (head(status="HTTP/2.0 200 OK"), "bad status line b'HTTP/2.0 200 OK'"),
        (head(status="HTTP/1.1 200 O\x01K"), "bad status line b'HTTP/1.1 200 O\\x01K'"),
        (
            "HTTP/1.1 \uff12\uff10\uff10 OK\r\n\r\n".encode(),
            "bad status line b'HTTP/1.1 \\xef\\xbc\\x92",
        ),
    ],
)
def test_ambiguous_or_invalid_heads_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_response_head(raw, "GET")
    assert str(caught.value).startswith(message)


def test_error_messages_quote_at_most_sixty_bytes_of_the_upstream() -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_response_head(head("a: " + "\x01" * 10_000), "GET")
    assert len(str(caught.value)) < 300


WHERE = "upstream http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (PoolSlotTimeout("all 1 pool slots stayed busy"), PoolExhausted, "pool slots"),
        (TimeoutError(), UpstreamTimeout, "did not answer in time"),
        (MalformedResponse("bad status line"), UpstreamBadResponse, "malformed answer"),
        (ConnectionRefusedError(), UpstreamUnavailable, "connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), UpstreamUnavailable, "reset"),
        (Http1Error("connection closed before a response"), UpstreamUnavailable, "closed"),
        (asyncio.IncompleteReadError(b"", 10), UpstreamUnavailable, "failed"),
        (
            ClientBodyFailed(asyncio.IncompleteReadError(b"", 10)),
            BadRequest,
            "fewer body bytes",
        ),
        (ClientBodyFailed(TimeoutError()), ClientBodyTimeout, "stopped sending"),
    ],
)
def test_every_transport_failure_maps_to_one_proxy_error(
    raised: Exception, expected: type[Exception], message: str
) -> None:
    mapped = map_upstream_error(raised, WHERE)
    assert type(mapped) is expected
    assert message in str(mapped)


def test_the_client_sides_own_errors_and_disconnects_pass_through() -> None:
    own = ClientBodyTimeout("front: body_timeout")
    assert map_upstream_error(ClientBodyFailed(own), WHERE) is own
    gone = ConnectionResetError()
    assert map_upstream_error(ClientBodyFailed(gone), WHERE) is gone


def test_only_errors_after_sending_count_as_attempts() -> None:
    assert not PoolExhausted("x").reached_upstream
    assert not BadRequest("x").reached_upstream
    for sent in (UpstreamTimeout, UpstreamUnavailable, UpstreamBadResponse):
        assert sent("x").reached_upstream


def test_generated_heads_give_every_field_in_order_trimmed_of_ows_only() -> None:
    # The fields of a well-formed head come out of one regex pass (framing._FIELD): against
    # the grammar's own reading (split at the first colon, OWS = SP / HTAB cut at both ends),
    # with repeats, colons and OWS inside values, empty values and obs-text.
    rng = random.Random(7)
    names = ["x-a", "X-A", "Content-Type", "x-amz-meta-k", "!#$%&'*+-.^_`|~09az"]
    pieces = ["", " ", "\t", "a", "a b", "a:b", "::", "\xe9", "\xff", "\x85", "=", '"q"', ","]
    for _ in range(500):
        fields = []
        for _ in range(rng.randrange(0, 6)):
            value = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 5)))
            fields.append((rng.choice(names), value))
        raw = head(*[f"{name}:{value}" for name, value in fields], "Content-Length: 0")
        parsed = parse_response_head(raw, "GET").headers
        got = [(name, value.encode("utf-8", "surrogateescape")) for name, value in parsed.items()]
        expected = [
            (name, value.strip(" \t").encode("latin-1"))
            for name, value in [*fields, ("Content-Length", "0")]
        ]
        assert got == expected, raw
