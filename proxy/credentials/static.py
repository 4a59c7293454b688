"""Static keys from a profile of the shared credentials file or of the config file.

Both providers re-read their file through the `ProfileStore` at each load, so keys written by
`throttle-proxy mfa` (with an `expiration` key, honoured as the expiry) replace the old ones
without a restart.
"""

from __future__ import annotations

from pathlib import Path

from proxy.credentials.base import Credentials
from proxy.credentials.profiles import (
    CONFIG_FILE_PROVIDER,
    CREDENTIALS_FILE_PROVIDER,
    ProfileSnapshot,
    ProfileStore,
    Section,
)
from proxy.credentials.timestamps import parse_expiration
from proxy.errors import CredentialError


def static_keys(section: Section, where: str, provider: str) -> Credentials | None:
    """Keys of one profile section, None when it has none; half a pair is an error."""
    key_id = section.get("aws_access_key_id", "")
    secret = section.get("aws_secret_access_key", "")
    if not key_id and not secret:
        return None
    if not key_id:
        raise CredentialError(provider, f"{where}: missing aws_access_key_id")
    if not secret:
        raise CredentialError(provider, f"{where}: missing aws_secret_access_key")
    token = section.get("aws_session_token") or section.get("aws_security_token") or None
    expiry: float | None = None
    expiration = section.get("expiration") or section.get("aws_expiration")
    if expiration:
        try:
            expiry = parse_expiration(expiration)
        except ValueError as exc:
            raise CredentialError(provider, f"{where}: expiration: {exc}") from None
    return Credentials(key_id, secret, token, expiry, provider)


class _ProfileFileProvider:
    """Shared logic of the two file providers; subclasses say which file they read."""

    name: str

    def __init__(self, store: ProfileStore, profile: str) -> None:
        self._store = store
        self._profile = profile
        self._reason = "not tried yet"

    def _file(self, snapshot: ProfileSnapshot) -> tuple[Path, bool, Section | None]:
        raise NotImplementedError

    async def load(self) -> Credentials | None:
        """The profile's keys, None when the file, the profile or the keys are absent."""
        path, found, section = self._file(await self._store.snapshot())
        if not found:
            self._reason = f"{path} not found"
            return None
        if section is None:
            self._reason = f"{path}: no profile [{self._profile}]"
            return None
        where = f"{path}: profile [{self._profile}]"
        credentials = static_keys(section, where, self.name)
        if credentials is None:
            self._reason = f"{where}: no aws_access_key_id"
        return credentials

    def describe(self) -> str:
        """Why the last load found nothing."""
        return self._reason

    async def source_changed(self) -> bool:
        """True when a file was rewritten since the last load (the refresher polls this)."""
        return await self._store.changed()


class SharedCredentialsProvider(_ProfileFileProvider):
    """`~/.aws/credentials` (or AWS_SHARED_CREDENTIALS_FILE), section `[name]`."""

    name = CREDENTIALS_FILE_PROVIDER

    def _file(self, snapshot: ProfileSnapshot) -> tuple[Path, bool, Section | None]:
        return (
            snapshot.paths.credentials,
            snapshot.credentials_found,
            snapshot.credentials.get(self._profile),
        )


class ConfigFileProvider(_ProfileFileProvider):
    """`~/.aws/config` (or AWS_CONFIG_FILE), section `[profile name]` or `[default]`."""

    name = CONFIG_FILE_PROVIDER

    def _file(self, snapshot: ProfileSnapshot) -> tuple[Path, bool, Section | None]:
        return snapshot.paths.config, snapshot.config_found, snapshot.config.get(self._profile)
