"""`throttle-proxy whoami` and `throttle-proxy mfa` as real processes, with moto checking.

The console script is `proxy.cli.main:main`; the tests run it as `python -m proxy`, which is the
same entry point and needs no installed package.
"""

from __future__ import annotations

import asyncio
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.conftest import (
    E2eStack,
    admin_get,
    assert_secrets_not_logged,
    caller_arn,
    proxy_config,
)
from tests.fakes.sts import role_issuing_sts
from tests.servers import (
    ADMIN_ARN,
    MotoAccount,
    assumed_role_arn,
    chain_env,
    issue_role_keys,
    run_cli,
)

MFA_SERIAL = "arn:aws:iam::123456789012:mfa/u"


WHOAMI_FIELDS = ["provider", "access key id", "session token", "expires", "account", "arn"]


def whoami_fields(out: str) -> dict[str, str]:
    """whoami's stdout (`name:   value` lines and nothing else, e.g. no log lines) as a dict."""
    pairs = [line.split(":", 1) for line in out.splitlines()]
    assert [name for name, _ in pairs] == [*WHOAMI_FIELDS, "user id"], out
    return {name: value.strip() for name, value in pairs}


async def test_whoami_with_env_keys(moto_account: MotoAccount, tmp_path: Path) -> None:
    env = chain_env(
        tmp_path,
        AWS_ACCESS_KEY_ID=moto_account.key_id,
        AWS_SECRET_ACCESS_KEY=moto_account.secret,
        AWS_ENDPOINT_URL_STS=moto_account.server.url,
    )
    code, out, err = await run_cli(env, "whoami")

    assert code == 0, err
    fields = whoami_fields(out)
    key_id = moto_account.key_id
    assert fields["provider"] == "env"
    assert fields["access key id"] == f"{key_id[:4]}…{key_id[-4:]}"
    assert fields["session token"] == "no"
    assert fields["expires"] == "never"
    assert fields["account"] == "123456789012"
    assert fields["arn"] == ADMIN_ARN
    assert key_id not in out + err
    assert moto_account.secret not in out + err


async def test_whoami_with_assume_role_profile(moto_account: MotoAccount, tmp_path: Path) -> None:
    moto_account.write_role_profile(tmp_path, "e2e-whoami")
    env = chain_env(
        tmp_path,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_ENDPOINT_URL_STS=moto_account.server.url,
    )
    code, out, err = await run_cli(env, "whoami", "--profile", "app")

    assert code == 0, err
    fields = whoami_fields(out)
    assert fields["provider"] == "assume-role"
    assert fields["session token"] == "yes"
    assert fields["access key id"].count("…") == 1
    # moto's AssumeRole default is one hour: `2026-…Z (in 59 min)` or `(in 60 min)`.
    assert fields["expires"].endswith(("(in 59 min)", "(in 60 min)")), fields["expires"]
    assert fields["arn"] == assumed_role_arn("e2e-whoami")
    assert moto_account.secret not in out + err


async def test_whoami_without_credentials_names_each_provider(tmp_path: Path) -> None:
    code, out, err = await run_cli(chain_env(tmp_path), "whoami")

    assert code == 1
    assert out == ""
    assert err.startswith("throttle-proxy whoami: no credentials: env: AWS_ACCESS_KEY_ID not set;")
    assert "imds: disabled by AWS_EC2_METADATA_DISABLED" in err


def _utc_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_mfa_profile_reaches_a_running_proxy_without_restart(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    before = await asyncio.to_thread(issue_role_keys, moto_account, "before-mfa")
    credentials = tmp_path / "credentials"
    # [dev] expires in 5 minutes (inside the 10-minute mandatory window): the proxy signs
    # with it but keeps re-reading the file until something fresher appears.
    credentials.write_text(
        "# written by hand\n"
        "[dev-long-term]\n"
        f"aws_access_key_id = {moto_account.key_id}\n"
        f"aws_secret_access_key = {moto_account.secret}\n\n"
        "[dev]\n"
        f"aws_access_key_id = {before['AccessKeyId']}\n"
        f"aws_secret_access_key = {before['SecretAccessKey']}\n"
        f"aws_session_token = {before['SessionToken']}\n"
        f"expiration = {_utc_in(300)}\n"
    )
    credentials.chmod(0o600)
    proxy_env = chain_env(
        tmp_path,
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_ENDPOINT_URL_STS=moto_account.server.url,
    )
    proxy = await stack.start_proxy(
        tmp_path, proxy_config(moto_account.server.url), proxy_env, args=("--profile", "dev")
    )
    assert await caller_arn(proxy) == assumed_role_arn("before-mfa")
    status, ready = await admin_get(proxy, "/readyz")
    assert (status, ready.split(" ")[:2]) == (200, ["ready:", "shared-credentials-file"])

    standin = role_issuing_sts(moto_account, session_token_session="after-mfa")
    mfa_env = chain_env(
        tmp_path,
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_ENDPOINT_URL_STS=await stack.serve(standin.app()),
    )
    code, out, err = await run_cli(
        mfa_env,
        "mfa",
        "--serial-number",
        MFA_SERIAL,
        "--token-code",
        "123456",
        "--profile",
        "dev",
    )
    assert code == 0, err
    assert out.startswith("wrote session credentials ASIA"), out
    assert out.count("\n") == 1, out  # one line: no log lines mixed into the answer
    assert f"to [dev] in {credentials} " in out
    assert "long-term keys from [dev-long-term]" in out
    [call] = standin.calls
    assert (call["Action"], call["SerialNumber"], call["TokenCode"]) == (
        "GetSessionToken",
        MFA_SERIAL,
        "123456",
    )
    assert f"Credential={moto_account.key_id}/" in (standin.authorizations[0] or "")
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    written = credentials.read_text()
    assert written.startswith("# written by hand\n[dev-long-term]\n")
    assert before["AccessKeyId"] not in written

    # The same process, never restarted, moves to the new keys on its own.
    pid = proxy.proc.pid
    deadline = time.monotonic() + 20
    arn = await caller_arn(proxy)
    while arn != assumed_role_arn("after-mfa") and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        arn = await caller_arn(proxy)
    assert arn == assumed_role_arn("after-mfa")
    assert proxy.proc.poll() is None
    assert proxy.proc.pid == pid
    assert_secrets_not_logged(proxy, moto_account.secret, before["SecretAccessKey"])
