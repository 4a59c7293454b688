"""`throttle-proxy mfa` and `whoami`: real STS stand-ins, real files, the real CLI process."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import aiohttp
import pytest

from proxy.clock import SystemClock
from proxy.config.model import Config
from proxy.credentials.mfa import MfaRequest, replace_section, run_mfa
from proxy.credentials.setup import build_credential_source
from proxy.credentials.sts import StsClient
from proxy.credentials.whoami import whoami
from proxy.errors import CredentialError
from proxy.observability.metrics import Metrics
from tests.fakes.clock import FakeClock
from tests.fakes.sts import StandInSts
from tests.servers import EXAMPLE_KEY_ID, EXAMPLE_SECRET, MotoAccount, clean_env, run_cli

SERIAL = "arn:aws:iam::123456789012:mfa/me"


def long_term_file(tmp_path: Path) -> Path:
    path = tmp_path / "credentials"
    path.write_text(
        "# my keys\n[dev-long-term]\n"
        f"aws_access_key_id = {EXAMPLE_KEY_ID}\naws_secret_access_key = {EXAMPLE_SECRET}\n\n"
        "[dev]\naws_access_key_id = ASIAOLD\naws_secret_access_key = old\n\n"
        "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other\n"
    )
    return path


def test_replace_section_keeps_the_rest() -> None:
    text = "# c\n[a]\nx = 1\n\n[b]\ny = 2\n"
    assert replace_section(text, "a", {"z": "3"}) == "# c\n[a]\nz = 3\n[b]\ny = 2\n"
    assert replace_section(text, "new", {"k": "v"}) == text + "\n[new]\nk = v\n"
    assert replace_section("", "new", {"k": "v"}) == "[new]\nk = v\n"


async def test_mfa_writes_profile_atomically_and_a_new_source_uses_it(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = long_term_file(tmp_path)
    env = clean_env(tmp_path)
    clock = SystemClock()
    sts = StsClient(session, standin_url, "us-east-1", clock)
    request = MfaRequest(SERIAL, "123456", 3600, profile="dev")
    result = await run_mfa(request, Config(), env, sts, session, clock)
    assert result.profile == "dev"
    assert result.source == "[dev-long-term]"
    assert standin.calls[0]["Action"] == "GetSessionToken"
    assert standin.calls[0]["TokenCode"] == "123456"
    assert f"Credential={EXAMPLE_KEY_ID}/" in (standin.authorizations[0] or "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# my keys\n[dev-long-term]\n")
    assert "[dev]\naws_access_key_id = ASIASTANDIN00001\n" in text
    assert "aws_session_token = standin-token-1\nexpiration = 2030-01-01T00:00:00Z\n" in text
    assert "ASIAOLD" not in text
    assert "[other]\naws_access_key_id = AKIDOTHER" in text
    assert [n for n in os.listdir(tmp_path) if n.startswith(".credentials.")] == []

    source = build_credential_source(
        Config(), session=session, metrics=Metrics(), clock=clock, env=env, profile="dev"
    )
    loaded = await source.get()
    assert (loaded.access_key_id, loaded.session_token) == ("ASIASTANDIN00001", "standin-token-1")
    assert loaded.expiry == 1893456000.0


async def test_running_source_picks_up_new_session_without_restart(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    long_term_file(tmp_path)
    env = clean_env(tmp_path)
    clock = FakeClock(1_800_000_000.0)
    source = build_credential_source(
        Config(), session=session, metrics=Metrics(), clock=clock, env=env, profile="dev"
    )
    assert (await source.get()).access_key_id == "ASIAOLD"
    sts = StsClient(session, standin_url, "us-east-1", clock)
    await run_mfa(MfaRequest(SERIAL, "123456", profile="dev"), Config(), env, sts, session, clock)
    await source.refresh_if_due()  # one step of the background task: the file changed
    assert (await source.get()).access_key_id == "ASIASTANDIN00001"


async def test_mfa_without_long_term_profile_uses_the_chain(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDFROMENV", AWS_SECRET_ACCESS_KEY="s")
    clock = SystemClock()
    sts = StsClient(session, standin_url, "us-east-1", clock)
    result = await run_mfa(MfaRequest(SERIAL, "000111"), Config(), env, sts, session, clock)
    assert result.profile == "default"
    assert result.source == "the credential chain (env)"
    assert "Credential=AKIDFROMENV/" in (standin.authorizations[0] or "")
    assert (
        "[default]\naws_access_key_id = ASIASTANDIN00001" in (tmp_path / "credentials").read_text()
    )


async def test_mfa_rejects_bad_code_and_reports_sts_errors(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = long_term_file(tmp_path)
    before = path.read_text()
    env = clean_env(tmp_path)
    clock = SystemClock()
    sts = StsClient(session, standin_url, "us-east-1", clock)
    with pytest.raises(CredentialError, match="--token-code must be 6 digits"):
        await run_mfa(MfaRequest(SERIAL, "12ab"), Config(), env, sts, session, clock)
    standin.fail_with = (403, "AccessDenied", "MultiFactorAuthentication failed")
    with pytest.raises(CredentialError, match="AccessDenied: MultiFactorAuthentication failed"):
        await run_mfa(
            MfaRequest(SERIAL, "123456", profile="dev"), Config(), env, sts, session, clock
        )
    assert path.read_text() == before


async def test_cli_mfa_then_whoami_against_moto(
    moto_account: MotoAccount, standin: StandInSts, standin_url: str, tmp_path: Path
) -> None:
    long_term_file(tmp_path)
    env = clean_env(tmp_path, AWS_ENDPOINT_URL_STS=standin_url, PATH="/usr/bin:/bin")
    code, out, err = await run_cli(
        env, "mfa", "--serial-number", SERIAL, "--token-code", "123456", "--profile", "dev"
    )
    assert code == 0, err
    assert out.startswith("wrote session credentials ASIA…0001 to [dev] in ")
    assert "standin-secret" not in out + err

    env = clean_env(
        tmp_path,
        AWS_ACCESS_KEY_ID=moto_account.key_id,
        AWS_SECRET_ACCESS_KEY=moto_account.secret,
        AWS_ENDPOINT_URL_STS=moto_account.server.url,
    )
    code, out, err = await run_cli(env, "whoami")
    assert code == 0, err
    assert "provider:       env\n" in out
    assert "arn:            arn:aws:iam::123456789012:user/proxy-tester\n" in out
    assert moto_account.secret not in out + err

    code, out, err = await run_cli(clean_env(tmp_path / "empty"), "whoami")
    assert code == 1
    assert err.startswith("throttle-proxy whoami: no credentials: env: AWS_ACCESS_KEY_ID not set")


async def test_whoami_reports_assumed_role(
    moto_account: MotoAccount, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    moto_account.write_role_profile(tmp_path, "who")
    env = clean_env(tmp_path, AWS_ENDPOINT_URL_STS=moto_account.server.url)
    clock = SystemClock()
    answer = await whoami(Config(), env, session, clock, profile="app")
    assert answer.provider == "assume-role"
    assert answer.identity.arn == "arn:aws:sts::123456789012:assumed-role/app-role/who"
    assert answer.has_session_token
    assert answer.expiry is not None
    text = answer.render()
    assert "provider:       assume-role" in text
    assert answer.masked_key_id in text
