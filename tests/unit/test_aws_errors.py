"""The proxy's own answers in each AWS protocol's error format, read back by botocore's parsers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.awsrequest import HeadersDict
from botocore.parsers import create_parser
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker
from multidict import CIMultiDict

from proxy.aws.errors import ERROR_HEADER, ErrorAnswer, protocol_of_head, render_error
from proxy.errors import (
    BadRequest,
    HostNotAllowed,
    MethodNotAllowed,
    MfaRequired,
    NoCredentials,
    PayloadTooLarge,
    ProxyError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

CBOR = "smithy-rpc-v2-cbor"  # CloudWatch in the Go SDK v2 and the Ruby SDK
PROTOCOLS = ("ec2", "query", "json", "rest-json", "rest-xml", CBOR)
REQUEST_ID = "5f1c7b0e-0000-4000-8000-00000000abcd"
_FORM = "application/x-www-form-urlencoded"
TRICKY = "bucket <a&b> is \"over\" 'limit' & more"

# (protocol, status, code) of a client-side throttle, as the services send their own.
THROTTLES = [
    ("ec2", 503, "RequestLimitExceeded"),
    ("query", 400, "Throttling"),
    ("json", 400, "ThrottlingException"),
    ("rest-json", 429, "TooManyRequestsException"),
    ("rest-xml", 503, "SlowDown"),
    (CBOR, 400, "ThrottlingException"),
]

# Every error the proxy raises itself, with the code it becomes.
REFUSALS: list[tuple[ProxyError, int, str]] = [
    (BadRequest("bad"), 400, "BadRequest"),
    (HostNotAllowed("no"), 403, "HostNotAllowed"),
    (MethodNotAllowed("connect"), 405, "ConnectRefused"),
    (PayloadTooLarge("big"), 413, "RequestEntityTooLarge"),
    (NoCredentials("none"), 503, "NoCredentials"),
    (MfaRequired("mfa"), 503, "MfaRequired"),
    (UpstreamUnavailable("reset"), 502, "UpstreamUnavailable"),
    (UpstreamTimeout("slow"), 504, "UpstreamTimeout"),
]


def local(tag: str) -> str:
    """An element's name without its XML namespace."""
    return tag.rsplit("}", 1)[-1]


def xml_fields(body: bytes) -> dict[str, str]:
    """Every leaf element's text, by local name (the error formats have unique leaf names)."""
    root = ET.fromstring(body)
    return {local(el.tag): el.text or "" for el in root.iter() if len(el) == 0}


def botocore_parse(answer: ErrorAnswer, protocol: str) -> dict[str, Any]:
    """What an SDK makes of the answer: botocore's own protocol parser, as for AWS's errors."""
    parser = create_parser(protocol)
    parsed: dict[str, Any] = parser.parse(
        {"status_code": answer.status, "headers": HeadersDict(answer.headers), "body": answer.body},
        None,
    )
    return parsed


def throttled(retry_after: float = 1.2) -> RateLimited:
    return RateLimited("over client-side limit ec2-describe", retry_after, "ec2-describe")


def test_ec2_body_shape() -> None:
    answer = render_error(BadRequest(TRICKY), "ec2", REQUEST_ID)
    root = ET.fromstring(answer.body)
    assert root.tag == "Response"
    assert [local(el.tag) for el in root] == ["Errors", "RequestID"]
    error = root.find("./Errors/Error")
    assert error is not None
    assert error.findtext("Code") == "BadRequest"
    assert error.findtext("Message") == TRICKY
    assert root.findtext("RequestID") == REQUEST_ID
    assert answer.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert answer.headers["Content-Type"] == "text/xml;charset=UTF-8"


@pytest.mark.parametrize(
    ("status", "kind", "code"), [(400, "Sender", "BadRequest"), (503, "Receiver", "NoCredentials")]
)
def test_query_body_shape(status: int, kind: str, code: str) -> None:
    error = BadRequest(TRICKY) if status == 400 else NoCredentials(TRICKY)
    answer = render_error(error, "query", REQUEST_ID)
    root = ET.fromstring(answer.body)
    assert local(root.tag) == "ErrorResponse"
    assert xml_fields(answer.body) == {
        "Type": kind,
        "Code": code,
        "Message": TRICKY,
        "RequestId": REQUEST_ID,
    }
    assert answer.status == status
    assert answer.headers["Content-Type"] == "text/xml"


