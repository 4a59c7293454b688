"""The error code from every protocol's error format, and nothing from garbage."""

from __future__ import annotations

import json
import time

import pytest
from multidict import CIMultiDict

from proxy.aws.errorcodes import clean_code, error_code

NO_HEADERS: CIMultiDict[str] = CIMultiDict()


def test_query_protocol() -> None:
    body = (
        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        b"<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
        b"</Error><RequestId>r-1</RequestId></ErrorResponse>"
    )
    assert error_code(NO_HEADERS, body) == "Throttling"


def test_ec2_protocol() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
        b"</Error></Errors><RequestID>r-2</RequestID></Response>"
    )
    assert error_code(NO_HEADERS, body) == "RequestLimitExceeded"


def test_rest_xml_s3() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message><RequestId>r</RequestId></Error>"
    )
    assert error_code(NO_HEADERS, body) == "SlowDown"


@pytest.mark.parametrize(
    ("type_value", "expected"),
    [
        (
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "ProvisionedThroughputExceededException",
        ),
        ("ThrottlingException", "ThrottlingException"),
        ("aws.protocols#ns#TooManyRequestsException", "TooManyRequestsException"),
        ("ValidationException:http://internal.amazon.com/coral/", "ValidationException"),
    ],
)
def test_json_protocol_type(type_value: str, expected: str) -> None:
    body = json.dumps({"__type": type_value, "message": "m"}).encode()
    assert error_code(NO_HEADERS, body) == expected


def test_rest_json_header_wins_over_body() -> None:
    headers = CIMultiDict(
        {"X-Amzn-ErrorType": "TooManyRequestsException:http://internal.amazon.com/coral/"}
    )
    body = json.dumps({"code": "SomethingElse", "message": "m"}).encode()
    assert error_code(headers, body) == "TooManyRequestsException"


@pytest.mark.parametrize("key", ["code", "Code"])
def test_rest_json_body_code_without_header(key: str) -> None:
    body = json.dumps({key: "LimitExceededException", "message": "m"}).encode()
    assert error_code(NO_HEADERS, body) == "LimitExceededException"


def test_rpc_v2_cbor_type() -> None:
    # {"__type": "ThrottlingException", "message": "x"} in CBOR.
    code = b"ThrottlingException"
    body = b"\xa2\x66__type" + bytes([0x60 + len(code)]) + code + b"\x67message\x61x"
    assert error_code(NO_HEADERS, body) == "ThrottlingException"
    long_code = b"com.amazon.coral.availability#" + b"ThrottlingException"
    body = b"\xa1\x66__type\x78" + bytes([len(long_code)]) + long_code
    assert error_code(NO_HEADERS, body) == "ThrottlingException"


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"   ",
        b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        b"<html><body>Code: <Code>Nope</Code></body></html>",  # a Code outside any Error
        b"Service Unavailable",
        b"{not json",
        b"[1, 2, 3]",
        b'{"__type": 42}',
        b'{"message": "no code here"}',
        b"<Error><Code>has spaces in it</Code></Error>",
        b"<Error><Code>" + b"A" * 500 + b"</Code></Error>",
        b"<Error><Code>Unclosed",
        b"\xff\xfe\x00garbage\x00",
        b"\x66__type\x99",  # CBOR key followed by something that is not a text string
    ],
)
def test_no_code(body: bytes | None) -> None:
    assert error_code(NO_HEADERS, body) is None


def test_header_that_is_not_a_code_falls_back_to_the_body() -> None:
    headers = CIMultiDict({"x-amzn-ErrorType": "<script>"})
    assert error_code(headers, b'{"__type": "Throttling"}') == "Throttling"


def test_entities_are_not_expanded() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "AAAAAAAAAA">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<Error><Code>&b;</Code></Error>"
    )
    assert error_code(NO_HEADERS, body) is None


def test_hostile_bodies_are_fast() -> None:
    bodies = [
        b"<Error>" * 200_000,
        b"<Error><Code>" * 100_000,
        b"{" + b'"a":[' * 50_000,
        b"[" * 1_000_000,
        b"<" + b"x" * 2_000_000,
    ]
    # CPU time, not wall time: a loaded machine stretches the wall clock, not the work.
    started = time.process_time()
    for body in bodies:
        assert error_code(NO_HEADERS, body) is None
    assert time.process_time() - started < 1.0


def test_clean_code() -> None:
    assert clean_code(" SlowDown ") == "SlowDown"
    assert clean_code("a#b#Throttling:x:y") == "Throttling"
    assert clean_code("") is None
    assert clean_code("#") is None
    assert clean_code("Bad Code") is None
