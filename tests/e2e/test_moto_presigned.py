"""A presigned PUT and GET through the proxy to moto: what was uploaded is what is read back.

moto does not check presigned signatures (with signature checking on it answers 500 to every
presigned URL), so it runs without checking here; that the signature survives the proxy byte
for byte is tests/integration/test_presigned_proxy.py's job. This test shows the other half:
a real S3 implementation takes the forwarded requests and stores the bytes unchanged.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig

from tests.servers import (
    EXAMPLE_KEY_ID,
    EXAMPLE_SECRET,
    ProxyProcess,
    credential_env,
    moto_server,
    proxy_process,
)

BUCKET = "presigned-e2e"
KEY = "reports/2026 q4+final.bin"
BODY = bytes(range(256)) * 512  # 128 KiB, every byte value


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    tmp: Path = tmp_path_factory.mktemp("presigned")
    with moto_server() as moto:
        config = {
            "routes": [{"host": "*.amazonaws.com", "upstream": moto.url}],
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp, config, env=credential_env(tmp)) as handle:
            yield handle


def _s3(**config: Any) -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://s3.us-east-1.amazonaws.com",
        aws_access_key_id=EXAMPLE_KEY_ID,
        aws_secret_access_key=EXAMPLE_SECRET,
        config=BotoConfig(s3={"addressing_style": "path"}, **config),
    )


def _through_proxy(proxy: ProxyProcess, url: str, method: str, body: bytes | None) -> bytes:
    """Plain HTTP through the proxy in forward-proxy form, as an app with HTTP_PROXY would."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    # Not urllib's default form type for a body: moto (Flask) would wait to parse a form.
    headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with opener.open(request, timeout=10) as answer:
        assert answer.headers["x-throttle-proxy-attempts"] == "1"
        data: bytes = answer.read()
        return data


def test_presigned_put_then_get_round_trip_through_the_proxy(proxy: ProxyProcess) -> None:
    # Setting up goes through the proxy too, signed by it (the client signs nothing).
    signed_by_proxy = _s3(signature_version=UNSIGNED, proxies={"http": proxy.url})
    signed_by_proxy.create_bucket(Bucket=BUCKET)
    presigner = _s3(signature_version="s3v4")
    put_url = presigner.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=300
    )
    _through_proxy(proxy, put_url, "PUT", BODY)
    get_url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=300
    )
    assert hashlib.sha256(_through_proxy(proxy, get_url, "GET", None)).digest() == (
        hashlib.sha256(BODY).digest()
    )
    stored = signed_by_proxy.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert stored == BODY
