"""The AWS SDK for JavaScript v3 on Node through the proxy to moto (signature checking on).

The SDK signs nothing (the README's no-op signer); it comes in by a path-prefix route and by
the forward-proxy form through http-proxy-agent. S3 bodies are the kinds apps send: a Buffer,
a string, a 9 MB file stream (the SDK frames it aws-chunked with a CRC32 trailer, larger than
max_buffered_body: decoded and re-signed as a signed-trailer stream) and a 20 MB lib-storage
Upload; every object is read back by the JS SDK (streamed) and by boto3, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import MotoStack, moto_routes, unsigned_client
from tests.e2e.js_support import ensure_node, run_job
from tests.fakes.checksums import checksum
from tests.fakes.threaded import serve_in_thread
from tests.fakes.verifying_s3 import VerifyingS3
from tests.servers import EXAMPLE_SECRET, ProxyProcess, credential_env, proxy_process

MB = 1000 * 1000
TRICKY_KEY = "dir/a b+c%d/é ü 東京.bin"


@pytest.fixture(scope="module")
def node() -> str:
    return ensure_node()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def read_back(moto_stack: MotoStack, bucket: str, key: str) -> bytes:
    s3 = unsigned_client("s3", moto_stack.proxy.url, s3={"addressing_style": "path"})
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@pytest.mark.parametrize("way", ["route", "agent"])
def test_s3_small_bodies_of_every_kind(
    node: str, moto_stack: MotoStack, tmp_path: Path, way: str
) -> None:
    small = random_file(tmp_path / "small.bin", 1024)
    text = "text body: café ☕ " * 20
    bucket = f"js-small-{way}"
    objects = [
        {"kind": "buffer", "path": str(small), "key": "buffer.bin"},
        {"kind": "string", "text": text, "key": "string.txt"},
        {"kind": "stream", "path": str(small), "key": TRICKY_KEY},
    ]
    results = run_job(
        node,
        {
            "service": "s3",
            "way": way,
            "proxy": moto_stack.proxy.url,
            "bucket": bucket,
            "objects": objects,
        },
    )
    expected = {
        "buffer.bin": small.read_bytes(),
        "string.txt": text.encode(),
        TRICKY_KEY: small.read_bytes(),
    }
    assert {r["key"]: r["sha256"] for r in results} == {
        k: hashlib.sha256(v).hexdigest() for k, v in expected.items()
    }
    for key, data in expected.items():
        assert read_back(moto_stack, bucket, key) == data


def test_s3_large_stream_and_multipart_upload(
    node: str, moto_stack: MotoStack, tmp_path: Path
) -> None:
    nine = random_file(tmp_path / "nine.bin", 9 * MB)
    twenty = random_file(tmp_path / "twenty.bin", 20 * MB)
    bucket = "js-large"
    objects = [
        {"kind": "stream", "path": str(nine), "key": "stream-9mb.bin"},
        {"kind": "upload", "path": str(twenty), "key": "upload 20mb+é.bin"},
    ]
    results = run_job(
        node,
        {
            "service": "s3",
            "way": "route",
            "proxy": moto_stack.proxy.url,
            "bucket": bucket,
            "objects": objects,
        },
    )
    for result, path in zip(results, (nine, twenty), strict=True):
        data = path.read_bytes()
        assert (result["length"], result["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert read_back(moto_stack, bucket, result["key"]) == data


def test_dynamodb_batch_write_near_16_mb(node: str, moto_stack: MotoStack, tmp_path: Path) -> None:
    # 25 items of 390 KB binary: about 13 MB of JSON (base64), past max_buffered_body: spooled.
    items, item_size = 25, 390 * 1000
    blob = random_file(tmp_path / "items.bin", items * item_size)
    result = run_job(
        node,
        {
            "service": "dynamodb",
            "way": "route",
            "proxy": moto_stack.proxy.url,
            "table": "js-big",
            "path": str(blob),
            "items": items,
            "itemSize": item_size,
        },
    )
    data = blob.read_bytes()
    assert result["unprocessed"] == 0
    assert result["hashes"] == {
        f"item-{i}": hashlib.sha256(data[i * item_size : (i + 1) * item_size]).hexdigest()
        for i in range(items)
    }


@pytest.mark.parametrize("way", ["route", "agent"])
def test_sqs_json_protocol_and_sts(node: str, moto_stack: MotoStack, way: str) -> None:
    message = f"hello from node via {way}: ü"
    sqs = run_job(
        node,
        {
            "service": "sqs",
            "way": way,
            "proxy": moto_stack.proxy.url,
            "queue": f"js-{way}",
            "message": message,
        },
    )
    assert sqs["bodies"] == [message]
    sts = run_job(node, {"service": "sts", "way": way, "proxy": moto_stack.proxy.url})
    assert sts["arn"] == "arn:aws:iam::123456789012:user/proxy-tester"  # the proxy's signer


@pytest.fixture(scope="module")
def verifying_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VerifyingS3, str]]:
    """A fake S3 that checks the proxy's payload hash, chunk and trailer signatures and the
    SDK's checksum (moto checks none of them), behind its own proxy."""
    tmp = tmp_path_factory.mktemp("js-verifying")
    s3 = VerifyingS3(EXAMPLE_SECRET)
    with serve_in_thread(s3.app()) as url:
        config = {
            "routes": [{"path_prefix": "/via-route/s3", "upstream": url, "service": "s3"}],
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp, config, env=credential_env(tmp)) as proxy:
            yield s3, proxy.url


