"""Which headers cross the proxy: hop-by-hop never, client credentials never, the rest in order."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.aws.headers import HOP_BY_HOP, forwardable_request_headers, response_headers


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


HOP_BY_HOP_SENT = [
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Authenticate", "Basic"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
    ("TE", "trailers"),
    ("Trailer", "x-amz-checksum-crc32"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "websocket"),
]
Direction = Callable[[CIMultiDictProxy[str]], list[tuple[str, str]]]
DIRECTIONS: list[Direction] = [forwardable_request_headers, response_headers]


def names(pairs: list[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in pairs]


def test_hop_by_hop_set_is_rfc_9110_plus_relatives() -> None:
    assert {name.lower() for name, _ in HOP_BY_HOP_SENT} == HOP_BY_HOP


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hop_by_hop_headers_dropped_both_ways(direction: Direction) -> None:
    sent = headers(("X-Amz-Target", "DynamoDB_20120810.GetItem"), *HOP_BY_HOP_SENT)
    assert direction(sent) == [("X-Amz-Target", "DynamoDB_20120810.GetItem")]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_headers_named_in_connection_are_dropped_both_ways(direction: Direction) -> None:
    sent = headers(
        ("Connection", "close, X-Private ,  x-debug-Token"),
        ("Connection", "X-Second"),
        ("X-Private", "1"),
        ("X-Debug-Token", "2"),
        ("X-Second", "3"),
        ("X-Kept", "4"),
        ("Content-Type", "application/json"),
    )
    assert direction(sent) == [("X-Kept", "4"), ("Content-Type", "application/json")]


@pytest.mark.parametrize(
    "client_header",
    [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/..., Signature=abc"),
        ("X-Amz-Date", "20150830T123600Z"),
        ("X-Amz-Security-Token", "client-session-token"),
        ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ("Host", "ec2.us-east-1.amazonaws.com"),
        ("Content-Length", "12"),
        ("Expect", "100-continue"),
        ("authorization", "lower-case too"),
        ("x-amz-security-token", "lower-case too"),
    ],
)
def test_client_credentials_and_framing_never_go_upstream(client_header: tuple[str, str]) -> None:
    sent = headers(("Content-Type", "text/plain"), client_header, ("X-Amz-Meta-Owner", "me"))
    assert forwardable_request_headers(sent) == [
        ("Content-Type", "text/plain"),
        ("X-Amz-Meta-Owner", "me"),
    ]


def test_request_keeps_what_the_signer_signs() -> None:
    sent = headers(
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "DynamoDB_20120810.PutItem"),
        ("Content-Encoding", "gzip"),
        ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
        ("x-amz-storage-class", "STANDARD_IA"),
        ("User-Agent", "legacy-app/1.0"),
    )
    assert forwardable_request_headers(sent) == list(sent.items())


def test_aws_response_ids_kept_on_responses() -> None:
    received = headers(
        ("x-amzn-RequestId", "req-1"),
        ("x-amz-id-2", "host-id/abc="),
        ("x-amz-request-id", "ABC123"),
        ("Content-Type", "text/xml"),
        ("Content-Length", "42"),
        ("Transfer-Encoding", "chunked"),
        ("Date", "Sun, 30 Aug 2015 12:36:00 GMT"),
    )
    assert response_headers(received) == [
        ("x-amzn-RequestId", "req-1"),
        ("x-amz-id-2", "host-id/abc="),
        ("x-amz-request-id", "ABC123"),
        ("Content-Type", "text/xml"),
        ("Date", "Sun, 30 Aug 2015 12:36:00 GMT"),
    ]


def test_responses_keep_what_requests_drop() -> None:
    # Only requests carry the client's credentials; a response header of the same name is AWS's.
    received = headers(("x-amz-date", "20150830T123600Z"), ("Expect", "x"))
    assert names(response_headers(received)) == ["x-amz-date", "expect"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_repeated_headers_kept_in_order_with_their_case(direction: Direction) -> None:
    sent = headers(
        ("X-Amz-Meta-Tag", "one"),
        ("Accept", "application/json"),
        ("x-amz-meta-tag", "two"),
        ("Set-Cookie", "a=1"),
        ("X-AMZ-META-TAG", "three"),
        ("Set-Cookie", "b=2"),
    )
    assert direction(sent) == [
        ("X-Amz-Meta-Tag", "one"),
        ("Accept", "application/json"),
        ("x-amz-meta-tag", "two"),
        ("Set-Cookie", "a=1"),
        ("X-AMZ-META-TAG", "three"),
        ("Set-Cookie", "b=2"),
    ]


def test_no_headers_is_no_headers() -> None:
    assert forwardable_request_headers(headers()) == []
    assert response_headers(headers(("Connection", "close"))) == []
