"""End to end: the proxy signs with each kind of chain credentials, moto checks the signature.

An unsigned GetCallerIdentity goes to the proxy; moto (auth on) answers with the ARN of whoever
signed it: the assumed role for a role_arn + source_profile profile, IRSA variables (through a
stand-in STS handing out moto-issued role keys), a container endpoint and IMDS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import boto3
import pytest

from proxy.config import Config, Route
from proxy.server import ProxyServer
from tests.fakes import serve
from tests.fakes.container import CREDENTIALS_PATH, FakeContainerEndpoint
from tests.fakes.imds import FakeImds
from tests.integration.test_credentials_sts import (
    ROLE_ARN,
    MotoAccount,
    StandInSts,
    clean_env,
    moto,
)

__all__ = ["moto"]
STS_HOST = "sts.us-east-1.amazonaws.com"
FORM = "Action=GetCallerIdentity&Version=2011-06-15"


def assumed(account: MotoAccount, session_name: str) -> dict[str, str]:
    """Role keys issued by moto itself (so they authenticate), via boto3 with the user's keys."""
    sts = boto3.client(
        "sts",
        endpoint_url=account.server.url,
        region_name="us-east-1",
        aws_access_key_id=account.key_id,
        aws_secret_access_key=account.secret,
    )
    answer = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName=session_name)["Credentials"]
    return {
        "AccessKeyId": answer["AccessKeyId"],
        "SecretAccessKey": answer["SecretAccessKey"],
        "SessionToken": answer["SessionToken"],
        "Expiration": answer["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def caller_arn(moto_url: str, env: dict[str, str], profile: str | None = None) -> str:
    config = Config(
        listen=("127.0.0.1", 0),
        admin_listen=("127.0.0.1", 0),
        routes=(Route(upstream=moto_url, host=STS_HOST),),
    )
    server = ProxyServer(config, env=env, profile=profile)
    addresses = await server.start()
    try:
        host, port = addresses.proxy
        async with (
            aiohttp.ClientSession() as client,
            client.post(
                f"http://{host}:{port}/",
                data=FORM,
                headers={
                    "Host": STS_HOST,
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                },
            ) as answer,
        ):
            text = await answer.text()
            assert answer.status == 200, text
    finally:
        await server.close()
    start = text.index("<Arn>") + len("<Arn>")
    return text[start : text.index("</Arn>")]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def test_profile_with_source_profile(moto: MotoAccount, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text(
        f"[base]\naws_access_key_id = {moto.key_id}\naws_secret_access_key = {moto.secret}\n"
    )
    (tmp_path / "config").write_text(
        f"[profile app]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"
        "role_session_name = via-profile\n"
    )
    env = clean_env(tmp_path, AWS_ENDPOINT_URL_STS=moto.server.url)
    arn = await caller_arn(moto.server.url, env, profile="app")
    assert arn == "arn:aws:sts::123456789012:assumed-role/app-role/via-profile"


async def test_irsa_variables(moto: MotoAccount, tmp_path: Path, stack: AsyncExitStack) -> None:
    keys = assumed(moto, "via-irsa")
    standin = StandInSts(issued=keys)
    url = await stack.enter_async_context(serve(standin.app()))
    (tmp_path / "token").write_text("jwt")
    env = clean_env(
        tmp_path,
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "token"),
        AWS_ENDPOINT_URL_STS=url,
    )
    arn = await caller_arn(moto.server.url, env)
    assert arn == "arn:aws:sts::123456789012:assumed-role/app-role/via-irsa"
    assert standin.calls[0]["Action"] == "AssumeRoleWithWebIdentity"


async def test_container_credentials(
    moto: MotoAccount, tmp_path: Path, stack: AsyncExitStack
) -> None:
    keys = assumed(moto, "via-container")
    fake = FakeContainerEndpoint(
        expected_authorization="pod-token",
        access_key_id=keys["AccessKeyId"],
        secret_access_key=keys["SecretAccessKey"],
        session_token=keys["SessionToken"],
        expiration=keys["Expiration"],
    )
    url = await stack.enter_async_context(serve(fake.app()))
    (tmp_path / "auth").write_text("pod-token")
    env = clean_env(
        tmp_path,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=url + CREDENTIALS_PATH,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(tmp_path / "auth"),
    )
    arn = await caller_arn(moto.server.url, env)
    assert arn == "arn:aws:sts::123456789012:assumed-role/app-role/via-container"
    assert fake.authorizations[0] == "pod-token"


async def test_instance_metadata(moto: MotoAccount, tmp_path: Path, stack: AsyncExitStack) -> None:
    keys = assumed(moto, "via-imds")
    fake = FakeImds(
        access_key_id=keys["AccessKeyId"],
        secret_access_key=keys["SecretAccessKey"],
        session_token=keys["SessionToken"],
        expiration=keys["Expiration"],
    )
    url = await stack.enter_async_context(serve(fake.app()))
    env = clean_env(tmp_path)
    del env["AWS_EC2_METADATA_DISABLED"]
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = url
    arn = await caller_arn(moto.server.url, env)
    assert arn == "arn:aws:sts::123456789012:assumed-role/app-role/via-imds"
    assert fake.requests["PUT /latest/api/token"] == 1


async def test_no_credentials_answers_503_and_readyz_says_why(tmp_path: Path) -> None:
    config = Config(listen=("127.0.0.1", 0), admin_listen=("127.0.0.1", 0))
    server = ProxyServer(config, env=clean_env(tmp_path))
    addresses = await server.start()
    try:
        proxy_host, proxy_port = addresses.proxy
        admin_host, admin_port = addresses.admin
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://{admin_host}:{admin_port}/healthz") as health:
                assert health.status == 200
            async with client.post(
                f"http://{proxy_host}:{proxy_port}/",
                data=FORM,
                headers={"Host": STS_HOST, "Content-Type": "application/x-www-form-urlencoded"},
            ) as answer:
                body = await answer.text()
                assert answer.status == 503
                assert answer.headers["x-throttle-proxy-error"] == "no-credentials"
            async with client.get(f"http://{admin_host}:{admin_port}/readyz") as ready:
                readyz = await ready.text()
                assert ready.status == 503
    finally:
        await server.close()
    for text in (body, readyz):
        assert "env: AWS_ACCESS_KEY_ID not set" in text
        assert "imds: disabled by AWS_EC2_METADATA_DISABLED" in text
