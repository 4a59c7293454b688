"""The AWS CLI through HTTP_PROXY, and moto's own auth errors passed through unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import urllib3
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


def test_aws_cli_ec2_through_http_proxy(moto_stack: MotoStack, tmp_path: Path) -> None:
    done = _cli(
        moto_stack,
        tmp_path,
        "--endpoint-url",
        "http://ec2.us-east-1.amazonaws.com",
        "ec2",
        "describe-instances",
    )
    assert done.returncode == 0, done.stderr
    assert "Reservations" in json.loads(done.stdout)


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
