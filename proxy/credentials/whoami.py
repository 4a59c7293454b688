"""`throttle-proxy whoami`: which provider answered and who STS says the keys are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from proxy.clock import Clock
from proxy.config.model import Config
from proxy.credentials.setup import build_credential_source, build_sts_client
from proxy.credentials.sts import CallerIdentity
from proxy.credentials.timestamps import format_expiration
from proxy.observability.metrics import Metrics


@dataclass(frozen=True)
class WhoAmI:
    """Everything `whoami` prints; no secret or session token."""

    provider: str
    masked_key_id: str
    expiry: float | None
    has_session_token: bool
    identity: CallerIdentity
    now: float

    def render(self) -> str:
        """Human-readable lines, one fact per line."""
        if self.expiry is None:
            expires = "never"
        else:
            minutes = int((self.expiry - self.now) // 60)
            expires = f"{format_expiration(self.expiry)} (in {minutes} min)"
        return "\n".join(
            [
                f"provider:       {self.provider}",
                f"access key id:  {self.masked_key_id}",
                f"session token:  {'yes' if self.has_session_token else 'no'}",
                f"expires:        {expires}",
                f"account:        {self.identity.account}",
                f"arn:            {self.identity.arn}",
                f"user id:        {self.identity.user_id}",
            ]
        )


async def whoami(
    config: Config,
    env: Mapping[str, str],
    session: aiohttp.ClientSession,
    clock: Clock,
    *,
    profile: str | None = None,
    mfa_code: str | None = None,
) -> WhoAmI:
    """Resolve credentials exactly as the proxy would, then ask STS GetCallerIdentity."""
    source = build_credential_source(
        config,
        session=session,
        metrics=Metrics(),
        clock=clock,
        env=env,
        profile=profile,
        mfa_code=mfa_code,
    )
    try:
        credentials = await source.get()
    finally:
        await source.close()
    identity = await build_sts_client(config, env, session, clock).get_caller_identity(credentials)
    return WhoAmI(
        provider=credentials.provider,
        masked_key_id=credentials.masked_key_id,
        expiry=credentials.expiry,
        has_session_token=credentials.session_token is not None,
        identity=identity,
        now=clock.time(),
    )
