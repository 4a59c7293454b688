"""The proxy's own STS client and the STS-based providers against real loopback servers.

moto (signature checking on) answers AssumeRole and GetCallerIdentity; a small stand-in STS
answers the unsigned AssumeRoleWithWebIdentity and GetSessionToken, which moto cannot serve
while it checks signatures.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from proxy.clock import SystemClock
from proxy.config.model import CredentialsConfig
from proxy.credentials.base import Credentials
from proxy.credentials.chain import build_chain
from proxy.credentials.sts import StsClient, sts_endpoint
from proxy.errors import CredentialError, MfaRequired
from tests.fakes.sts import StandInSts
from tests.servers import (
    EXAMPLE_KEY_ID,
    EXAMPLE_SECRET,
    ROLE_ARN,
    ROLE_NAME,
    MotoAccount,
    clean_env,
    free_port,
)


def test_endpoint_order() -> None:
    assert sts_endpoint({}, "eu-west-1") == "https://sts.eu-west-1.amazonaws.com"
    assert sts_endpoint({}, "cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn"
    assert sts_endpoint({"AWS_ENDPOINT_URL": "http://a:1/"}, "us-east-1") == "http://a:1"
    both = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_STS": "http://b:2"}
    assert sts_endpoint(both, "us-east-1") == "http://b:2"


async def test_assume_role_then_caller_identity_against_moto(
    moto_account: MotoAccount, session: aiohttp.ClientSession
) -> None:
    sts = StsClient(session, moto_account.server.url, "us-east-1", SystemClock())
    user = await sts.get_caller_identity(moto_account.user_credentials)
    assert user.arn == "arn:aws:iam::123456789012:user/proxy-tester"
    assumed = await sts.assume_role(
        moto_account.user_credentials,
        role_arn=ROLE_ARN,
        session_name="s1",
        provider="assume-role",
        external_id="ext-1",
        duration_seconds=900,
    )
    assert assumed.session_token
    assert assumed.expiry is not None
    assert assumed.provider == "assume-role"
    identity = await sts.get_caller_identity(assumed)
    assert identity.arn == f"arn:aws:sts::123456789012:assumed-role/{ROLE_NAME}/s1"
    assert identity.account == "123456789012"


async def test_wrong_secret_is_sts_error_without_secret(
    moto_account: MotoAccount, session: aiohttp.ClientSession
) -> None:
    sts = StsClient(session, moto_account.server.url, "us-east-1", SystemClock())
    wrong = Credentials(moto_account.key_id, "not-the-secret", provider="env")
    with pytest.raises(CredentialError) as caught:
        await sts.get_caller_identity(wrong)
    assert "SignatureDoesNotMatch" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


async def test_unreachable_sts_names_the_endpoint(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sts = StsClient(session, url, "us-east-1", SystemClock(), timeout=2)
    with pytest.raises(CredentialError, match=r"STS GetCallerIdentity \(identity\) at http"):
        await sts.get_caller_identity(Credentials("AKIDEXAMPLE", "x"))


async def test_profile_role_arn_with_source_profile_chain(
    moto_account: MotoAccount, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # app -> middle -> base (static keys): two AssumeRole hops, both signed for moto.
    moto_account.write_base_profile(tmp_path / "credentials")
    (tmp_path / "config").write_text(
        f"[profile middle]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"
        f"role_session_name = middle-session\n\n"
        f"[profile app]\nrole_arn = {ROLE_ARN}\nsource_profile = middle\n"
        "role_session_name = app-session\nexternal_id = e-1\nduration_seconds = 1800\n"
    )
    env = clean_env(tmp_path, AWS_PROFILE="app", AWS_ENDPOINT_URL_STS=moto_account.server.url)
    sts = StsClient(session, sts_endpoint(env, "us-east-1"), "us-east-1", SystemClock())
    chain = build_chain(CredentialsConfig(), env, sts, session, SystemClock())
    credentials, provider = await chain.resolve()
    assert provider.name == "assume-role"
    identity = await sts.get_caller_identity(credentials)
    assert identity.arn.endswith(f"assumed-role/{ROLE_NAME}/app-session")


async def test_credential_source_environment(
    moto_account: MotoAccount, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "config").write_text(
        f"[profile ci]\nrole_arn = {ROLE_ARN}\ncredential_source = Environment\n"
        "role_session_name = ci\n"
    )
    env = clean_env(
        tmp_path, AWS_ACCESS_KEY_ID=moto_account.key_id, AWS_SECRET_ACCESS_KEY=moto_account.secret
    )
    sts = StsClient(session, moto_account.server.url, "us-east-1", SystemClock())
    chain = build_chain(CredentialsConfig(profile="ci"), env, sts, session, SystemClock())
    credentials, provider = await chain.resolve()
    assert provider.name == "assume-role"
    assert (await sts.get_caller_identity(credentials)).arn.endswith("/ci")


async def test_mfa_serial_uses_code_once_then_requires_a_new_one(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "credentials").write_text(
        f"[base]\naws_access_key_id = {EXAMPLE_KEY_ID}\naws_secret_access_key = {EXAMPLE_SECRET}\n"
    )
    (tmp_path / "config").write_text(
        f"[profile admin]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"
        "mfa_serial = arn:aws:iam::123456789012:mfa/me\n"
    )
    env = clean_env(tmp_path)
    sts = StsClient(session, standin_url, "us-east-1", SystemClock())
    chain = build_chain(
        CredentialsConfig(profile="admin"), env, sts, session, SystemClock(), mfa_code="123456"
    )
    credentials, _ = await chain.resolve()
    assert credentials.access_key_id == "ASIASTANDIN00001"
    call = standin.calls[0]
    assert call["Action"] == "AssumeRole"
    assert call["SerialNumber"] == "arn:aws:iam::123456789012:mfa/me"
    assert call["TokenCode"] == "123456"
    assert standin.authorizations[0] is not None
    assert f"Credential={EXAMPLE_KEY_ID}/" in standin.authorizations[0]
    with pytest.raises(MfaRequired, match=r"profile \[admin\] needs a new MFA code"):
        await chain.resolve()
    assert len(standin.calls) == 1


async def test_web_identity_from_env_is_unsigned_and_rereads_token(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("jwt-one\n")
    env = clean_env(
        tmp_path,
        AWS_ROLE_ARN="arn:aws:iam::123456789012:role/web",
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ROLE_SESSION_NAME="pod-1",
    )
    sts = StsClient(session, standin_url, "us-east-1", SystemClock())
    chain = build_chain(CredentialsConfig(), env, sts, session, SystemClock())
    first, provider = await chain.resolve()
    assert provider.name == "web-identity"
    assert first.provider == "web-identity"
    token_file.write_text("jwt-two\n")  # the kubelet rotated it
    second = await provider.load()
    assert second is not None
    assert second.access_key_id != first.access_key_id
    assert [c["WebIdentityToken"] for c in standin.calls] == ["jwt-one", "jwt-two"]
    assert standin.calls[0]["RoleSessionName"] == "pod-1"
    assert standin.calls[0]["Action"] == "AssumeRoleWithWebIdentity"
    assert standin.authorizations == [None, None]


async def test_web_identity_errors_name_the_file_and_sts_code(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sts = StsClient(session, standin_url, "us-east-1", SystemClock())
    missing = clean_env(
        tmp_path, AWS_ROLE_ARN="arn:r", AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "nope")
    )
    chain = build_chain(CredentialsConfig(), missing, sts, session, SystemClock())
    with pytest.raises(CredentialError, match=r"AWS_WEB_IDENTITY_TOKEN_FILE .*nope: cannot read"):
        await chain.resolve()
    (tmp_path / "token").write_text("jwt")
    standin.fail_with = (400, "InvalidIdentityToken", "Token is expired")
    env = clean_env(
        tmp_path, AWS_ROLE_ARN="arn:r", AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "token")
    )
    chain = build_chain(CredentialsConfig(), env, sts, session, SystemClock())
    with pytest.raises(CredentialError, match="InvalidIdentityToken: Token is expired"):
        await chain.resolve()


async def test_get_session_token_is_signed(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession
) -> None:
    sts = StsClient(session, standin_url, "us-east-1", SystemClock())
    result = await sts.get_session_token(
        Credentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET),
        provider="mfa",
        serial_number="arn:aws:iam::123456789012:mfa/me",
        token_code="654321",
        duration_seconds=3600,
    )
    assert result.session_token == "standin-token-1"
    assert standin.calls[0] == {
        "Action": "GetSessionToken",
        "Version": "2011-06-15",
        "SerialNumber": "arn:aws:iam::123456789012:mfa/me",
        "TokenCode": "654321",
        "DurationSeconds": "3600",
    }
    assert standin.authorizations[0] is not None
    assert standin.authorizations[0].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/sts/aws4_request" in standin.authorizations[0]
