"""What /readyz answers: ready only when credentials resolve (and, via the server, not draining)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from proxy.credentials.base import CredentialSource
from proxy.errors import NoCredentials


@runtime_checkable
class ReportsStatus(Protocol):
    """A credential source that can say whether it is usable without being asked to load."""

    def status(self) -> tuple[bool, str]: ...


class ReadinessProbe:
    """Checks the current credential source; the server sets `credentials` once it has one."""

    def __init__(self) -> None:
        self.credentials: CredentialSource | None = None
        # The routes' own identities: ready only when every one is (see IdentityKeeper).
        self.identities: Callable[[], tuple[bool, list[str]]] | None = None

    async def check(self) -> tuple[bool, str]:
        ready, message = await self._check_default()
        if self.identities is None:
            return ready, message
        others_ready, lines = self.identities()
        return ready and others_ready, "\n".join([message, *lines])

    async def _check_default(self) -> tuple[bool, str]:
        source = self.credentials
        if source is None:
            return False, "starting"
        if isinstance(source, ReportsStatus):
            return source.status()
        try:
            creds = await source.get()
        except NoCredentials as error:
            return False, f"{error.reason}: {error.message}"
        return True, f"ready: credentials from {creds.provider}"
