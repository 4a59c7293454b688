"""Routes' own identities: a role assumed from a source identity, or a named profile's chain.

Each identity is a RefreshingCredentials of its own (advisory and mandatory windows, single
flight, static stability), labelled with its configured name in the credentials_* metrics.
A `role_arn` identity calls STS AssumeRole through the proxy's own signer, signed with its
source: the top-level identity's credentials, or `source_profile`'s chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from proxy.clock import Clock
from proxy.config.model import Config
from proxy.config.routes import RouteCredentials
from proxy.credentials.base import Credentials, CredentialSource
from proxy.credentials.chain import CredentialChain, build_chain
from proxy.credentials.identities import DEFAULT_IDENTITY, Identities, Identity, account_of_arn
from proxy.credentials.refresher import RefreshingCredentials
from proxy.credentials.sts import StsClient
from proxy.errors import CredentialError
from proxy.observability.metrics import Metrics


class RouteRoleProvider:
    """AssumeRole of a route's `role_arn`, signed with the source identity's credentials."""

    def __init__(
        self,
        settings: RouteCredentials,
        sts: StsClient,
        source: CredentialSource | CredentialChain,
        source_name: str,
    ) -> None:
        assert settings.role_arn is not None
        self.name = "assume-role"
        self._settings = settings
        self._sts = sts
        self._source = source
        self._source_name = source_name

    async def load(self) -> Credentials | None:
        if isinstance(self._source, CredentialChain):
            source, _ = await self._source.resolve()
        else:
            source = await self._source.get()
        settings = self._settings
        assert settings.role_arn is not None
        credentials = await self._sts.assume_role(
            source,
            role_arn=settings.role_arn,
            session_name=settings.role_session_name,
            provider=self.name,
            external_id=settings.external_id,
            duration_seconds=settings.duration_seconds,
        )
        if credentials.account_id is None:
            raise CredentialError(self.name, f"STS AssumeRole {settings.role_arn}: no role ARN")
        return credentials

    def describe(self) -> str:
        return f"role {self._settings.role_arn} from {self._source_name}"


def route_identity_settings(config: Config) -> dict[str, RouteCredentials]:
    """Every route identity of a config, by name (the config checks they agree)."""
    found: dict[str, RouteCredentials] = {}
    for route in config.routes:
        if route.credentials is not None:
            found.setdefault(route.credentials.name, route.credentials)
    return found


@dataclass(frozen=True)
class IdentitySources:
    """What every route identity is built from: the top-level chain (a role's default
    source), the proxy's STS client and HTTP session, its metrics, clock and start-up env."""

    default: CredentialSource
    sts: StsClient
    session: aiohttp.ClientSession
    metrics: Metrics
    clock: Clock
    env: Mapping[str, str]


def build_route_identity(
    settings: RouteCredentials, config: Config, sources: IdentitySources
) -> Identity:
    """One route identity, not started yet."""
    sts, session, clock, env = sources.sts, sources.session, sources.clock, sources.env
    if settings.profile is not None:
        chain = build_chain(config.credentials, env, sts, session, clock, profile=settings.profile)
        role_arn = None
    else:
        source: CredentialSource | CredentialChain = sources.default
        source_name = f"identity {DEFAULT_IDENTITY}"
        if settings.source_profile is not None:
            source = build_chain(
                config.credentials, env, sts, session, clock, profile=settings.source_profile
            )
            source_name = f"source_profile [{settings.source_profile}]"
        chain = CredentialChain([RouteRoleProvider(settings, sts, source, source_name)])
        role_arn = settings.role_arn
    refreshing = RefreshingCredentials(
        chain, clock, sources.metrics, config.credentials, identity=settings.name
    )
    account = account_of_arn(role_arn) if role_arn is not None else None
    return Identity(
        settings.name, refreshing, account=account, role_arn=role_arn, settings=settings
    )


def build_identities(
    config: Config, sources: IdentitySources, keep: Identities | None = None
) -> tuple[Identities, list[Identity]]:
    """The identities of `config`; those of `keep` with unchanged settings are reused (their
    credentials and refresh state survive a reload). Also returns the ones newly built, which
    the caller starts."""
    kept = {identity.name: identity for identity in keep} if keep is not None else {}
    identities = {DEFAULT_IDENTITY: Identity(DEFAULT_IDENTITY, sources.default)}
    built: list[Identity] = []
    for name, settings in route_identity_settings(config).items():
        previous = kept.get(name)
        if previous is not None and previous.settings == settings:
            identities[name] = previous
            continue
        identity = build_route_identity(settings, config, sources)
        identities[name] = identity
        built.append(identity)
    return Identities(identities), built


class IdentityKeeper:
    """The live identities of a running proxy across reloads: builds and starts new ones,
    keeps unchanged ones, and closes removed ones once requests already bound to them had
    time to finish (`grace`)."""

    def __init__(self, sources: IdentitySources) -> None:
        self._sources = sources
        self.identities = Identities.single(sources.default)
        self._retiring: set[asyncio.Task[None]] = set()

    def apply(self, config: Config, grace: float = 0.0) -> Identities:
        """Make `config`'s identities current; returns them (for the new pipeline parts)."""
        previous = self.identities
        current, built = build_identities(config, self._sources, keep=previous)
        loop = asyncio.get_running_loop()
        for identity in built:
            # Loads at once in the background; a request before that joins the same load.
            self._track(loop.create_task(_start(identity.source)))
        self.identities = current
        kept = {id(identity) for identity in current}
        gone = [i for i in previous if i.name != DEFAULT_IDENTITY and id(i) not in kept]
        if gone:
            self._track(loop.create_task(_close_later(gone, grace)))
        return current

    def _track(self, task: asyncio.Task[None]) -> None:
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def status(self) -> tuple[bool, list[str]]:
        """(all route identities ready, one line per route identity) for /readyz."""
        ready, lines = True, []
        for identity in self.identities:
            if identity.name == DEFAULT_IDENTITY:
                continue
            status = getattr(identity.source, "status", None)
            ok, message = status() if status is not None else (True, "ready")
            ready = ready and ok
            lines.append(f"identity {identity.name}: {message}")
        return ready, lines

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await _close_all([i for i in self.identities if i.name != DEFAULT_IDENTITY])


async def _start(source: CredentialSource) -> None:
    start = getattr(source, "start", None)
    if start is not None:
        await start()


async def _close_all(identities: list[Identity]) -> None:
    for identity in identities:
        close = getattr(identity.source, "close", None)
        if close is not None:
            await close()


async def _close_later(identities: list[Identity], grace: float) -> None:
    try:
        await asyncio.sleep(grace)
    finally:
        await _close_all(identities)
