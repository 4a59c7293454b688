"""Unsigned boto3 clients reach moto (signature checking on) through each of the three ways in.

moto verifies every SigV4 signature, so each passing call proves the proxy signed exactly the
request that arrived: path, query, headers and body.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig

from tests.e2e.conftest import MotoStack

WAYS = ("host-header", "forward-proxy", "route")
ACCOUNT_ARN = "arn:aws:iam::123456789012:user/proxy-tester"
TRICKY_KEYS = (
    "plain.txt",
    "dir/with space/file name.txt",
    "ünïcødé/ключ/鍵.bin",
    "a+b=c~d%e.txt",
    "double//slash/key",
    "trailing/",
    "q?mark&amp;#hash",
)


def _aws_host(service: str) -> str:
    return f"{service}.us-east-1.amazonaws.com"


def _host_header_hook(proxy_url: str) -> Callable[..., None]:
    """Send to the proxy but keep `Host:` naming the AWS host (curl -H 'Host: …' style)."""

    def rewrite(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        request.headers["Host"] = parts.netloc
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        request.url = proxy_url + path

    return rewrite


def client(stack: MotoStack, service: str, way: str, **config: Any) -> Any:
    """An unsigned boto3 client for `service` that reaches moto through the proxy by `way`."""
    base = {"signature_version": UNSIGNED, "retries": {"max_attempts": 1}}
    if way == "route":
        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=f"{stack.proxy.url}/via-route/{service}",
            config=BotoConfig(**base, **config),
        )
    endpoint = f"http://{_aws_host(service)}"
    if way == "forward-proxy":
        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=endpoint,
            config=BotoConfig(**base, proxies={"http": stack.proxy.url}, **config),
        )
    made = boto3.client(
        service, region_name="us-east-1", endpoint_url=endpoint, config=BotoConfig(**base, **config)
    )
    made.meta.events.register_last("before-send", _host_header_hook(stack.proxy.url))
    return made


@pytest.mark.parametrize("way", WAYS)
def test_sts_get_caller_identity_is_the_configured_user(moto_stack: MotoStack, way: str) -> None:
    answer = client(moto_stack, "sts", way).get_caller_identity()
    assert answer["Arn"] == ACCOUNT_ARN
    assert answer["Account"] == "123456789012"


@pytest.mark.parametrize("way", WAYS)
def test_ec2_run_and_describe_instances(moto_stack: MotoStack, way: str) -> None:
    ec2 = client(moto_stack, "ec2", way)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tag = f"t-{uuid.uuid4().hex[:8]}"
    run = ec2.run_instances(
        ImageId=image,
        MinCount=2,
        MaxCount=2,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "test", "Value": tag}]}],
    )
    started = {i["InstanceId"] for i in run["Instances"]}
    found = ec2.describe_instances(Filters=[{"Name": "tag:test", "Values": [tag]}])
    seen = {i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]}
    assert seen == started


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_s3_object_round_trip_with_tricky_keys(moto_stack: MotoStack, way: str, style: str) -> None:
    if way == "route" and style == "virtual":
        pytest.skip("a path-prefix route names one upstream host: virtual-host style needs DNS")
    s3 = client(moto_stack, "s3", way, s3={"addressing_style": style})
    bucket = f"bucket-{way}-{style}-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    for index, key in enumerate(TRICKY_KEYS):
        body = f"body {index} of {key}".encode() * (index + 1)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(TRICKY_KEYS)
    for key in TRICKY_KEYS:
        s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("way", WAYS)
def test_dynamodb_table_put_get(moto_stack: MotoStack, way: str) -> None:
    ddb = client(moto_stack, "dynamodb", way)
    table = f"t-{way}-{uuid.uuid4().hex[:6]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "k ü"}, "v": {"N": "42"}})
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "k ü"}})["Item"]
    assert item == {"pk": {"S": "k ü"}, "v": {"N": "42"}}


@pytest.mark.parametrize("way", WAYS)
def test_sqs_send_and_receive(moto_stack: MotoStack, way: str) -> None:
    sqs = client(moto_stack, "sqs", way)
    url = sqs.create_queue(QueueName=f"q-{way}-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="héllo & <world>")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert [m["Body"] for m in messages] == ["héllo & <world>"]


@pytest.mark.parametrize("way", ["host-header", "route"])
def test_s3_keys_with_dot_segments_are_stored_as_named(moto_stack: MotoStack, way: str) -> None:
    # S3 signs and stores the path as sent: the proxy must not resolve `..` or `.`. (The
    # forward-proxy way cannot carry them: urllib3 removes them before the proxy sees the
    # URL, as the README says.)
    s3 = client(moto_stack, "s3", way, s3={"addressing_style": "path"})
    bucket = f"dots-{way}"
    s3.create_bucket(Bucket=bucket)
    keys = ["up/../x", "./a", "a/./b/../c", "..", "tail/."]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(keys)
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
