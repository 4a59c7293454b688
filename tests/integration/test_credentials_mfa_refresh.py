"""An assume-role session with `mfa_serial` running out: the real provider, a stand-in STS on
loopback, and a FakeClock driving the refresher through its windows (issue 3 item 6)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from proxy.config.model import CredentialsConfig
from proxy.credentials.chain import build_chain
from proxy.credentials.refresher import RefreshingCredentials
from proxy.credentials.sts import StsClient
from proxy.credentials.timestamps import format_expiration
from proxy.errors import MfaRequired
from proxy.observability.metrics import Metrics
from tests.fakes.clock import FakeClock
from tests.fakes.sts import StandInSts
from tests.servers import EXAMPLE_KEY_ID, EXAMPLE_SECRET, ROLE_ARN, clean_env

MINUTE = 60.0
HOUR = 3600.0
MFA_SERIAL = "arn:aws:iam::123456789012:mfa/me"


def write_mfa_profile(tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text(
        f"[base]\naws_access_key_id = {EXAMPLE_KEY_ID}\naws_secret_access_key = {EXAMPLE_SECRET}\n"
    )
    (tmp_path / "config").write_text(
        f"[profile admin]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"
        f"mfa_serial = {MFA_SERIAL}\n"
    )


async def test_mfa_session_reports_soon_then_not_ready(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    clock = FakeClock()
    standin.expiration = format_expiration(clock.time() + HOUR)
    write_mfa_profile(tmp_path)
    sts = StsClient(session, standin_url, "us-east-1", clock)
    config = CredentialsConfig(profile="admin")
    chain = build_chain(config, clean_env(tmp_path), sts, session, clock, mfa_code="123456")
    metrics = Metrics()
    source = RefreshingCredentials(chain, clock, metrics, config)

    first = await source.get()
    assert first.provider == "assume-role"
    assert source.status()[0]

    clock.advance(HOUR - 14 * MINUTE)  # advisory window: the refresh needs a new code
    await source.refresh_if_due()
    ready, message = source.status()
    assert ready
    assert "mfa-required soon: assume-role: profile [admin] needs a new MFA code" in message
    assert await source.get() is first
    assert metrics.registry.get_sample_value("throttle_proxy_credentials_mfa_required") == 1.0

    clock.advance(5 * MINUTE)  # mandatory window
    ready, message = source.status()
    assert not ready
    assert message.startswith(
        f"mfa-required: assume-role: profile [admin] needs a new MFA code for {MFA_SERIAL}"
    )
    with pytest.raises(MfaRequired):
        await source.get()
    clock.advance(10 * MINUTE)  # expired
    with pytest.raises(MfaRequired):
        await source.get()
    assert source.status()[1].startswith("mfa-required: ")
    assert len(standin.calls) == 1  # the used code is never sent twice


async def test_mfa_required_is_not_masked_by_a_failing_source(
    standin: StandInSts, standin_url: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Once the code is spent, a source that fails too must not turn the answer into
    # no-credentials: without a code nothing can refresh, whatever the source does.
    clock = FakeClock()
    write_mfa_profile(tmp_path)
    sts = StsClient(session, standin_url, "us-east-1", clock)
    chain = build_chain(
        CredentialsConfig(profile="admin"),
        clean_env(tmp_path),
        sts,
        session,
        clock,
        mfa_code="123456",
    )
    await chain.resolve()
    (tmp_path / "credentials").write_text("[base]\n")  # the source keys are gone as well
    with pytest.raises(MfaRequired, match=r"profile \[admin\] needs a new MFA code"):
        await chain.resolve()
    assert len(standin.calls) == 1
