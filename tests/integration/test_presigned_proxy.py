"""Presigned URLs through a real proxy process: they reach the upstream byte for byte, with
none of the proxy's credentials, and their signature still verifies against what arrived."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.fakes.aws_upstream import FakeAws, Seen
from tests.polling import eventually
from tests.servers import (
    EXAMPLE_KEY_ID,
    EXAMPLE_SECRET,
    ProxyProcess,
    credential_env,
    proxy_process,
)

SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN" + "P" * 40
BUCKET = "presign-bucket"
KEY = "dir/a b+c~ü.txt"
BODY = b"uploaded through a presigned URL\x00\xff" * 100
CREDENTIAL_HEADERS = ("authorization", "x-amz-security-token", "x-amz-date", "x-amz-content-sha256")


@pytest.fixture
def proxy(tmp_path: Path, fake_aws: FakeAws) -> Iterator[ProxyProcess]:
    env = credential_env(tmp_path, {"AWS_SESSION_TOKEN": SESSION_TOKEN})
    config = {
        "log_level": "debug",
        "routes": [{"host": "*.amazonaws.com", "upstream": fake_aws.url}],
        "retry": {"max_attempts": 1},
    }
    with proxy_process(tmp_path, config, env=env) as handle:
        yield handle


def _presigner(style: str, signature_version: str = "s3v4") -> object:
    return boto3.client(
        "s3",
        region_name="us-west-2",
        endpoint_url="http://s3.us-west-2.amazonaws.com",
        aws_access_key_id=EXAMPLE_KEY_ID,
        aws_secret_access_key=EXAMPLE_SECRET,
        config=BotoConfig(signature_version=signature_version, s3={"addressing_style": style}),
    )


def _presign(method: str, style: str, signature_version: str = "s3v4") -> str:
    client = _presigner(style, signature_version)
    operation = {"GET": "get_object", "PUT": "put_object"}[method]
    url: str = client.generate_presigned_url(  # type: ignore[attr-defined]
        operation, Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=600
    )
    return url


async def _send(port: int, head: str, body: bytes = b"") -> int:
    """One request written exactly as given (no client library re-encoding the URL)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        match = re.match(rb"HTTP/1\.1 (\d{3})", status_line)
        assert match, status_line
        return int(match.group(1))
    finally:
        writer.close()


def _request_head(way: str, method: str, url: str, length: int, extra: str = "") -> str:
    parts = urlsplit(url)
    origin_form = f"{parts.path}?{parts.query}"
    line = url if way == "forward-proxy" else origin_form
    return (
        f"{method} {line} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {length}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _sigv4_verifies(seen: Seen) -> bool:
    """SigV4 query auth recomputed from what arrived (AWS's algorithm, written out here)."""
    pairs = [pair.partition("=") for pair in seen.query.split("&")]
    params = [(unquote(k), unquote(v)) for k, _, v in pairs]
    given = dict(params)
    encoded = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params if k != "X-Amz-Signature"
    )
    canonical = "\n".join(
        [
            seen.method,
            seen.path,
            "&".join(f"{k}={v}" for k, v in encoded),
            f"host:{seen.headers['host']}\n",
            given["X-Amz-SignedHeaders"],
            "UNSIGNED-PAYLOAD",
        ]
    )
    _, date, region, service, _ = given["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            given["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + EXAMPLE_SECRET).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() == given["X-Amz-Signature"]


def _assert_untouched(seen: Seen, url: str) -> None:
    parts = urlsplit(url)
    assert (seen.path, seen.query) == (parts.path, parts.query)  # byte for byte
    assert seen.headers["host"] == parts.netloc
    for name in CREDENTIAL_HEADERS:
        assert name not in seen.headers, name


