"""`throttle-proxy whoami`: which provider answered and who STS says the keys are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import aiohttp

from proxy.clock import Clock
from proxy.config.model import Config
from proxy.credentials.base import Credentials
from proxy.credentials.route_identities import (
    IdentitySources,
    build_route_identity,
    route_identity_settings,
)
from proxy.credentials.setup import build_credential_source, build_sts_client
from proxy.credentials.sts import CallerIdentity, StsClient
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
    name: str = "default"
    # The routes' own identities, each resolved and asked the same way.
    routes: tuple[WhoAmI, ...] = ()

    def render(self) -> str:
        """Human-readable lines, one fact per line."""
        if self.expiry is None:
            expires = "never"
        else:
            minutes = int((self.expiry - self.now) // 60)
            expires = f"{format_expiration(self.expiry)} (in {minutes} min)"
        # Only with route identities: one block per identity, each headed by its name.
        named = self.routes or self.name != "default"
        head = [f"identity:       {self.name}"] if named else []
        blocks = ["\n".join([*head, *self._facts(expires)])]
        blocks += [route.render() for route in self.routes]
        return "\n\n".join(blocks)

    def _facts(self, expires: str) -> list[str]:
        return [
            f"provider:       {self.provider}",
            f"access key id:  {self.masked_key_id}",
            f"session token:  {'yes' if self.has_session_token else 'no'}",
            f"expires:        {expires}",
            f"account:        {self.identity.account}",
            f"arn:            {self.identity.arn}",
            f"user id:        {self.identity.user_id}",
        ]


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
    sts = build_sts_client(config, env, session, clock)
    try:
        credentials = await source.get()
        routes = []
        sources = IdentitySources(source, sts, session, Metrics(), clock, env)
        for settings in route_identity_settings(config).values():
            # Each route identity as the proxy builds it: its role assumed from the default.
            route = build_route_identity(settings, config, sources)
            route_credentials = await route.source.get()
            routes.append(await _ask(settings.name, route_credentials, sts, clock))
    finally:
        await source.close()
    answer = await _ask("default", credentials, sts, clock)
    return replace(answer, routes=tuple(routes))


async def _ask(name: str, credentials: Credentials, sts: StsClient, clock: Clock) -> WhoAmI:
    identity = await sts.get_caller_identity(credentials)
    return WhoAmI(
        provider=credentials.provider,
        masked_key_id=credentials.masked_key_id,
        expiry=credentials.expiry,
        has_session_token=credentials.session_token is not None,
        identity=identity,
        now=clock.time(),
        name=name,
    )
