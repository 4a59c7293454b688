"""Assume a role from a profile: `role_arn` with `source_profile` or `credential_source`.

The profile is read afresh at every load, the source credentials are loaded, then STS
AssumeRole is called through the proxy's own signer. A profile with `mfa_serial` uses the code
given at start-up once; after that the session cannot be refreshed and the provider raises
MfaRequired so the proxy can say so.
"""

from __future__ import annotations

from typing import Protocol

from proxy.clock import Clock
from proxy.credentials.base import CredentialProvider, Credentials
from proxy.credentials.profiles import ProfileSnapshot, ProfileStore, Section
from proxy.credentials.sts import StsClient
from proxy.errors import CredentialError, MfaRequired

ASSUME_ROLE_PROVIDER = "assume-role"
CREDENTIAL_SOURCES = ("Environment", "Ec2InstanceMetadata", "EcsContainer")


class SourceResolver(Protocol):
    """Builds the provider that yields an assume-role profile's source credentials."""

    def for_profile(
        self, name: str, snapshot: ProfileSnapshot, visited: tuple[str, ...]
    ) -> CredentialProvider:
        """The credentials of `source_profile = name`."""
        ...

    def for_credential_source(self, source: str) -> CredentialProvider:
        """One of CREDENTIAL_SOURCES (already validated)."""
        ...


def has_static_keys(section: Section) -> bool:
    return bool(section.get("aws_access_key_id"))


def _duration(section: Section, where: str) -> int | None:
    text = section.get("duration_seconds")
    if not text:
        return None
    if not text.isdigit() or not 900 <= int(text) <= 43200:
        raise CredentialError(
            ASSUME_ROLE_PROVIDER, f"{where}: duration_seconds must be 900-43200, got {text!r}"
        )
    return int(text)


class AssumeRoleProvider:
    """STS AssumeRole for one profile (possibly a link in a source_profile chain)."""

    name = ASSUME_ROLE_PROVIDER

    def __init__(
        self,
        store: ProfileStore,
        profile: str,
        sts: StsClient,
        sources: SourceResolver,
        clock: Clock,
        *,
        mfa_code: str | None = None,
        visited: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._profile = profile
        self._sts = sts
        self._sources = sources
        self._clock = clock
        self._mfa_code = mfa_code
        self._visited = visited

    async def load(self) -> Credentials | None:
        """None unless the profile has role_arn plus a source; errors name the profile."""
        snapshot = await self._store.snapshot()
        section = snapshot.profile(self._profile)
        role_arn = section.get("role_arn")
        source_profile = section.get("source_profile")
        credential_source = section.get("credential_source")
        if not role_arn or not (source_profile or credential_source):
            return None
        where = f"profile [{self._profile}]"
        source = self._source(snapshot, where, source_profile, credential_source)
        # Before loading the source: without a code its keys are useless, and the error that
        # matters (mfa-required) must not be masked by a source that happens to fail too.
        token_code = self._take_mfa_code(section, where)
        source_credentials = await source.load()
        if source_credentials is None:
            origin = (
                f"source_profile [{source_profile}]"
                if source_profile
                else f"credential_source {credential_source}"
            )
            raise CredentialError(self.name, f"{where}: {origin} yielded no credentials")
        credentials = await self._sts.assume_role(
            source_credentials,
            role_arn=role_arn,
            session_name=section.get("role_session_name")
            or f"throttle-proxy-{int(self._clock.time())}",
            provider=self.name,
            external_id=section.get("external_id") or None,
            duration_seconds=_duration(section, where),
            serial_number=section.get("mfa_serial") or None,
            token_code=token_code,
        )
        if token_code is not None:
            # STS refuses a code twice; from now on only a new code (a restart) can refresh.
            self._mfa_code = None
        return credentials

    def _source(
        self,
        snapshot: ProfileSnapshot,
        where: str,
        source_profile: str | None,
        credential_source: str | None,
    ) -> CredentialProvider:
        if source_profile and credential_source:
            raise CredentialError(
                self.name, f"{where}: has both source_profile and credential_source"
            )
        if credential_source:
            if credential_source not in CREDENTIAL_SOURCES:
                raise CredentialError(
                    self.name,
                    f"{where}: credential_source {credential_source!r} is not one of "
                    f"{', '.join(CREDENTIAL_SOURCES)}",
                )
            return self._sources.for_credential_source(credential_source)
        assert source_profile is not None
        visited = (*self._visited, self._profile)
        if not snapshot.has_profile(source_profile):
            raise CredentialError(
                self.name, f"{where}: source_profile: {snapshot.where(source_profile)}"
            )
        if source_profile in visited:
            # A profile may name itself to use its own static keys; any other loop is an error.
            is_self = source_profile == self._profile
            if not (is_self and has_static_keys(snapshot.profile(source_profile))):
                loop = " -> ".join((*visited, source_profile))
                raise CredentialError(self.name, f"{where}: source_profile loop: {loop}")
        return self._sources.for_profile(source_profile, snapshot, visited)

    def _take_mfa_code(self, section: Section, where: str) -> str | None:
        serial = section.get("mfa_serial")
        if not serial:
            return None
        if self._mfa_code is None:
            raise MfaRequired(
                f"{self.name}: {where} needs a new MFA code for {serial}: restart with "
                "--mfa-code or THROTTLE_PROXY_MFA_CODE"
            )
        return self._mfa_code

    def describe(self) -> str:
        """Why this provider had nothing."""
        return f"profile [{self._profile}] has no role_arn with source_profile/credential_source"