@pytest.mark.parametrize(
    ("protocol", "content_type"),
    [("json", "application/x-amz-json-1.0"), ("rest-json", "application/json")],
)
def test_json_body_shape(protocol: str, content_type: str) -> None:
    answer = render_error(HostNotAllowed(TRICKY), protocol, REQUEST_ID)
    assert json.loads(answer.body) == {"__type": "HostNotAllowed", "message": TRICKY}
    assert answer.headers["Content-Type"] == content_type
    assert answer.headers["x-amzn-ErrorType"] == "HostNotAllowed"
    # JSON protocols carry the request id in the header only, as AWS does.
    assert answer.headers["x-amzn-RequestId"] == REQUEST_ID


def test_rest_xml_body_shape() -> None:
    answer = render_error(PayloadTooLarge(TRICKY), "rest-xml", REQUEST_ID)
    root = ET.fromstring(answer.body)
    assert root.tag == "Error"
    assert xml_fields(answer.body) == {
        "Code": "EntityTooLarge",  # S3's own name for it
        "Message": TRICKY,
        "RequestId": REQUEST_ID,
    }
    assert answer.status == 413
    assert answer.headers["Content-Type"] == "application/xml"


@pytest.mark.parametrize("protocol", ["ec2", "query", "rest-xml"])
def test_xml_messages_are_escaped(protocol: str) -> None:
    body = render_error(BadRequest("<Code>Injected</Code> & co"), protocol, REQUEST_ID).body
    assert b"<Code>Injected</Code>" not in body
    assert b"&lt;Code&gt;Injected&lt;/Code&gt; &amp; co" in body
    assert xml_fields(body)["Message"] == "<Code>Injected</Code> & co"
    assert xml_fields(body)["Code"] == "BadRequest"


def test_json_messages_stay_valid_json() -> None:
    message = 'quote " backslash \\ newline \n <&>'
    body = render_error(BadRequest(message), "json", REQUEST_ID).body
    assert json.loads(body)["message"] == message


@pytest.mark.parametrize(("protocol", "status", "code"), THROTTLES)
def test_rate_limited_is_the_services_own_throttle(protocol: str, status: int, code: str) -> None:
    answer = render_error(throttled(1.2), protocol, REQUEST_ID)
    assert answer.status == status
    assert answer.headers[ERROR_HEADER] == "rate-limited"
    assert answer.headers["Retry-After"] == "2"
    assert answer.headers["x-amzn-RequestId"] == REQUEST_ID
    parsed = botocore_parse(answer, protocol)
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == "over client-side limit ec2-describe"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize(("protocol", "status", "code"), THROTTLES)
def test_botocore_retries_our_throttles_as_throttles(protocol: str, status: int, code: str) -> None:
    parsed = botocore_parse(render_error(throttled(), protocol, REQUEST_ID), protocol)
    context = RetryContext(attempt_number=1, parsed_response=parsed)
    assert context.get_error_code() == code
    assert ThrottledRetryableChecker().is_retryable(context)


@pytest.mark.parametrize("protocol", ["ec2", "query", "json", "rest-xml", CBOR])
def test_botocore_reads_our_request_id(protocol: str) -> None:
    parsed = botocore_parse(render_error(BadRequest("x"), protocol, REQUEST_ID), protocol)
    assert parsed["ResponseMetadata"]["RequestId"] == REQUEST_ID


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("error", "status", "code"), REFUSALS, ids=[code for _, _, code in REFUSALS]
)
def test_refusals_parse_as_errors_with_their_own_code(
    protocol: str, error: ProxyError, status: int, code: str
) -> None:
    answer = render_error(error, protocol, REQUEST_ID)
    assert answer.status == status
    assert answer.headers[ERROR_HEADER] == error.reason
    assert "Retry-After" not in answer.headers
    parsed = botocore_parse(answer, protocol)
    if isinstance(error, PayloadTooLarge) and protocol == "rest-xml":
        code = "EntityTooLarge"  # S3's own name for a body over its limit
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == error.message
    assert not ThrottledRetryableChecker().is_retryable(
        RetryContext(attempt_number=1, parsed_response=parsed)
    )


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (0.0, "1"),
        (0.001, "1"),
        (0.5, "1"),
        (1.0, "1"),
        (1.01, "2"),
        (1.2, "2"),
        (1.5, "2"),
        (2.0, "2"),
        (2.5, "3"),
        (7.9, "8"),
        (59.99, "60"),
    ],
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(
    retry_after: float, header: str
) -> None:
    answer = render_error(throttled(retry_after), "ec2", REQUEST_ID)
    assert answer.headers["Retry-After"] == header


