"""Answers the proxy makes itself, written in the service's own error format.

An app's SDK then parses them like AWS's own errors (a client-side throttle looks exactly like
EC2's `RequestLimitExceeded` or S3's `SlowDown`), and the `x-throttle-proxy-error` header lets
people tell them apart from AWS's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

from proxy.errors import PayloadTooLarge, ProxyError, RateLimited

ERROR_HEADER = "x-throttle-proxy-error"


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


# (status, code) of each protocol's throttling error, as AWS sends them.
_THROTTLE_BY_PROTOCOL = {
    "ec2": (503, "RequestLimitExceeded"),
    "query": (400, "Throttling"),
    "json": (400, "ThrottlingException"),
    "rest-json": (429, "TooManyRequestsException"),
    "rest-xml": (503, "SlowDown"),
    "smithy-rpc-v2-cbor": (400, "ThrottlingException"),
}


# What AWS itself calls a body over its limit: S3 `EntityTooLarge`, the others (API Gateway,
# DynamoDB, Lambda) `RequestEntityTooLarge`.
_TOO_LARGE_BY_PROTOCOL = {"rest-xml": "EntityTooLarge"}


def _code_for(error: ProxyError, protocol: str) -> str:
    """The error's own code, else a CamelCase one from the reason: `host-not-allowed` ->
    `HostNotAllowed`."""
    if isinstance(error, PayloadTooLarge):
        return _TOO_LARGE_BY_PROTOCOL.get(protocol, "RequestEntityTooLarge")
    if error.code is not None:
        return error.code
    return "".join(part.capitalize() for part in error.reason.split("-"))


def throttle_answer(protocol: str) -> tuple[int, str]:
    """(status, code) of the protocol's own throttling error."""
    return _THROTTLE_BY_PROTOCOL.get(protocol, (429, "Throttling"))


# What an SDK's request head says about the error format it parses, for a request whose host
# names no endpoint (refused before routing): Smithy RPC v2 SDKs send `smithy-protocol`,
# JSON-protocol ones name their target or send their content type, query and EC2 ones a form
# or `Action=`; other REST calls get "rest".
_JSON_CONTENT = "application/x-amz-json-"
_FORM_CONTENT = "application/x-www-form-urlencoded"


def protocol_of_head(target: str, headers: Mapping[str, str]) -> str:
    """The protocol to refuse a request in when its host names no endpoint (`host-not-allowed`),
    from its head alone: plain text there is an error no SDK parses (botocore's query parser
    raises ResponseParserError, the JS SDK a SyntaxError instead of the error's name).
    `target` is the raw request target, `headers` case-insensitive."""
    content_type = headers.get("Content-Type", "").lower()
    if headers.get("smithy-protocol") == "rpc-v2-cbor":
        return "smithy-rpc-v2-cbor"
    if "X-Amz-Target" in headers or content_type.startswith(_JSON_CONTENT):
        return "json"
    if content_type.startswith(_FORM_CONTENT) or "&Action=" in "&" + target.partition("?")[2]:
        # EC2 writes its own shape (<Response><Errors>); its host names it in a label.
        return "ec2" if "ec2" in _host_of(target, headers).split(".") else "query"
    if content_type.startswith("application/json"):
        return "rest-json"
    return "rest"


def _host_of(target: str, headers: Mapping[str, str]) -> str:
    if target.startswith(("http://", "https://")):
        authority = target.split("/", 3)[2]
    else:
        authority = headers.get("Host", "")
    return authority.rpartition("@")[2].split(":", 1)[0].lower()


def render_error(error: ProxyError, protocol: str, request_id: str) -> ErrorAnswer:
    """The answer for `error` in `protocol` ('ec2', 'query', 'json', 'rest-json', 'rest-xml',
    'smithy-rpc-v2-cbor', 'rest': REST-XML with the code in a header too; anything else: plain
    text)."""
    status, code = error.status, _code_for(error, protocol)
    retry_after: str | None = None
    if isinstance(error, RateLimited):
        status, code = throttle_answer(protocol)
    if error.retry_after is not None:
        retry_after = str(max(1, round(error.retry_after + 0.4999)))
    answer = render_aws_error(status, code, error.message, protocol, request_id)
    answer.headers[ERROR_HEADER] = error.reason
    if retry_after is not None:
        answer.headers["Retry-After"] = retry_after
    return answer


def render_aws_error(
    status: int, code: str, message: str, protocol: str, request_id: str
) -> ErrorAnswer:
    """An error answer shaped exactly as AWS writes it for `protocol` (no proxy header)."""
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        headers["Content-Type"] = "text/xml;charset=UTF-8"
    elif protocol == "query":
        kind = "Sender" if status < 500 else "Receiver"
        body = (
            '<ErrorResponse xmlns="https://throttle-proxy.invalid/doc/">'
            f"<Error><Type>{kind}</Type><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers["Content-Type"] = "text/xml"
    elif protocol in ("json", "rest-json"):
        body = json.dumps({"__type": code, "message": message})
        headers["Content-Type"] = (
            "application/x-amz-json-1.0" if protocol == "json" else "application/json"
        )
        headers["x-amzn-ErrorType"] = code
    elif protocol in ("rest-xml", "rest"):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        headers["Content-Type"] = "application/xml"
        if protocol == "rest":
            # A REST service we cannot tell: S3's XML, and the code where REST-JSON SDKs look
            # first (botocore reads it there whatever the body).
            headers["x-amzn-ErrorType"] = code
    elif protocol == "smithy-rpc-v2-cbor":
        headers["Content-Type"] = "application/cbor"
        # Smithy RPC v2 clients check it before they read the body (the Go SDK's refuses
        # an answer without it).
        headers["smithy-protocol"] = "rpc-v2-cbor"
        return ErrorAnswer(status, headers, _cbor_error(code, message))
    else:
        body = f"{code}: {message}\n"
        headers["Content-Type"] = "text/plain; charset=utf-8"
    return ErrorAnswer(status, headers, body.encode("utf-8"))


def _cbor_error(code: str, message: str) -> bytes:
    """Smithy RPC v2 CBOR's error document: a map of two text strings, `__type` and
    `message` (RFC 8949: 0xa2 a map of two pairs)."""
    return b"\xa2" + b"".join(map(_cbor_text, ("__type", code, "message", message)))


def _cbor_text(text: str) -> bytes:
    """A CBOR text string (major type 3), its length in the shortest form."""
    data = text.encode("utf-8")
    size = len(data)
    if size < 24:
        head = bytes((0x60 + size,))
    elif size < 0x100:
        head = bytes((0x78, size))
    elif size < 0x10000:
        head = b"\x79" + size.to_bytes(2, "big")
    else:
        head = b"\x7a" + size.to_bytes(4, "big")
    return head + data
