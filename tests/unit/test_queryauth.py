"""Presigned requests are recognised and left alone; stray auth parameters are removed."""

from __future__ import annotations

import pytest

from proxy.aws.routing import Router
from proxy.config.model import parse_config
from proxy.signing.queryauth import QueryAuth, client_query_auth

V4 = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fs3"
    "%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=" + "ab" * 32
)


@pytest.mark.parametrize(
    "query",
    [
        V4,
        V4 + "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE",
        "response-content-type=text%2Fplain&" + V4,
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1700000000&Signature=abc%2Bdef%3D",
        # Names are compared decoded and case-folded, as AWS reads them.
        "x-amz-credential=a%2Fb&X-Amz-%53ignature=00",
    ],
)
def test_presigned_queries_pass_byte_for_byte(query: str) -> None:
    assert client_query_auth(query) == QueryAuth(query, presigned=True)


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("Action=ListQueues&Version=2012-11-05", "Action=ListQueues&Version=2012-11-05"),
        ("", ""),
        ("list-type=2&prefix=a%20b&X-Amz-Security-Token=client-token", "list-type=2&prefix=a%20b"),
        ("X-Amz-Credential=AKIDEXAMPLE%2Fscope&uploads", "uploads"),  # no signature: incomplete
        ("X-Amz-Signature=00&X-Amz-Date=20150830T123600Z&a=1", "a=1"),  # no credential
        ("Signature=abc&Expires=1", "Expires=1"),  # SigV2 without the key id
        ("AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&SecurityToken=t&x=1", "x=1"),
        ("X-Amz-Credential=&X-Amz-Signature=00&k=v", "k=v"),  # an empty value is no presign
        ("x-amz-security-token=lower&X-Amz-%53ecurity-Token=enc&b", "b"),
        ("a=1&&b=2+3&X-Amz-Algorithm=AWS4-HMAC-SHA256", "a=1&&b=2+3"),
    ],
)
def test_auth_parameters_of_unsigned_requests_are_removed(query: str, kept: str) -> None:
    assert client_query_auth(query) == QueryAuth(kept, presigned=False)


def test_long_queries_are_read_as_short_ones() -> None:
    # Past the memo's length bound the same rules apply, each call worked out afresh.
    padding = "&".join(f"p{i}=v" for i in range(60))
    assert len(padding) > 256
    assert client_query_auth(f"{padding}&X-AMZ-SECURITY-TOKEN=t") == QueryAuth(padding, False)
    assert client_query_auth(f"{padding}&{V4}") == QueryAuth(f"{padding}&{V4}", True)
    assert client_query_auth(padding) == QueryAuth(padding, False)


def test_router_marks_presigned_targets_and_strips_the_rest() -> None:
    router = Router(parse_config({}))
    host = "my-bucket.s3.us-west-2.amazonaws.com"
    presigned = router.resolve("GET", f"/a%20key?{V4}", host)
    assert (presigned.presigned, presigned.path, presigned.query) == (True, "/a%20key", V4)
    plain = router.resolve("GET", "/k?X-Amz-Security-Token=mine&versionId=3", host)
    assert (plain.presigned, plain.query) == (False, "versionId=3")
