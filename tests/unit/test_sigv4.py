"""The signer against AWS's published test suite and documented examples, plus its own rules."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from proxy.credentials.base import Credentials
from proxy.signing.sigv4 import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    ScopeKey,
    SignedRequest,
    SigningInput,
    SigningKeyCache,
    canonical_query,
    canonical_uri,
    derive_signing_key,
    remove_dot_segments,
    s3_path_to_send,
    sign,
)

SUITE_DIR = Path(__file__).parent.parent / "data" / "aws4_testsuite"
SUITE_TIME = 1_440_938_160.0  # 2015-08-30T12:36:00Z
SUITE_CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
# Each skipped case and why we deliberately differ from it.
SUITE_SKIPS = {
    "post-sts-header-after": (
        "adds X-Amz-Security-Token after signing, unsigned; we always sign the token, as botocore"
    ),
}
SUITE_CASES = sorted(path.stem for path in SUITE_DIR.glob("*.req"))

# The S3 developer guide's examples use this key pair and time (2013-05-24T00:00:00Z).
S3_DOC_CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_DOC_TIME = 1_369_353_600.0


@dataclass(frozen=True)
class SuiteRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


def parse_req(text: str) -> SuiteRequest:
    """Parse a suite .req file: request line, headers, blank line, body."""
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, rest = request_line.split(" ", 1)
    target = rest.rsplit(" ", 1)[0]  # the path may hold a space (get-space)
    path, _, query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        if line[:1] in (" ", "\t"):
            # Obsolete line folding: the suite reads each folded line as another value.
            headers.append((headers[-1][0], line))
            continue
        name, _, value = line.partition(":")
        headers.append((name, value))
    return SuiteRequest(method, path, query, headers, body.encode("utf-8"))


def suite_sign(name: str) -> SignedRequest:
    parsed = parse_req((SUITE_DIR / f"{name}.req").read_text(encoding="utf-8"))
    host = next(value for key, value in parsed.headers if key.lower() == "host")
    token = next(
        (value for key, value in parsed.headers if key.lower() == "x-amz-security-token"), None
    )
    creds = Credentials(SUITE_CREDS.access_key_id, SUITE_CREDS.secret_access_key, token)
    request = SigningInput(
        method=parsed.method,
        host=host,
        path=parsed.path,
        query=parsed.query,
        headers=parsed.headers,
        payload_hash=hashlib.sha256(parsed.body).hexdigest(),
        service="service",
        region="us-east-1",
        send_content_sha256=False,
    )
    return sign(request, creds, SUITE_TIME, SigningKeyCache())


def header(signed: SignedRequest, name: str) -> list[str]:
    return [value for key, value in signed.headers if key.lower() == name]


def test_suite_is_present() -> None:
    assert len(SUITE_CASES) == 31


@pytest.mark.parametrize("name", SUITE_CASES)
def test_aws_suite_case(name: str) -> None:
    if name in SUITE_SKIPS:
        pytest.skip(SUITE_SKIPS[name])
    signed = suite_sign(name)
    expected_creq = (SUITE_DIR / f"{name}.creq").read_text(encoding="utf-8")
    assert signed.canonical_request == expected_creq
    assert signed.string_to_sign == (SUITE_DIR / f"{name}.sts").read_text(encoding="utf-8")
    assert header(signed, "authorization") == [
        (SUITE_DIR / f"{name}.authz").read_text(encoding="utf-8")
    ]
    # The query we send is the one we signed.
    assert signed.query == expected_creq.split("\n")[2]


S3_DOC_GET = SigningInput(
    method="GET",
    host="examplebucket.s3.amazonaws.com",
    path="/test.txt",
    query="",
    headers=[("Range", "bytes=0-9")],
    payload_hash=EMPTY_SHA256,
    service="s3",
    region="us-east-1",
)


def s3_request(**overrides: Any) -> SigningInput:
    return replace(S3_DOC_GET, **overrides)


def test_s3_developer_guide_get_object_example() -> None:
    # docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "GET Object".
    signed = sign(s3_request(), S3_DOC_CREDS, S3_DOC_TIME, SigningKeyCache())
    assert signed.canonical_request == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        f"x-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\n"
        f"host;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
    )
    assert signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    assert header(signed, "authorization") == [
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    ]


def test_client_credentials_headers_are_replaced_case_insensitively() -> None:
    client_headers = [
        ("AUTHORIZATION", "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/x, Signature=bad"),
        ("x-amz-date", "19990101T000000Z"),
        ("X-Amz-Security-Token", "client-token"),
        ("X-AMZ-CONTENT-SHA256", "client-hash"),
        ("host", "evil.example.com"),
        ("Content-Type", "text/plain"),
    ]
    creds = Credentials("AKIDEXAMPLE", "secret", "our-token")
    signed = sign(s3_request(headers=client_headers), creds, S3_DOC_TIME, SigningKeyCache())
    sent = dict((name.lower(), value) for name, value in signed.headers)
    assert len(signed.headers) == len(sent)  # nothing the client sent survives as a duplicate
    assert sent["host"] == "examplebucket.s3.amazonaws.com"
    assert sent["x-amz-date"] == "20130524T000000Z"
    assert sent["x-amz-security-token"] == "our-token"
    assert sent["x-amz-content-sha256"] == EMPTY_SHA256
    assert "AKIDCLIENT" not in sent["authorization"]
    assert "client" not in signed.canonical_request
    assert "evil" not in signed.canonical_request
    assert sent["content-type"] == "text/plain"


def test_unsigned_headers_are_forwarded_but_not_signed() -> None:
    client_headers = [
        ("User-Agent", "app/1.0"),
        ("X-Amzn-Trace-Id", "Root=1-abc"),
        ("traceparent", "00-abc-def-01"),
        ("Expect", "100-continue"),
        ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
        ("X-Amz-Meta-Owner", "team"),
        ("Accept", "*/*"),
    ]
    signed = sign(s3_request(headers=client_headers), S3_DOC_CREDS, 0.0, SigningKeyCache())
    names = [name for name, _ in signed.headers]
    assert names[: len(client_headers)] == [name for name, _ in client_headers]
    signed_headers = signed.canonical_request.split("\n")[-2].split(";")
    assert signed_headers == [
        "accept",
        "content-md5",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-meta-owner",
    ]


def test_session_token_is_sent_and_signed_only_when_present() -> None:
    with_token = Credentials("AKIDEXAMPLE", "secret", "tok/en+==")
    signed = sign(s3_request(), with_token, 0.0, SigningKeyCache())
    assert header(signed, "x-amz-security-token") == ["tok/en+=="]
    assert "x-amz-security-token:tok/en+==\n" in signed.canonical_request
    assert "x-amz-security-token" in header(signed, "authorization")[0]
    unsigned = sign(s3_request(), S3_DOC_CREDS, 0.0, SigningKeyCache())
    assert header(unsigned, "x-amz-security-token") == []
    assert "x-amz-security-token" not in unsigned.canonical_request


def test_repr_hides_key_token_and_canonical_request() -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "SECRETTOKEN")
    signed = sign(s3_request(), creds, 0.0, SigningKeyCache())
    text = repr(signed)
    assert "signing_key" not in text
    assert "canonical_request" not in text
    assert "string_to_sign" not in text
    # The token is a header we must send, so it is in headers; nowhere else in the repr.
    assert text.count("SECRETTOKEN") == 1


@pytest.mark.parametrize(
    ("payload_hash", "expected"),
    [(UNSIGNED_PAYLOAD, UNSIGNED_PAYLOAD), ("ab" * 32, "ab" * 32)],
)
def test_payload_hash_is_sent_and_ends_the_canonical_request(
    payload_hash: str, expected: str
) -> None:
    signed = sign(s3_request(payload_hash=payload_hash), S3_DOC_CREDS, 0.0, SigningKeyCache())
    assert header(signed, "x-amz-content-sha256") == [expected]
    assert signed.canonical_request.endswith("\n" + expected)


def test_header_values_trimmed_collapsed_and_repeats_joined_in_order() -> None:
    client_headers = [
        ("X-Amz-Meta-A", "  one   two\t three  "),
        ("x-amz-meta-a", "b"),
        ("X-AMZ-META-A", ""),
        ("X-Empty", ""),
    ]
    signed = sign(s3_request(headers=client_headers), S3_DOC_CREDS, 0.0, SigningKeyCache())
    assert "\nx-amz-meta-a:one two three,b,\n" in signed.canonical_request
    assert "\nx-empty:\n" in signed.canonical_request
    # Forwarded untouched: only the signature's copy is normalised.
    assert header(signed, "x-amz-meta-a") == ["  one   two\t three  ", "b", ""]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=1&a=10", "a=1&a=10&a=2"),
        ("uploads", "uploads="),
        ("a=&b", "a=&b="),
        ("a=1&&b=2&", "a=1&b=2"),
        ("q=a+b", "q=a%2Bb"),  # '+' is a literal plus, never a space
        ("q=a%20b", "q=a%20b"),
        ("q=%7e%2f%2F", "q=~%2F%2F"),  # escapes normalised to uppercase; '~' unreserved
        ("k%20ey=v=w", "k%20ey=v%3Dw"),  # split on the first '=' only
        ("q=%FF%fe", "q=%FF%FE"),  # non-UTF-8 bytes survive the round trip
        ("q=caf%C3%A9&p=日本", "p=%E6%97%A5%E6%9C%AC&q=caf%C3%A9"),
        ("Z=1&a=1&_=1&-=1", "-=1&Z=1&_=1&a=1"),  # byte order, not case-insensitive
        ("list-type=2&prefix=a/b", "list-type=2&prefix=a%2Fb"),
    ],
)
def test_canonical_query(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "service", "canonical"),
    [
        ("", "ec2", "/"),
        ("/", "ec2", "/"),
        ("/a%2Fb", "execute-api", "/a%252Fb"),
        ("/a/./b/../c//d/", "lambda", "/a/c/d/"),
        ("/x y", "es", "/x%20y"),
        ("/a!b", "es", "/a%21b"),
        ("/a%2Fb", "s3", "/a%2Fb"),
        ("/b/a//../k", "s3", "/b/a//../k"),  # S3 keys are opaque: no normalisation
        ("/b/a!b+c", "s3", "/b/a%21b%2Bc"),
        ("/b/%e6%97%a5", "s3-object-lambda", "/b/%E6%97%A5"),
        ("/b/k%20x", "s3express", "/b/k%20x"),
        ("b/k", "s3", "/b/k"),
    ],
)
def test_canonical_uri(raw: str, service: str, canonical: str) -> None:
    assert canonical_uri(raw, service) == canonical


def test_s3_sends_the_path_it_signed_others_send_the_raw_path() -> None:
    s3 = sign(s3_request(path="/b/a!b"), S3_DOC_CREDS, 0.0, SigningKeyCache())
    assert s3.path == "/b/a%21b"
    assert s3.canonical_request.split("\n")[1] == "/b/a%21b"
    ec2 = sign(
        s3_request(path="/a/../b%2F", service="ec2", host="ec2.us-east-1.amazonaws.com"),
        S3_DOC_CREDS,
        0.0,
        SigningKeyCache(),
    )
    assert ec2.path == "/a/../b%2F"
    assert ec2.canonical_request.split("\n")[1] == "/b%252F"


def test_s3_path_encoding_is_idempotent() -> None:
    for path in ["/b/a%21b%2Bc", "/b/%E6%97%A5/x~y", "/", "/b//k/../"]:
        assert s3_path_to_send(path) == path
        assert s3_path_to_send(s3_path_to_send("/b/r!a w+")) == "/b/r%21a%20w%2B"


@pytest.mark.parametrize(
    ("path", "normalised"),
    [("/", "/"), ("/a/..", "/"), ("/a/b/..", "/a"), ("//a//", "/a/"), ("/./a/./", "/a/")],
)
def test_remove_dot_segments(path: str, normalised: str) -> None:
    assert remove_dot_segments(path) == normalised


def test_date_and_scope_follow_now_across_midnight() -> None:
    keys = SigningKeyCache()
    before = sign(s3_request(), S3_DOC_CREDS, S3_DOC_TIME - 1, keys)
    after = sign(s3_request(), S3_DOC_CREDS, S3_DOC_TIME, keys)
    assert before.amz_date == "20130523T235959Z"
    assert before.scope == "20130523/us-east-1/s3/aws4_request"
    assert after.scope == "20130524/us-east-1/s3/aws4_request"
    assert before.signing_key != after.signing_key
    assert len(keys) == 2


def test_key_cache_derives_once_and_is_bounded() -> None:
    keys = SigningKeyCache(max_entries=2)
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    first = keys.key(secret, "20150830", "us-east-1", "service")
    assert first == derive_signing_key(secret, "20150830", "us-east-1", "service")
    assert keys.key(secret, "20150830", "us-east-1", "service") is first
    keys.key(secret, "20150830", "us-west-2", "service")
    keys.key(secret, "20150830", "us-east-1", "service")  # refresh: now most recent
    keys.key(secret, "20150830", "eu-west-1", "service")  # evicts us-west-2
    assert len(keys) == 2
    assert keys.key(secret, "20150830", "us-east-1", "service") is first
    assert keys.key("other", "20150830", "us-east-1", "service") != first
    keys.clear()
    assert len(keys) == 0


@pytest.mark.parametrize("key", [b"", b"k" * 32, bytes(range(64))])
def test_scope_key_signature_is_hmac_sha256(key: bytes) -> None:
    scoped = ScopeKey(key, "20150830/us-east-1/service/aws4_request")
    for message in [b"", b"AWS4-HMAC-SHA256\n" * 9, bytes(range(256))]:
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        # Twice: a signature must leave the precomputed pad states as they were.
        assert scoped.signature(message) == expected
        assert scoped.signature(message) == expected
    with pytest.raises(ValueError, match="32 bytes"):
        ScopeKey(b"k" * 65, "s")


def test_key_cache_answers_a_run_of_one_scope_and_follows_every_change() -> None:
    keys = SigningKeyCache()
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    first = keys.scoped(secret, "20150830", "us-east-1", "ec2")
    assert keys.scoped(secret, "20150830", "us-east-1", "ec2") is first
    # An equal secret in another string object is the same key; each field of the scope counts.
    assert keys.scoped("".join(list(secret)), "20150830", "us-east-1", "ec2").key == first.key
    for date, region, service in [
        ("20150831", "us-east-1", "ec2"),
        ("20150830", "us-west-2", "ec2"),
        ("20150830", "us-east-1", "sqs"),
    ]:
        other = keys.scoped(secret, date, region, service)
        assert other.key == derive_signing_key(secret, date, region, service)
        assert other.scope == f"{date}/{region}/{service}/aws4_request"
    assert keys.scoped("other", "20150830", "us-east-1", "ec2").key != first.key
    keys.clear()
    assert keys.scoped(secret, "20150830", "us-east-1", "ec2") is not first
    assert len(keys) == 1


def test_key_cache_holds_no_secret() -> None:
    keys = SigningKeyCache()
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    keys.key(secret, "20150830", "us-east-1", "service")
    stored = repr(list(keys._keys.items()))
    assert secret not in stored
    assert secret.encode() not in stored.encode()


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        # AWS's "derive a signing key" examples (IAM, us-east-1) for the suite's secret.
        ("20120215", "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"),
        ("20150830", "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"),
    ],
)
def test_documented_signing_keys(date: str, expected: str) -> None:
    key = derive_signing_key(SUITE_CREDS.secret_access_key, date, "us-east-1", "iam")
    assert key.hex() == expected
