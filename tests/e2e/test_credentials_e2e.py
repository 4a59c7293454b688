"""Each kind of chain credentials, end to end: a real proxy process signs, moto checks.

An unsigned boto3 GetCallerIdentity goes through `python -m proxy run` (forward-proxy form) to
moto with signature checking on; moto answers with the ARN of whoever signed. The credentials
come from a role_arn + source_profile profile, IRSA variables (a stand-in STS hands out keys
moto itself issued), a container endpoint and IMDSv2. The fakes run on this test's event loop,
so everything that blocks (starting the proxy, boto3 calls) runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import boto3
import pytest
from aiohttp import web
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig

from tests.fakes import serve
from tests.fakes.container import CREDENTIALS_PATH, FakeContainerEndpoint
from tests.fakes.imds import FakeImds
from tests.servers import (
    EXAMPLE_KEY_ID,
    EXAMPLE_SECRET,
    MotoServer,
    ProxyProcess,
    credential_env,
    moto_server,
    proxy_process,
)

ACCOUNT = "123456789012"
ROLE_NAME = "e2e-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
ADMIN_USER = "proxy-tester"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:user/{ADMIN_USER}"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def assumed_role_arn(session_name: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{session_name}"


@dataclass(frozen=True)
class MotoAccount:
    """moto with an admin user and ROLE_NAME; signature checking is on."""

    server: MotoServer
    key_id: str
    secret: str


@pytest.fixture(scope="module")
def moto_account() -> Iterator[MotoAccount]:
    with moto_server() as server:
        key_id, secret = server.create_admin_user(ADMIN_USER)
        iam = boto3.client(
            "iam",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=EXAMPLE_KEY_ID,
            aws_secret_access_key=EXAMPLE_SECRET,
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    # AWS reads `:root` as "the account"; moto matches principals literally,
                    # so the admin user is named as well.
                    "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:root", ADMIN_ARN]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
        allow = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
        }
        iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="who", PolicyDocument=json.dumps(allow))
        server.enable_auth()
        yield MotoAccount(server, key_id, secret)


def issue_role_keys(account: MotoAccount, session_name: str) -> dict[str, str]:
    """Role keys moto itself issued (signed AssumeRole with the admin keys): moto accepts them."""
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
        "Expiration": answer["Expiration"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class RoleIssuingSts:
    """A stand-in STS for the calls moto cannot serve with auth on.

    AssumeRoleWithWebIdentity (unsigned) and GetSessionToken (moto's session keys do not
    authenticate) are answered with keys moto issues for ROLE_ARN, so the proxy's later
    signatures check out. Every call's form and Authorization header is recorded.
    """

    account: MotoAccount
    session_token_session: str = "after-mfa"  # RoleSessionName behind GetSessionToken answers
    calls: list[dict[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl((await request.read()).decode()))
        self.calls.append(params)
        self.authorizations.append(request.headers.get("Authorization"))
        action = params.get("Action", "")
        if action == "AssumeRoleWithWebIdentity":
            session_name = params["RoleSessionName"]
        elif action == "GetSessionToken":
            session_name = self.session_token_session
        else:
            return web.Response(status=400, text=f"stand-in STS does not serve {action!r}")
        keys = await asyncio.to_thread(issue_role_keys, self.account, session_name)
        inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in keys.items())
        body = (
            f'<{action}Response xmlns="{STS_NS}"><{action}Result>'
            f"<Credentials>{inner}</Credentials></{action}Result></{action}Response>"
        )
        return web.Response(text=body, content_type="text/xml")


def chain_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean start-up env with no AWS keys at all: only `extra` can supply credentials."""
    env = credential_env(tmp, extra)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if variable not in extra:
            env.pop(variable)
    return env


def proxy_config(upstream: str) -> dict[str, object]:
    """Every AWS host goes to `upstream`; one attempt, so a bad signature is not retried."""
    return {
        "region": "us-east-1",
        "routes": [{"host": "*.amazonaws.com", "upstream": upstream}],
        "retry": {"max_attempts": 1},
    }


class E2eStack:
    """Fakes served on this event loop and proxy processes started off it, all closed at the end.

    The proxy is started in a thread: the fakes it calls while starting must keep answering.
    """

    def __init__(self, exits: contextlib.AsyncExitStack) -> None:
        self._exits = exits

    async def serve(self, app: web.Application) -> str:
        """Serve a fake until the test ends; returns its base URL."""
        return await self._exits.enter_async_context(serve(app))

    async def start_proxy(
        self,
        tmp: Path,
        config: Mapping[str, object],
        env: Mapping[str, str],
        args: tuple[str, ...] = (),
    ) -> ProxyProcess:
        """`python -m proxy run` with `env`, listening; stopped (off the loop) at the end."""
        running = proxy_process(tmp, config, env=env, args=args)
        proxy = await asyncio.to_thread(running.__enter__)
        self._exits.push_async_callback(asyncio.to_thread, running.__exit__, None, None, None)
        return proxy


@pytest.fixture
async def stack() -> AsyncIterator[E2eStack]:
    async with contextlib.AsyncExitStack() as exits:
        yield E2eStack(exits)


def _caller_arn(proxy_url: str) -> str:
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url="http://sts.us-east-1.amazonaws.com",
        config=BotoConfig(
            signature_version=UNSIGNED,
            retries={"max_attempts": 1},
            proxies={"http": proxy_url},
        ),
    )
    arn: str = sts.get_caller_identity()["Arn"]
    return arn


