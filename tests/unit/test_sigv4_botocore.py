"""Differential test: our signer and botocore's SigV4Auth/S3SigV4Auth agree on 600 random requests.

Our side gets what a client would send the proxy: a raw query (sub-delims sometimes left raw,
escapes sometimes lowercase), paths with dot segments, headers in any case with stray
whitespace and repeats, and bogus credential headers that must be stripped. botocore gets the
same request the way an SDK builds it: decoded query parameters, a fully encoded S3 key, only
the headers that should be signed. The signatures must be identical.
"""

from __future__ import annotations

import datetime
import hashlib
import random
from dataclasses import dataclass
from urllib.parse import quote

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from proxy.aws.s3family import S3_SIGNING_NAMES
from proxy.credentials.base import Credentials
from proxy.signing.sigv4 import (
    UNSIGNED_PAYLOAD,
    SignedRequest,
    SigningInput,
    SigningKeyCache,
    sign,
)

CASES = 600
SEED = 20150830
FROZEN = datetime.datetime(2015, 8, 30, 12, 36, 0)
FROZEN_EPOCH = 1_440_938_160.0
ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

SERVICES = ["ec2", "dynamodb", "sts", "execute-api", "lambda", "s3", "s3-object-lambda"]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"]
METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"]
# Characters a key, path segment or query value may hold: reserved, unreserved, non-ASCII.
ALPHABET = (
    list("abcXYZ019-_.~")
    + list(" !\"#$%&'()*+,/:;<=>?@[\\]^`{|}")
    + ["é", "ß", "日本", "😀", "\u00a0"]
)
SUB_DELIMS_LEFT_RAW = "!$'()*,;:@"  # what a sloppy client leaves unencoded
HEADER_NAMES = [
    "Content-Type",
    "Content-MD5",
    "X-Amz-Meta-Owner",
    "x-amz-meta-Tag",
    "X-Custom-Header",
    "Accept",
    "If-None-Match",
    "Range",
    "Cache-Control",
    "X-Amz-Target",
    "Content-Length",
    "User-Agent",
    "X-Amzn-Trace-Id",
    "traceparent",
    "Expect",
]
HEADER_VALUE_WORDS = ["a", "b c", "text/plain", "1", '"etag"', "x=1;y=2", "é", ""]
CLIENT_CREDENTIAL_HEADERS = [
    ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20200101/x/y/aws4_request"),
    ("X-Amz-Date", "20200101T000000Z"),
    ("x-amz-security-token", "client-token"),
    ("X-AMZ-CONTENT-SHA256", "0" * 64),
]


@dataclass
class Case:
    service: str
    region: str
    method: str
    host: str
    raw_path: str  # what the client sends the proxy
    sdk_path: str  # what botocore would put in its URL
    raw_query: str
    params: list[tuple[str, str]]
    headers: list[tuple[str, str]]  # headers both sides sign
    noise: list[tuple[str, str]]  # client credential headers only we see (and must drop)
    body: bytes
    token: str | None
    unsigned_payload: bool


def random_text(rng: random.Random, max_len: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_len)))


def client_encode(rng: random.Random, text: str, safe: str) -> str:
    """Percent-encode as some client might: sub-delims maybe raw, hex maybe lowercase."""
    encoded = quote(text, safe=safe + (SUB_DELIMS_LEFT_RAW if rng.random() < 0.4 else ""))
    if rng.random() < 0.3:
        encoded = "%".join(
            part[:2].lower() + part[2:] if i else part for i, part in enumerate(encoded.split("%"))
        )
    return encoded


def random_s3_path(rng: random.Random) -> tuple[str, str]:
    bucket = rng.choice(["bucket", "my.bucket", "b-1"])
    key = "/".join(random_text(rng, 6) for _ in range(rng.randint(0, 4)))
    if rng.random() < 0.2:
        key = rng.choice(["a//b", "../x", "./y/", "k/"]) + key
    sdk_path = "/" + quote(f"{bucket}/{key}", safe="/~") if rng.random() < 0.9 else "/"
    raw_path = client_encode(rng, f"/{bucket}/{key}", "/~") if sdk_path != "/" else "/"
    return raw_path, sdk_path


def random_path(rng: random.Random) -> str:
    segments = []
    for _ in range(rng.randint(0, 5)):
        roll = rng.random()
        if roll < 0.15:
            segments.append(rng.choice([".", "..", ""]))
        elif roll < 0.25:
            segments.append(rng.choice(["%2F", "a%2Fb", "%252F"]))
        else:
            segments.append(client_encode(rng, random_text(rng, 6), "~"))
    path = "/" + "/".join(segments)
    return path + "/" if rng.random() < 0.2 else path


def random_query(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    params: list[tuple[str, str]] = []
    raw_parts: list[str] = []
    keys = [random_text(rng, 5) or "k" for _ in range(rng.randint(1, 3))]
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8])):
        key = rng.choice(keys) if rng.random() < 0.4 else random_text(rng, 6)
        value = "" if rng.random() < 0.25 else random_text(rng, 8)
        params.append((key, value))
        raw_key = client_encode(rng, key, "")
        if key and not value and rng.random() < 0.5:
            raw_parts.append(raw_key)  # no '=' at all: the value is empty
        else:
            raw_value = client_encode(rng, value, "")
            if "%2B" in raw_value and rng.random() < 0.5:
                raw_value = raw_value.replace("%2B", "+")  # a raw '+' is a literal plus
            raw_parts.append(f"{raw_key}={raw_value}")
        if rng.random() < 0.1:
            raw_parts.append("")  # '&&': an empty pair, dropped
    rng.shuffle(raw_parts)
    return "&".join(raw_parts), params


