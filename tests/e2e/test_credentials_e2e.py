"""Each kind of chain credentials, end to end: a real proxy process signs, moto checks.

An unsigned boto3 GetCallerIdentity goes through `python -m proxy run` (forward-proxy form) to
moto with signature checking on; moto answers with the ARN of whoever signed. The credentials
come from a role_arn + source_profile profile, IRSA variables (a stand-in STS hands out keys
moto itself issued), a container endpoint and IMDSv2. The fakes run on this test's event loop,
so everything that blocks (starting the proxy, boto3 calls) runs in a thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.conftest import (
    E2eStack,
    admin_get,
    assert_secrets_not_logged,
    caller_arn,
    proxy_config,
)
from tests.fakes.container import CREDENTIALS_PATH, FakeContainerEndpoint
from tests.fakes.imds import FakeImds
from tests.fakes.sts import role_issuing_sts
from tests.servers import ROLE_ARN, MotoAccount, assumed_role_arn, chain_env, issue_role_keys


async def test_role_arn_with_source_profile(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    moto_account.write_role_profile(tmp_path, "e2e-profile")
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
    standin = role_issuing_sts(moto_account)
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
