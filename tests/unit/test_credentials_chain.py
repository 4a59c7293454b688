"""Chain order and provider errors: two sources configured at once, which one wins.

Real files in tmp_path and an env dict; IMDS disabled and no container variables, so nothing
leaves the machine (no provider here calls STS).
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from proxy.config.model import CredentialsConfig
from proxy.credentials.chain import CredentialChain, build_chain
from proxy.credentials.env import EnvProvider
from proxy.credentials.profiles import (
    ProfilePaths,
    ProfileStore,
    parse_ini,
    select_profile,
)
from proxy.credentials.static import SharedCredentialsProvider
from proxy.credentials.sts import StsClient
from proxy.errors import CredentialError, NoCredentials
from tests.fakes.clock import FakeClock
from tests.servers import EXAMPLE_SECRET, clean_env

SECRET = EXAMPLE_SECRET


def chain_for(
    session: aiohttp.ClientSession, env: dict[str, str], profile: str | None = None
) -> CredentialChain:
    clock = FakeClock()
    sts = StsClient(session, "http://127.0.0.1:9", "us-east-1", clock)
    return build_chain(CredentialsConfig(), env, sts, session, clock, profile=profile)


def keys(name: str) -> str:
    return f"aws_access_key_id = AKID{name.upper()}\naws_secret_access_key = {SECRET}\n"


def test_select_profile_order() -> None:
    both = {"AWS_PROFILE": "p", "AWS_DEFAULT_PROFILE": "d"}
    assert select_profile(None, {}) == ("default", False)
    assert select_profile(None, {"AWS_PROFILE": "p"}) == ("p", False)
    assert select_profile(None, both) == ("d", False)
    assert select_profile("x", both) == ("x", True)


def test_parse_ini_config_sections() -> None:
    text = "[default]\na = 1\n[profile dev]\nb = 2\n[sso-session s]\nc = 3\n"
    parsed = parse_ini(text, Path("/c"), "config-file", is_config=True)
    assert {k: dict(v) for k, v in parsed.items()} == {"default": {"a": "1"}, "dev": {"b": "2"}}


def test_parse_ini_error_names_the_file() -> None:
    with pytest.raises(CredentialError, match=r"^shared-credentials-file: /x/credentials: not"):
        parse_ini("no section header\n", Path("/x/credentials"), "shared-credentials-file", False)


async def test_env_beats_files(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("[default]\n" + keys("file"))
    env = clean_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY=SECRET)
    credentials, provider = await chain_for(session, env).resolve()
    assert (credentials.access_key_id, provider.name) == ("AKIDENV", "env")


async def test_explicit_profile_beats_env(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("[dev]\n" + keys("dev"))
    env = clean_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY=SECRET)
    credentials, provider = await chain_for(session, env, profile="dev").resolve()
    assert (credentials.access_key_id, provider.name) == ("AKIDDEV", "shared-credentials-file")


async def test_explicit_missing_profile_is_an_error(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY=SECRET)
    with pytest.raises(CredentialError, match=r"profile \[nope\] not found in .*credentials or"):
        await chain_for(session, env, profile="nope").resolve()


async def test_default_profile_beats_aws_profile(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "credentials").write_text("[a]\n" + keys("a") + "[b]\n" + keys("b"))
    env = clean_env(tmp_path, AWS_PROFILE="a", AWS_DEFAULT_PROFILE="b")
    credentials, _ = await chain_for(session, env).resolve()
    assert credentials.access_key_id == "AKIDB"


async def test_credentials_file_beats_config_file(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "credentials").write_text("[default]\n" + keys("creds"))
    (tmp_path / "config").write_text("[default]\n" + keys("config"))
    credentials, provider = await chain_for(session, clean_env(tmp_path)).resolve()
    assert (credentials.access_key_id, provider.name) == ("AKIDCREDS", "shared-credentials-file")
    (tmp_path / "credentials").write_text("[other]\n" + keys("other"))
    credentials, provider = await chain_for(session, clean_env(tmp_path)).resolve()
    assert (credentials.access_key_id, provider.name) == ("AKIDCONFIG", "config-file")


async def test_config_file_profile_section(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[profile dev]\n" + keys("dev"))
    env = clean_env(tmp_path, AWS_PROFILE="dev")
    credentials, provider = await chain_for(session, env).resolve()
    assert (credentials.access_key_id, provider.name) == ("AKIDDEV", "config-file")


async def test_error_stops_the_chain(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    # The config file has good keys, but the credentials file's half pair comes first.
    path = tmp_path / "credentials"
    path.write_text("[default]\naws_access_key_id = AKIDHALF\n")
    (tmp_path / "config").write_text("[default]\n" + keys("config"))
    with pytest.raises(CredentialError) as caught:
        await chain_for(session, clean_env(tmp_path)).resolve()
    assert str(caught.value) == (
        f"shared-credentials-file: {path}: profile [default]: missing aws_secret_access_key"
    )


async def test_partial_env_is_an_error(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    env = clean_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDENV")
    with pytest.raises(
        CredentialError, match=r"^env: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not$"
    ):
        await chain_for(session, env).resolve()


async def test_nothing_found_names_every_provider(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with pytest.raises(NoCredentials) as caught:
        await chain_for(session, clean_env(tmp_path)).resolve()
    message = caught.value.message
    assert message.startswith("no credentials: env: AWS_ACCESS_KEY_ID not set; assume-role: ")
    for part in (
        f"shared-credentials-file: {tmp_path / 'credentials'} not found",
        f"config-file: {tmp_path / 'config'} not found",
        "credential-process: profile [default] has no credential_process",
        "web-identity: AWS_WEB_IDENTITY_TOKEN_FILE not set",
        "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and",
        "imds: disabled by AWS_EC2_METADATA_DISABLED",
    ):
        assert part in message
    order = [m.split(":")[0] for m in message.removeprefix("no credentials: ").split("; ")]
    assert order == [
        "env",
        "assume-role",
        "web-identity",
        "shared-credentials-file",
        "credential-process",
        "config-file",
        "container",
        "imds",
    ]


async def test_env_session_token_and_expiration() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "ASIAENV",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SECURITY_TOKEN": "legacy-token",
        "AWS_CREDENTIAL_EXPIRATION": "2030-01-01T00:00:00Z",
    }
    credentials = await EnvProvider(env).load()
    assert credentials is not None
    assert credentials.session_token == "legacy-token"
    assert credentials.expiry == 1893456000.0
    with pytest.raises(CredentialError, match=r"^env: AWS_CREDENTIAL_EXPIRATION: not an ISO"):
        await EnvProvider({**env, "AWS_CREDENTIAL_EXPIRATION": "soon"}).load()


async def test_file_expiration_and_store_sees_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("[dev]\n" + keys("one") + "expiration = 2030-01-01 00:00:00\n")
    store = ProfileStore(ProfilePaths(path, tmp_path / "config"))
    provider = SharedCredentialsProvider(store, "dev")
    first = await provider.load()
    assert first is not None
    assert first.expiry == 1893456000.0
    assert not await provider.source_changed()
    replacement = tmp_path / "new"
    replacement.write_text("[dev]\n" + keys("two"))
    os.replace(replacement, path)
    assert await provider.source_changed()
    second = await provider.load()
    assert second is not None
    assert second.access_key_id == "AKIDTWO"
    assert second.expiry is None