def test_unknown_protocol_is_plain_text() -> None:
    answer = render_error(HostNotAllowed("host 'x' <not> allowed"), "smithy-rpc-v9", REQUEST_ID)
    assert answer.status == 403
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.body == b"HostNotAllowed: host 'x' <not> allowed\n"
    assert answer.headers[ERROR_HEADER] == "host-not-allowed"
    assert answer.headers["x-amzn-RequestId"] == REQUEST_ID


def test_unknown_protocol_throttle_is_429_throttling() -> None:
    answer = render_error(throttled(0.3), "", REQUEST_ID)
    assert answer.status == 429
    assert answer.body == b"Throttling: over client-side limit ec2-describe\n"
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers[ERROR_HEADER] == "rate-limited"


def test_body_is_utf8() -> None:
    answer = render_error(BadRequest("bucket “café”"), "rest-xml", REQUEST_ID)
    assert xml_fields(answer.body)["Message"] == "bucket “café”"
    assert json.loads(render_error(BadRequest("é"), "json", REQUEST_ID).body)["message"] == "é"


# (request target, head) of requests SDKs send, and the format each one's parser reads.
HEADS = [
    ("http://vpce-1.s3.us-east-1.vpce.amazonaws.com/b/k", {}, "rest"),
    ("/b/k?x-id=PutObject", {"Host": "b.s3.x", "Content-Type": "application/octet-stream"}, "rest"),
    ("http://h/2015-03-31/functions/", {}, "rest"),
    ("http://h/2015-03-31/functions/f", {"Content-Type": "application/json"}, "rest-json"),
    ("http://h/", {"X-Amz-Target": "DynamoDB_20120810.ListTables"}, "json"),
    ("http://h/", {"content-type": "application/x-amz-json-1.0"}, "json"),
    ("http://h/", {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, "query"),
    ("http://h/?Action=GetCallerIdentity&Version=2011-06-15", {}, "query"),
    ("/?Version=1&Action=ListUsers", {"Host": "iam.example"}, "query"),
    ("/?NotAction=ListUsers", {}, "rest"),
    ("http://vpce-1.ec2.us-east-1.vpce.amazonaws.com/?Action=DescribeVpcs", {}, "ec2"),
    (
        "/",
        {"Host": "vpce-1.EC2.us-east-1.vpce.amazonaws.com:80", "Content-Type": _FORM},
        "ec2",
    ),
    ("http://ec2-like.example/?Action=DescribeVpcs", {}, "query"),
    (
        "/service/GraniteServiceVersion20100801/operation/PutMetricData",
        {"smithy-protocol": "rpc-v2-cbor"},
        CBOR,
    ),
]


@pytest.mark.parametrize(("target", "head", "protocol"), HEADS)
def test_protocol_of_head_is_the_one_the_sdk_reads(
    target: str, head: dict[str, str], protocol: str
) -> None:
    assert protocol_of_head(target, CIMultiDict(head)) == protocol


@pytest.mark.parametrize("sdk_protocol", ["rest-xml", "rest-json"])
def test_rest_refusal_parses_in_either_rest_protocol(sdk_protocol: str) -> None:
    # A REST request from a host that names no service: S3 (XML) or a REST-JSON service.
    answer = render_error(HostNotAllowed("host 'h' is not allowed"), "rest", REQUEST_ID)
    assert xml_fields(answer.body)["Code"] == "HostNotAllowed"
    assert botocore_parse(answer, sdk_protocol)["Error"]["Code"] == "HostNotAllowed"


@pytest.mark.parametrize("message", ["short", "m" * 23, "m" * 24, "é" * 200, "x" * 70_000])
def test_cbor_body_shape(message: str) -> None:
    # Smithy RPC v2 clients check the protocol header before they read the body (the Go SDK
    # refuses an answer without it).
    answer = render_error(BadRequest(message), CBOR, REQUEST_ID)
    assert answer.headers["smithy-protocol"] == "rpc-v2-cbor"
    assert answer.headers["Content-Type"] == "application/cbor"
    parsed = botocore_parse(answer, CBOR)
    assert (parsed["Error"]["Code"], parsed["Error"]["Message"]) == ("BadRequest", message)