async def caller_arn(proxy: ProxyProcess) -> str:
    """An app's unsigned GetCallerIdentity through the proxy; moto's answer names the signer."""
    return await asyncio.to_thread(_caller_arn, proxy.url)


def _admin_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def admin_get(proxy: ProxyProcess, path: str) -> tuple[int, str]:
    """GET an admin endpoint (/healthz, /readyz): (status, body)."""
    return await asyncio.to_thread(_admin_get, proxy.admin_url + path)


def assert_secrets_not_logged(proxy: ProxyProcess, *secrets: str) -> None:
    log_text = proxy.log_text()
    for secret in secrets:
        assert secret not in log_text


async def test_role_arn_with_source_profile(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    (tmp_path / "credentials").write_text(
        "[base]\n"
        f"aws_access_key_id = {moto_account.key_id}\n"
        f"aws_secret_access_key = {moto_account.secret}\n"
    )
    (tmp_path / "config").write_text(
        f"[profile app]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"
        "role_session_name = e2e-profile\n"
    )
    env = chain_env(
        tmp_path,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_PROFILE="app",
        # The proxy's own AssumeRole goes to moto, signed with [base]'s keys.
        AWS_ENDPOINT_URL_STS=moto_account.server.url,
    )
    proxy = await stack.start_proxy(tmp_path, proxy_config(moto_account.server.url), env)

    assert await caller_arn(proxy) == assumed_role_arn("e2e-profile")
    status, ready = await admin_get(proxy, "/readyz")
    assert (status, ready.split(" ")[:2]) == (200, ["ready:", "assume-role"])
    assert_secrets_not_logged(proxy, moto_account.secret)


async def test_irsa_variables(moto_account: MotoAccount, stack: E2eStack, tmp_path: Path) -> None:
    standin = RoleIssuingSts(moto_account)
    sts_url = await stack.serve(standin.app())
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("eyJ.e2e-service-account-token.sig\n")
    env = chain_env(
        tmp_path,
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ROLE_SESSION_NAME="e2e-irsa",
        AWS_ENDPOINT_URL_STS=sts_url,
    )
    proxy = await stack.start_proxy(tmp_path, proxy_config(moto_account.server.url), env)

    assert await caller_arn(proxy) == assumed_role_arn("e2e-irsa")
    first = standin.calls[0]
    assert first["Action"] == "AssumeRoleWithWebIdentity"
    assert first["RoleArn"] == ROLE_ARN
    assert first["WebIdentityToken"] == "eyJ.e2e-service-account-token.sig"
    assert standin.authorizations[0] is None  # the token is the proof: the call is unsigned
    status, ready = await admin_get(proxy, "/readyz")
    assert (status, ready.split(" ")[:2]) == (200, ["ready:", "web-identity"])
    assert_secrets_not_logged(proxy, "e2e-service-account-token")


async def test_container_credentials(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    keys = await asyncio.to_thread(issue_role_keys, moto_account, "e2e-container")
    fake = FakeContainerEndpoint(
        expected_authorization="pod-identity-token",
        access_key_id=keys["AccessKeyId"],
        secret_access_key=keys["SecretAccessKey"],
        session_token=keys["SessionToken"],
        expiration=keys["Expiration"],
    )
    url = await stack.serve(fake.app())
    (tmp_path / "auth-token").write_text("pod-identity-token")
    env = chain_env(
        tmp_path,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=url + CREDENTIALS_PATH,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(tmp_path / "auth-token"),
    )
    proxy = await stack.start_proxy(tmp_path, proxy_config(moto_account.server.url), env)

    assert await caller_arn(proxy) == assumed_role_arn("e2e-container")
    assert fake.requests >= 1
    assert set(fake.authorizations) == {"pod-identity-token"}
    status, ready = await admin_get(proxy, "/readyz")
    assert (status, ready.split(" ")[:2]) == (200, ["ready:", "container"])
    assert_secrets_not_logged(proxy, keys["SecretAccessKey"], keys["SessionToken"])


async def test_instance_metadata_v2(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    keys = await asyncio.to_thread(issue_role_keys, moto_account, "e2e-imds")
    fake = FakeImds(
        require_token=True,  # a v1 GET would be refused: only the v2 path can succeed
        access_key_id=keys["AccessKeyId"],
        secret_access_key=keys["SecretAccessKey"],
        session_token=keys["SessionToken"],
        expiration=keys["Expiration"],
    )
    url = await stack.serve(fake.app())
    env = chain_env(tmp_path, AWS_EC2_METADATA_SERVICE_ENDPOINT=url)
    del env["AWS_EC2_METADATA_DISABLED"]
    proxy = await stack.start_proxy(tmp_path, proxy_config(moto_account.server.url), env)

    assert await caller_arn(proxy) == assumed_role_arn("e2e-imds")
    assert fake.requests["PUT /latest/api/token"] >= 1
    assert fake.ttl_requested[0] == "21600"
    assert fake.tokens_seen
    assert None not in fake.tokens_seen
    assert fake.requests[f"GET /latest/meta-data/iam/security-credentials/{fake.role}"] >= 1
    status, ready = await admin_get(proxy, "/readyz")
    assert (status, ready.split(" ")[:2]) == (200, ["ready:", "imds"])
    assert_secrets_not_logged(proxy, keys["SecretAccessKey"], keys["SessionToken"])
