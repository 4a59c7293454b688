"""The AWS CLI through HTTP_PROXY, and moto's own auth errors passed through unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import urllib3
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.e2e.conftest import MotoStack, moto_routes, unsigned_client
from tests.servers import credential_env, proxy_process

AWS_CLI = str(Path(sys.executable).parent / "aws")


def _cli(stack: MotoStack, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "HTTP_PROXY": stack.proxy.url,
            "NO_PROXY": "",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    return subprocess.run(
        [AWS_CLI, "--no-sign-request", "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_aws_cli_sts_through_http_proxy(moto_stack: MotoStack, tmp_path: Path) -> None:
    done = _cli(
        moto_stack,
        tmp_path,
        "--endpoint-url",
        "http://sts.us-east-1.amazonaws.com",
        "sts",
        "get-caller-identity",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Arn"] == "arn:aws:iam::123456789012:user/proxy-tester"


def _ok(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout) if done.stdout.strip() else {}
    return answer


def _endpoint(service: str) -> list[str]:
    return ["--endpoint-url", f"http://{service}.us-east-1.amazonaws.com"]


def test_aws_cli_ec2_through_http_proxy(moto_stack: MotoStack, tmp_path: Path) -> None:
    def ec2(*args: str) -> dict[str, object]:
        return _ok(_cli(moto_stack, tmp_path, *_endpoint("ec2"), "ec2", *args))

    images = ec2("describe-images", "--owners", "amazon")["Images"]
    assert isinstance(images, list)
    run = ec2("run-instances", "--image-id", images[0]["ImageId"], "--count", "1")
    instances = run["Instances"]
    assert isinstance(instances, list)
    started = instances[0]["InstanceId"]
    found = ec2("describe-instances", "--instance-ids", started)["Reservations"]
    assert isinstance(found, list)
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [started]


def test_aws_cli_s3_object_round_trip(moto_stack: MotoStack, tmp_path: Path) -> None:
    def s3api(*args: str) -> dict[str, object]:
        return _ok(_cli(moto_stack, tmp_path, *_endpoint("s3"), "s3api", *args))

    key = "cli dir/ünï+k=v~%.txt"
    body = tmp_path / "body.bin"
    body.write_bytes(b"payload through the aws cli\n" * 100)
    s3api("create-bucket", "--bucket", "cli-bucket")
    s3api("put-object", "--bucket", "cli-bucket", "--key", key, "--body", str(body))
    listed = s3api("list-objects-v2", "--bucket", "cli-bucket")["Contents"]
    assert isinstance(listed, list)
    assert [o["Key"] for o in listed] == [key]
    fetched = tmp_path / "fetched.bin"
    s3api("get-object", "--bucket", "cli-bucket", "--key", key, str(fetched))
    assert fetched.read_bytes() == body.read_bytes()
    s3api("delete-object", "--bucket", "cli-bucket", "--key", key)
    assert "Contents" not in s3api("list-objects-v2", "--bucket", "cli-bucket")


def test_aws_cli_dynamodb_and_sqs(moto_stack: MotoStack, tmp_path: Path) -> None:
    def call(service: str, *args: str) -> dict[str, object]:
        return _ok(_cli(moto_stack, tmp_path, *_endpoint(service), service, *args))

    call(
        "dynamodb",
        "create-table",
        "--table-name",
        "cli-table",
        "--attribute-definitions",
        "AttributeName=pk,AttributeType=S",
        "--key-schema",
        "AttributeName=pk,KeyType=HASH",
        "--billing-mode",
        "PAY_PER_REQUEST",
    )
    call("dynamodb", "put-item", "--table-name", "cli-table", "--item", '{"pk": {"S": "a"}}')
    item = call("dynamodb", "get-item", "--table-name", "cli-table", "--key", '{"pk": {"S": "a"}}')
    assert item["Item"] == {"pk": {"S": "a"}}
    url = call("sqs", "create-queue", "--queue-name", "cli-queue")["QueueUrl"]
    assert isinstance(url, str)
    call("sqs", "send-message", "--queue-url", url, "--message-body", "hello & <cli>")
    received = call("sqs", "receive-message", "--queue-url", url)["Messages"]
    assert isinstance(received, list)
    assert [m["Body"] for m in received] == ["hello & <cli>"]


@pytest.fixture(scope="module")
def wrong_secret_proxy(moto_stack: MotoStack, tmp_path_factory: pytest.TempPathFactory) -> object:
    tmp = tmp_path_factory.mktemp("wrong-secret")
    env = credential_env(
        tmp,
        {
            "AWS_ACCESS_KEY_ID": moto_stack.key_id,
            "AWS_SECRET_ACCESS_KEY": "not-the-secret-" + "x" * 25,
        },
    )
    config = {"routes": moto_routes(moto_stack.moto.url), "retry": {"max_attempts": 1}}
    with proxy_process(tmp, config, env=env) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("service", "status", "code"),
    [("sts", 403, "SignatureDoesNotMatch"), ("ec2", 401, "AuthFailure")],
)
def test_wrong_secret_reaches_client_as_motos_own_error(
    wrong_secret_proxy: object, service: str, status: int, code: str
) -> None:
    proxy_url = wrong_secret_proxy.url  # type: ignore[attr-defined]
    made = unsigned_client(service, proxy_url)
    call = made.get_caller_identity if service == "sts" else made.describe_instances
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Error"]["Code"] == code
    # moto's answer, not one the proxy made up.
    assert "x-throttle-proxy-error" not in error["ResponseMetadata"]["HTTPHeaders"]


def test_raw_http_client_with_host_header(moto_stack: MotoStack) -> None:
    """A legacy app with no SDK at all: curl -H 'Host: sts…' localhost:8080/?Action=…"""
    pool = urllib3.PoolManager()
    answer = pool.request(
        "GET",
        f"{moto_stack.proxy.url}/?Action=GetCallerIdentity&Version=2011-06-15",
        headers={"Host": "sts.us-east-1.amazonaws.com"},
        timeout=10,
    )
    assert answer.status == 200, answer.data[:300]
    assert b"arn:aws:iam::123456789012:user/proxy-tester" in answer.data
    assert answer.headers["x-throttle-proxy-attempts"] == "1"


# A call per protocol: S3 (REST-XML), STS, IAM and SQS-era query, EC2, DynamoDB (JSON), Lambda
# (REST-JSON); SQS speaks JSON in current botocore.
REFUSED_HOST_CALLS = {
    "s3": lambda c: c.list_objects_v2(Bucket="b"),
    "sts": lambda c: c.get_caller_identity(),
    "iam": lambda c: c.list_users(),
    "ec2": lambda c: c.describe_vpcs(),
    "sqs": lambda c: c.list_queues(),
    "dynamodb": lambda c: c.list_tables(),
    "lambda": lambda c: c.list_functions(),
}


@pytest.mark.parametrize("service", sorted(REFUSED_HOST_CALLS))
def test_refused_host_is_an_error_botocore_reads(moto_stack: MotoStack, service: str) -> None:
    # A VPC endpoint name (the proxy signs for none by a wildcard): refused before routing,
    # so no service names the format; the SDK's request says which one it reads.
    made = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=f"http://vpce-0123-abcd.{service}.us-east-1.vpce.amazonaws.com",
        config=BotoConfig(
            signature_version=UNSIGNED,
            retries={"total_max_attempts": 1},
            proxies={"http": moto_stack.proxy.url},
            s3={"addressing_style": "path"},
        ),
    )
    with pytest.raises(ClientError) as caught:
        REFUSED_HOST_CALLS[service](made)
    error = caught.value.response
    assert error["Error"]["Code"] == "HostNotAllowed"
    assert "vpce-0123-abcd" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["ResponseMetadata"]["HTTPHeaders"]["x-throttle-proxy-error"] == "host-not-allowed"
