"""The identities a proxy signs as: the top-level chain (`default`) and each route's own.

A request is bound to one identity when it is routed, from the same config snapshot as its
route, and keeps it for every attempt: a reload that changes routes never signs a request in
flight as another identity. The identity also says whose budget a request spends: AWS
throttles per account, so rate-limit buckets are keyed by the account, known from a route's
`role_arn` before any call (the account id is part of the ARN), else from the credentials
themselves (the account of the assumed role or web identity in STS's answer, or
AWS_ACCOUNT_ID / `aws_account_id`), else by the identity's name until it is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from proxy.config.routes import RouteCredentials
from proxy.credentials.base import Credentials, CredentialSource

DEFAULT_IDENTITY = "default"


def account_of_arn(arn: str) -> str | None:
    """The account id in `arn:partition:service:region:account:resource`, when there is one."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[4].isdigit() and len(parts[4]) == 12:
        return parts[4]
    return None


@dataclass(frozen=True)
class Identity:
    """One named identity: its refreshing credentials and what is known of its account."""

    name: str
    source: CredentialSource
    account: str | None = None  # from the configured role ARN, when there is one
    role_arn: str | None = None
    settings: RouteCredentials | None = None  # a route identity's config (None: top-level)

    @property
    def budget_account(self) -> str:
        """Whose rate-limit budget this identity's calls spend: its account, or its name
        while the account is not known."""
        if self.account is not None:
            return self.account
        current: Credentials | None = getattr(self.source, "current", None)
        if current is not None and current.account_id:
            return current.account_id
        return self.name


class Identities:
    """Every identity of one config, by name; `default` is the top-level chain."""

    def __init__(self, identities: Mapping[str, Identity]) -> None:
        if DEFAULT_IDENTITY not in identities:
            raise ValueError("the default identity is required")
        self._by_name = dict(identities)
        self.default = self._by_name[DEFAULT_IDENTITY]

    @classmethod
    def single(cls, source: CredentialSource) -> Identities:
        """Only the top-level chain."""
        return cls({DEFAULT_IDENTITY: Identity(DEFAULT_IDENTITY, source)})

    def get(self, name: str | None) -> Identity:
        """The identity a route names (None: the top-level chain)."""
        return self.default if name is None else self._by_name[name]

    def __iter__(self) -> Iterator[Identity]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
