"""The credential seam: a frozen snapshot and the provider protocol every source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Credentials:
    """One frozen snapshot: key, secret and token are always read together."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiry: float | None = None  # epoch seconds; None: never expires
    provider: str = "static"
    account_id: str | None = None  # when the source says (STS answers, AWS_ACCOUNT_ID)

    @property
    def masked_key_id(self) -> str:
        """Safe to log: the first 4 and last 4 characters."""
        key = self.access_key_id
        return f"{key[:4]}…{key[-4:]}" if len(key) > 8 else "****"


class CredentialProvider(Protocol):
    """One link of the chain.

    `load` returns None when this provider's source is not configured (the chain moves on),
    or raises CredentialError when the source is there but broken (the chain stops).
    """

    name: str

    async def load(self) -> Credentials | None: ...


class CredentialSource(Protocol):
    """What the request path asks for credentials: raises NoCredentials or MfaRequired."""

    async def get(self) -> Credentials: ...