@pytest.mark.parametrize(
    ("size", "payload"),
    [(1024, "sha256"), (9 * MB, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")],
    ids=["1KB-sent-whole", "9MB-streamed"],
)
def test_stream_body_checksum_reaches_s3_and_is_verified(
    node: str, verifying_s3: tuple[VerifyingS3, str], tmp_path: Path, size: int, payload: str
) -> None:
    s3, proxy_url = verifying_s3
    path = random_file(tmp_path / "body.bin", size)
    key = f"checked-{size}.bin"
    results = run_job(
        node,
        {
            "service": "s3",
            "way": "route",
            "proxy": proxy_url,
            "bucket": "checked",
            "objects": [{"kind": "stream", "path": str(path), "key": key}],
        },
    )
    data = path.read_bytes()
    assert results[0]["sha256"] == hashlib.sha256(data).hexdigest()
    stored = s3.objects[f"/checked/{key}"]
    assert stored.data == data
    assert stored.content_encoding is None
    # The SDK's own CRC32, computed in Node, checked by "S3" against the stored bytes.
    assert stored.checksum == ("crc32", checksum("crc32", data))
    if payload == "sha256":
        assert stored.payload_mode == hashlib.sha256(data).hexdigest()
    else:
        assert stored.payload_mode == payload


@pytest.fixture(scope="module")
def refusing_proxy(
    moto_stack: MotoStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """In front of moto: S3 uploads over 256 KiB stream, and each bucket takes one PutObject
    per 1000 s (`enforce`: the next is refused at once, its body unread)."""
    tmp = tmp_path_factory.mktemp("js-refusing")
    env = credential_env(
        tmp,
        {"AWS_ACCESS_KEY_ID": moto_stack.key_id, "AWS_SECRET_ACCESS_KEY": moto_stack.secret},
    )
    config = {
        "routes": moto_routes(moto_stack.moto.url),
        "max_buffered_body": 256 * 1024,
        "limit_policy": {"mode": "enforce"},
        "limits": [
            {
                "name": "one-put-per-bucket",
                "service": "s3",
                "operations": ["PutObject"],
                "per": "bucket",
                "rate": 0.001,
                "burst": 1,
            }
        ],
        "retry": {"max_attempts": 1},
    }
    with proxy_process(tmp, config, env=env) as proxy:
        yield proxy


@pytest.mark.parametrize("way", ["route", "agent"])
def test_refused_streamed_upload_reaches_the_sdk_as_its_error(
    node: str, moto_stack: MotoStack, refusing_proxy: ProxyProcess, tmp_path: Path, way: str
) -> None:
    # The SDK is still writing the body when the refusal comes: closing with those bytes
    # unread would reset the connection, and the SDK would see EPIPE or ECONNRESET (its
    # TimeoutError) instead of SlowDown. Ten tries: before the fix most of them failed so.
    path = random_file(tmp_path / "body.bin", 300 * 1000)
    bucket = f"js-refused-{way}"
    seen = run_job(
        node,
        {
            "service": "s3-refused",
            "way": way,
            "proxy": refusing_proxy.url,
            "bucket": bucket,
            "key": "streamed.bin",
            "path": str(path),
            "tries": 11,
        },
    )
    refused = {"name": "SlowDown", "status": 503, "reason": "rate-limited"}
    assert seen == ["stored"] + [refused] * 10
    assert read_back(moto_stack, bucket, "streamed.bin") == path.read_bytes()


def test_refused_host_is_an_error_the_sdk_names(node: str, moto_stack: MotoStack) -> None:
    seen = run_job(
        node,
        {
            "service": "refused-host",
            "way": "agent",
            "proxy": moto_stack.proxy.url,
            "host": "vpce-0123-abcd.{service}.us-east-1.vpce.amazonaws.com",
        },
    )
    refused = {"name": "HostNotAllowed", "status": 403, "reason": "host-not-allowed"}
    assert seen == {service: refused for service in ("s3", "dynamodb", "sqs", "sts")}