def random_header_value(rng: random.Random) -> str:
    words = [rng.choice(HEADER_VALUE_WORDS) for _ in range(rng.randint(1, 3))]
    gaps = [rng.choice([" ", "  ", "\t", " \t "]) for _ in words]
    value = "".join(w + g for w, g in zip(words, gaps, strict=True))
    return rng.choice(["", " ", "  "]) + value.rstrip(" \t") + rng.choice(["", " ", "\t"])


def random_case(rng: random.Random) -> Case:
    service = rng.choice(SERVICES)
    region = rng.choice(REGIONS)
    if service in S3_SIGNING_NAMES:
        raw_path, sdk_path = random_s3_path(rng)
    else:
        raw_path = sdk_path = random_path(rng)
    raw_query, params = random_query(rng)
    headers: list[tuple[str, str]] = []
    for _ in range(rng.randint(0, 6)):
        name = rng.choice(HEADER_NAMES)
        name = rng.choice([name, name.lower(), name.upper()])
        headers.append((name, random_header_value(rng)))
    noise = rng.sample(CLIENT_CREDENTIAL_HEADERS, rng.randint(0, len(CLIENT_CREDENTIAL_HEADERS)))
    host = rng.choice([f"{service}.{region}.amazonaws.com", "localhost:4566", "b.s3.amazonaws.com"])
    return Case(
        service=service,
        region=region,
        method=rng.choice(METHODS),
        host=host,
        raw_path=raw_path,
        sdk_path=sdk_path,
        raw_query=raw_query,
        params=params,
        headers=headers,
        noise=noise,
        body=rng.randbytes(rng.choice([0, 0, 1, 17, 1000])),
        token=rng.choice([None, "FwoGZXIvYXdzEXAMPLE/token+==", "t"]),
        unsigned_payload=service in S3_SIGNING_NAMES and rng.random() < 0.2,
    )


def botocore_sign(case: Case) -> AWSRequest:
    scheme = "https" if case.unsigned_payload else "http"
    request = AWSRequest(
        method=case.method,
        url=f"{scheme}://{case.host}{case.sdk_path}",
        data=case.body,
        params=case.params,
    )
    request.headers["Host"] = case.host
    for name, value in case.headers:
        request.headers[name] = value  # HTTPHeaders appends: repeats are kept in order
    creds = BotoCredentials(ACCESS_KEY, SECRET, case.token)
    if case.service in S3_SIGNING_NAMES:
        if case.unsigned_payload:
            request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        botocore.auth.S3SigV4Auth(creds, case.service, case.region).add_auth(request)
    else:
        # SigV4Auth signs the header when present; we always send it (REFERENCE.md §3).
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(case.body).hexdigest()
        botocore.auth.SigV4Auth(creds, case.service, case.region).add_auth(request)
    return request


def our_sign(case: Case, keys: SigningKeyCache) -> SignedRequest:
    payload = UNSIGNED_PAYLOAD if case.unsigned_payload else hashlib.sha256(case.body).hexdigest()
    client_headers = [*case.noise, *case.headers, ("Host", "client-supplied.example")]
    random.Random(len(client_headers)).shuffle(client_headers)  # order among names is free
    # Repeats of one name must keep their relative order: restore it.
    ordered = iter(case.headers)
    positions = [i for i, item in enumerate(client_headers) if item in case.headers]
    for i in positions:
        client_headers[i] = next(ordered)
    request = SigningInput(
        method=case.method,
        host=case.host,
        path=case.raw_path,
        query=case.raw_query,
        headers=client_headers,
        payload_hash=payload,
        service=case.service,
        region=case.region,
    )
    creds = Credentials(ACCESS_KEY, SECRET, case.token)
    return sign(request, creds, FROZEN_EPOCH, keys)


@pytest.fixture
def frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: FROZEN)


@pytest.mark.usefixtures("frozen_botocore_clock")
def test_signatures_match_botocore_on_random_requests() -> None:
    rng = random.Random(SEED)
    keys = SigningKeyCache()
    mismatches: list[str] = []
    s3_cases = 0
    for index in range(CASES):
        case = random_case(rng)
        s3_cases += case.service in S3_SIGNING_NAMES
        theirs = botocore_sign(case)
        ours = our_sign(case, keys)
        sent = {name.lower(): value for name, value in ours.headers}
        if sent["authorization"] != theirs.headers["Authorization"]:
            mismatches.append(f"#{index}: {case!r}\nours:\n{ours.canonical_request}")
            continue
        assert sent["x-amz-date"] == theirs.headers["X-Amz-Date"]
        if case.service in S3_SIGNING_NAMES:
            assert ours.path == case.sdk_path  # the path we send is the one S3 expects
    assert not mismatches, f"{len(mismatches)} of {CASES} differ; first: {mismatches[0]}"
    assert s3_cases > CASES // 5  # both signers were exercised


@pytest.mark.usefixtures("frozen_botocore_clock")
def test_the_differential_can_fail() -> None:
    # A sanity check on the harness: a one-character change in the query must be noticed.
    case = random_case(random.Random(1))
    case.params = [("k", "a b")]
    case.raw_query = "k=a+b"  # '+' is a literal plus for us, a space in botocore's params
    theirs = botocore_sign(case)
    ours = our_sign(case, SigningKeyCache())
    sent = {name.lower(): value for name, value in ours.headers}
    assert sent["authorization"] != theirs.headers["Authorization"]
