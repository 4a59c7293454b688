"""Credentials from the environment snapshot taken at start-up."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.credentials.base import Credentials
from proxy.credentials.timestamps import parse_expiration
from proxy.errors import CredentialError

ENV_PROVIDER = "env"


class EnvProvider:
    """AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION).

    The variables are read once, from the snapshot: the proxy never sees later changes to its
    own environment, and refreshing returns the same keys.
    """

    name = ENV_PROVIDER

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    async def load(self) -> Credentials | None:
        """The env keys; None when AWS_ACCESS_KEY_ID is unset; a half-set pair is an error."""
        key_id = self._env.get("AWS_ACCESS_KEY_ID", "")
        secret = self._env.get("AWS_SECRET_ACCESS_KEY", "")
        if not key_id and not secret:
            return None
        if not key_id:
            raise CredentialError(
                self.name, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
            )
        if not secret:
            raise CredentialError(
                self.name, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
            )
        # AWS_SECURITY_TOKEN is the name boto2 used; botocore still reads it.
        token = self._env.get("AWS_SESSION_TOKEN") or self._env.get("AWS_SECURITY_TOKEN") or None
        expiry: float | None = None
        expiration = self._env.get("AWS_CREDENTIAL_EXPIRATION", "")
        if expiration:
            try:
                expiry = parse_expiration(expiration)
            except ValueError as exc:
                raise CredentialError(self.name, f"AWS_CREDENTIAL_EXPIRATION: {exc}") from None
        account = self._env.get("AWS_ACCOUNT_ID") or None
        return Credentials(key_id, secret, token, expiry, self.name, account)

    def describe(self) -> str:
        """Why this provider had nothing."""
        return "AWS_ACCESS_KEY_ID not set"
