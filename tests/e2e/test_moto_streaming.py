"""Bodies over max_buffered_body: S3 uploads stream with aws-chunked signatures; others are
spooled to disk up to max_body, and get 413 in their service's format past it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest
import urllib3

from tests.e2e.conftest import MotoStack, moto_routes, unsigned_client
from tests.servers import ProxyProcess, credential_env, proxy_process

SMALL_BUFFER = 256 * 1024
MAX_BODY = 2 * SMALL_BUFFER


@pytest.fixture(scope="module")
def streaming_proxy(
    moto_stack: MotoStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("streaming")
    env = credential_env(
        tmp,
        {"AWS_ACCESS_KEY_ID": moto_stack.key_id, "AWS_SECRET_ACCESS_KEY": moto_stack.secret},
    )
    config = {
        "routes": moto_routes(moto_stack.moto.url),
        "max_buffered_body": SMALL_BUFFER,
        "max_body": MAX_BODY,
        "spool_dir": str(tmp),
        "retry": {"max_attempts": 1},
    }
    with proxy_process(tmp, config, env=env) as proxy:
        yield proxy


def _s3(proxy: ProxyProcess) -> object:
    return unsigned_client("s3", proxy.url, s3={"addressing_style": "path"})


@pytest.mark.parametrize("size", [SMALL_BUFFER + 1, 3 * 1024 * 1024 + 12345])
def test_large_s3_put_streams_with_chunked_signing(
    streaming_proxy: ProxyProcess, size: int
) -> None:
    s3 = _s3(streaming_proxy)
    bucket = f"stream-{size}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="big/ob ject", Body=body)  # type: ignore[attr-defined]
    fetched = s3.get_object(Bucket=bucket, Key="big/ob ject")["Body"].read()  # type: ignore[attr-defined]
    assert len(fetched) == size
    assert hashlib.sha256(fetched).digest() == hashlib.sha256(body).digest()


def test_non_s3_body_over_max_body_is_413_in_query_xml(streaming_proxy: ProxyProcess) -> None:
    pool = urllib3.PoolManager()
    answer = pool.request(
        "POST",
        f"{streaming_proxy.url}/",
        body=b"Action=SendMessage&MessageBody=" + b"x" * (MAX_BODY + 10),
        headers={
            "Host": "sqs.us-east-1.amazonaws.com",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=10,
    )
    assert answer.status == 413
    assert answer.headers["x-throttle-proxy-error"] == "body-too-large"
    assert b"<Code>RequestEntityTooLarge</Code>" in answer.data
    assert b"max_body" in answer.data


def test_dynamodb_item_over_max_buffered_body_is_spooled_signed_and_stored(
    streaming_proxy: ProxyProcess,
) -> None:
    ddb = unsigned_client("dynamodb", streaming_proxy.url)
    ddb.create_table(
        TableName="spooled",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    blob = os.urandom(300 * 1024)  # over max_buffered_body: spooled, hashed, signed
    ddb.put_item(TableName="spooled", Item={"k": {"S": "big"}, "v": {"B": blob}})
    item = ddb.get_item(TableName="spooled", Key={"k": {"S": "big"}})["Item"]
    assert item["v"]["B"] == blob
    spool_dir = streaming_proxy.config_path.parent
    assert not list(spool_dir.glob("throttle-proxy-body-*"))  # removed once answered


def test_dynamodb_body_over_max_body_is_413_botocore_reads(streaming_proxy: ProxyProcess) -> None:
    ddb = unsigned_client("dynamodb", streaming_proxy.url)
    items = [
        {"PutRequest": {"Item": {"k": {"S": str(i)}, "v": {"B": os.urandom(200 * 1024)}}}}
        for i in range(4)
    ]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ddb.batch_write_item(RequestItems={"spooled": items})
    error = caught.value.response
    assert error["Error"]["Code"] == "RequestEntityTooLarge"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["ResponseMetadata"]["HTTPHeaders"]["x-throttle-proxy-error"] == "body-too-large"


def test_proxy_log_has_no_secret(streaming_proxy: ProxyProcess, moto_stack: MotoStack) -> None:
    assert moto_stack.secret not in Path(streaming_proxy.log_path).read_text()
