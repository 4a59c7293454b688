"""Web identity (EKS IRSA): an OIDC token file exchanged for role credentials.

AWS_ROLE_ARN / AWS_WEB_IDENTITY_TOKEN_FILE / AWS_ROLE_SESSION_NAME win over the profile keys
`role_arn` / `web_identity_token_file` / `role_session_name`. The token file is re-read at every
load because the kubelet rotates it; the call is unsigned (the token is the proof).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from proxy.clock import Clock
from proxy.credentials.base import Credentials
from proxy.credentials.profiles import ProfileStore
from proxy.credentials.sts import StsClient
from proxy.errors import CredentialError

WEB_IDENTITY_PROVIDER = "web-identity"
_MAX_TOKEN = 64 * 1024

_ENV_KEYS = {
    "role_arn": "AWS_ROLE_ARN",
    "web_identity_token_file": "AWS_WEB_IDENTITY_TOKEN_FILE",
    "role_session_name": "AWS_ROLE_SESSION_NAME",
}


def _read_token(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(_MAX_TOKEN).decode("utf-8").strip()


class WebIdentityProvider:
    """AssumeRoleWithWebIdentity from env variables or profile keys."""

    name = WEB_IDENTITY_PROVIDER

    def __init__(
        self,
        env: Mapping[str, str],
        store: ProfileStore,
        profile: str,
        sts: StsClient,
        clock: Clock,
        *,
        use_env: bool = True,
    ) -> None:
        self._env = env if use_env else {}
        self._store = store
        self._profile = profile
        self._sts = sts
        self._clock = clock

    async def _settings(self) -> dict[str, tuple[str, str]]:
        """Each setting with where it came from (a variable or the profile), for messages."""
        section = (await self._store.snapshot()).profile(self._profile)
        found: dict[str, tuple[str, str]] = {}
        for key, variable in _ENV_KEYS.items():
            if self._env.get(variable):
                found[key] = (self._env[variable], variable)
            elif section.get(key):
                found[key] = (section[key], f"profile [{self._profile}] {key}")
        return found

    async def load(self) -> Credentials | None:
        """None without a token file setting; a token file without a role is an error."""
        settings = await self._settings()
        if "web_identity_token_file" not in settings:
            return None
        token_file, token_source = settings["web_identity_token_file"]
        if "role_arn" not in settings:
            raise CredentialError(self.name, f"{token_source} is set but no role ARN is")
        role_arn = settings["role_arn"][0]
        try:
            token = await asyncio.to_thread(_read_token, Path(token_file))
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise CredentialError(
                self.name, f"{token_source} {token_file}: cannot read: {reason}"
            ) from None
        if not token:
            raise CredentialError(self.name, f"{token_source} {token_file}: file is empty")
        session_name = settings.get("role_session_name", ("", ""))[0] or (
            f"throttle-proxy-{int(self._clock.time())}"
        )
        return await self._sts.assume_role_with_web_identity(
            role_arn=role_arn, session_name=session_name, token=token, provider=self.name
        )

    def describe(self) -> str:
        """Why this provider had nothing."""
        return (
            "AWS_WEB_IDENTITY_TOKEN_FILE not set and "
            f"profile [{self._profile}] has no web_identity_token_file"
        )
