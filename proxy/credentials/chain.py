"""The credential chain in the AWS CLI's order (shared/REFERENCE.md §1).

explicit profile (skips env) → env → assume role (profile) → web identity → shared credentials
file → credential_process → config file → container → instance metadata. The first provider
with credentials wins; a provider that raises CredentialError stops the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import aiohttp

from proxy.clock import Clock
from proxy.config.model import CredentialsConfig
from proxy.credentials.assume_role import AssumeRoleProvider, has_static_keys
from proxy.credentials.base import CredentialProvider, Credentials
from proxy.credentials.container import ContainerProvider
from proxy.credentials.env import EnvProvider
from proxy.credentials.imds import InstanceMetadataProvider
from proxy.credentials.process import ProcessProvider
from proxy.credentials.profiles import ProfilePaths, ProfileSnapshot, ProfileStore, select_profile
from proxy.credentials.static import ConfigFileProvider, SharedCredentialsProvider
from proxy.credentials.sts import StsClient
from proxy.credentials.web_identity import WebIdentityProvider
from proxy.errors import CredentialError, NoCredentials


class DescribedProvider(CredentialProvider, Protocol):
    """A chain link that can say why it had nothing (for the "no credentials" message)."""

    def describe(self) -> str: ...


class FirstOf:
    """A small sub-chain used for a `source_profile`: the first link with credentials."""

    def __init__(self, name: str, providers: Sequence[DescribedProvider]) -> None:
        self.name = name
        self._providers = providers

    async def load(self) -> Credentials | None:
        for provider in self._providers:
            credentials = await provider.load()
            if credentials is not None:
                return credentials
        return None

    def describe(self) -> str:
        return "; ".join(f"{p.name}: {p.describe()}" for p in self._providers)


class ProfileSources:
    """Resolves the source of an assume-role profile, reusing one IMDS/container provider."""

    def __init__(
        self,
        env: Mapping[str, str],
        store: ProfileStore,
        sts: StsClient,
        session: aiohttp.ClientSession,
        clock: Clock,
        process_timeout: float,
    ) -> None:
        self._env = env
        self._store = store
        self._sts = sts
        self._clock = clock
        self._process_timeout = process_timeout
        # Built once: IMDS caches its session token, the container provider nothing to lose.
        self.imds = InstanceMetadataProvider(env, session, clock)
        self.container = ContainerProvider(env, session, clock)
        self.environment = EnvProvider(env)

    def for_profile(
        self, name: str, snapshot: ProfileSnapshot, visited: tuple[str, ...]
    ) -> CredentialProvider:
        """Static/process/web-identity keys of `name`, else its own assume-role (botocore)."""
        section = snapshot.profile(name)
        if has_static_keys(section) or not section.get("role_arn"):
            return FirstOf(f"source_profile [{name}]", self.profile_providers(name, False))
        return AssumeRoleProvider(self._store, name, self._sts, self, self._clock, visited=visited)

    def for_credential_source(self, source: str) -> CredentialProvider:
        """`credential_source = Environment | Ec2InstanceMetadata | EcsContainer`."""
        by_name: dict[str, CredentialProvider] = {
            "Environment": self.environment,
            "Ec2InstanceMetadata": self.imds,
            "EcsContainer": self.container,
        }
        return by_name[source]

    def profile_providers(self, name: str, use_env: bool) -> list[DescribedProvider]:
        """The profile-reading links after assume-role, in chain order."""
        return [
            WebIdentityProvider(
                self._env, self._store, name, self._sts, self._clock, use_env=use_env
            ),
            SharedCredentialsProvider(self._store, name),
            ProcessProvider(self._store, name, self._process_timeout),
            ConfigFileProvider(self._store, name),
        ]


class CredentialChain:
    """Walks the providers in order; `resolve` returns the first credentials and who gave them."""

    def __init__(
        self,
        providers: Sequence[DescribedProvider],
        *,
        profile: str = "default",
        explicit_profile: bool = False,
        store: ProfileStore | None = None,
    ) -> None:
        self.providers = tuple(providers)
        self.profile = profile
        self._explicit_profile = explicit_profile
        self._store = store

    async def resolve(self) -> tuple[Credentials, DescribedProvider]:
        """First credentials in order; NoCredentials lists why each provider had nothing."""
        if self._explicit_profile and self._store is not None:
            snapshot = await self._store.snapshot()
            if not snapshot.has_profile(self.profile):
                # botocore fails on a missing explicit profile instead of using other sources.
                raise CredentialError("profile", snapshot.where(self.profile))
        reasons: list[str] = []
        for provider in self.providers:
            credentials = await provider.load()
            if credentials is not None:
                return credentials, provider
            reasons.append(f"{provider.name}: {provider.describe()}")
        raise NoCredentials("no credentials: " + "; ".join(reasons))


def build_chain(
    config: CredentialsConfig,
    env: Mapping[str, str],
    sts: StsClient,
    session: aiohttp.ClientSession,
    clock: Clock,
    *,
    profile: str | None = None,
    mfa_code: str | None = None,
) -> CredentialChain:
    """The chain for this process: `profile` (e.g. --profile) beats `config.profile`."""
    name, explicit = select_profile(profile or config.profile, env)
    store = ProfileStore(ProfilePaths.from_env(env))
    sources = ProfileSources(env, store, sts, session, clock, config.process_timeout)
    providers: list[DescribedProvider] = []
    if not explicit:
        providers.append(sources.environment)
    providers.append(
        AssumeRoleProvider(store, name, sts, sources, clock, mfa_code=mfa_code or None)
    )
    providers.extend(sources.profile_providers(name, use_env=True))
    providers.extend([sources.container, sources.imds])
    return CredentialChain(providers, profile=name, explicit_profile=explicit, store=store)