@pytest.mark.parametrize("way", ["forward-proxy", "host-header"])
@pytest.mark.parametrize("style", ["path", "virtual"])
async def test_presigned_get_and_put_arrive_unchanged_and_still_verify(
    proxy: ProxyProcess, fake_aws: FakeAws, way: str, style: str
) -> None:
    put_url = _presign("PUT", style)
    assert await _send(proxy.port, _request_head(way, "PUT", put_url, len(BODY)), BODY) == 200
    put = fake_aws.seen[-1]
    _assert_untouched(put, put_url)
    assert (put.method, put.body_length) == ("PUT", len(BODY))
    assert put.body_sha256 == hashlib.sha256(BODY).hexdigest()
    assert _sigv4_verifies(put)

    get_url = _presign("GET", style)
    # A client's own Authorization beside its presign is dropped: one auth mechanism only.
    client_auth = "Authorization: AWS4-HMAC-SHA256 Credential=client-own/x, Signature=00\r\n"
    assert await _send(proxy.port, _request_head(way, "GET", get_url, 0, client_auth)) == 200
    get = fake_aws.seen[-1]
    _assert_untouched(get, get_url)
    assert _sigv4_verifies(get)


async def test_sigv2_presigned_get_arrives_unchanged(
    proxy: ProxyProcess, fake_aws: FakeAws
) -> None:
    url = _presign("GET", "path", signature_version="s3")
    assert "AWSAccessKeyId=" in url
    assert "Signature=" in url
    assert await _send(proxy.port, _request_head("forward-proxy", "GET", url, 0)) == 200
    seen = fake_aws.seen[-1]
    _assert_untouched(seen, url)
    given = {
        unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in seen.query.split("&"))
    }
    to_sign = f"GET\n\n\n{given['Expires']}\n{seen.path}"
    digest = hmac.new(EXAMPLE_SECRET.encode(), to_sign.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == given["Signature"]


async def test_auth_parameters_of_an_unsigned_request_are_replaced_by_our_signature(
    proxy: ProxyProcess, fake_aws: FakeAws
) -> None:
    query = (
        "list-type=2&X-Amz-Security-Token=client-token"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20150830%2Fus-east-1%2Fs3%2Faws4_request"
    )
    head = (
        f"GET /{BUCKET}?{query} HTTP/1.1\r\nHost: s3.us-west-2.amazonaws.com\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert await _send(proxy.port, head) == 200
    seen = fake_aws.seen[-1]
    assert seen.query == "list-type=2"
    assert seen.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={EXAMPLE_KEY_ID}/"
    )
    assert seen.headers["x-amz-security-token"] == SESSION_TOKEN


async def test_client_auth_never_reaches_the_debug_log(
    proxy: ProxyProcess, fake_aws: FakeAws
) -> None:
    url = _presign("GET", "virtual")
    given = {
        k: unquote(v) for k, _, v in (p.partition("=") for p in urlsplit(url).query.split("&"))
    }
    secrets = [
        given["X-Amz-Signature"],
        "AKIDEXAMPLE%2F",
        SESSION_TOKEN,
        "cookie-secret-value",
        "cHJveHktc2VjcmV0",
        "client-own-signature",
        "client-query-token",
        "v2-client-signature",
    ]
    extra = (
        "Cookie: session=cookie-secret-value\r\n"
        "Proxy-Authorization: Basic cHJveHktc2VjcmV0\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=x/y, Signature=client-own-signature\r\n"
    )
    assert await _send(proxy.port, _request_head("forward-proxy", "GET", url, 0, extra)) == 200
    unsigned = (
        f"GET /{BUCKET}?list-type=2&X-Amz-Security-Token=client-query-token"
        "&Signature=v2-client-signature HTTP/1.1\r\nHost: s3.us-west-2.amazonaws.com\r\n"
        f"Content-Length: 0\r\nConnection: close\r\n{extra}\r\n"
    )
    assert await _send(proxy.port, unsigned) == 200
    assert await eventually(lambda: proxy.log_text().count('"event": "request"') >= 2, 5)
    log = proxy.log_text()
    assert log.count('"event": "upstream-attempt"') == 2  # debug lines were written
    for secret in secrets:
        assert secret not in log, secret
