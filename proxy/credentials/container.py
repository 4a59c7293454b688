"""Container credentials: the ECS task role and EKS Pod Identity endpoints.

The agent publishes a URL in the task's environment; we GET it (with an Authorization header
when one is configured) and read `AccessKeyId, SecretAccessKey, Token, Expiration`. The URL
rules are pure functions here so they can be tested without a network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from proxy.clock import Clock
from proxy.credentials.base import Credentials
from proxy.credentials.timestamps import parse_expiration
from proxy.errors import CredentialError
from proxy.upstream.client import read_capped

RELATIVE_URI_VAR = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
FULL_URI_VAR = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
TOKEN_FILE_VAR = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"  # noqa: S105 - a variable name
TOKEN_VAR = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105 - a variable name

ECS_ENDPOINT = "http://169.254.170.2"
# Plain http is allowed only to addresses that never leave the host or the task's link-local
# agents (ECS 169.254.170.2, EKS Pod Identity 169.254.170.23 / fd00:ec2::23): anywhere else the
# Authorization token and the credentials would cross a network in clear text.
_PLAIN_HTTP_HOSTS = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"})

TIMEOUT_SECONDS = 2.0
ATTEMPTS = 3
RETRY_DELAY_SECONDS = 1.0
# A credentials document is well under 4 KiB; the cap stops a wrong URL from filling memory.
_MAX_BODY = 64 * 1024

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ContainerEndpoint:
    """Where to fetch from, and which variable said so (for error messages)."""

    url: URL
    variable: str

    @property
    def display(self) -> str:
        """The URL without query or user info, which may carry secrets."""
        return str(self.url.with_query(None).with_fragment(None).with_user(None))


def resolve_endpoint(env: Mapping[str, str]) -> ContainerEndpoint | None:
    """The endpoint named by the environment; None when neither variable is set.

    The relative URI wins over the full URI, as in the AWS SDKs.
    """
    relative = env.get(RELATIVE_URI_VAR)
    if relative:
        if not relative.startswith("/"):
            raise CredentialError("container", f"{RELATIVE_URI_VAR} must start with '/'")
        return ContainerEndpoint(URL(ECS_ENDPOINT + relative), RELATIVE_URI_VAR)
    full = env.get(FULL_URI_VAR)
    if full:
        return ContainerEndpoint(check_full_uri(full), FULL_URI_VAR)
    return None


def check_full_uri(uri: str) -> URL:
    """Parse AWS_CONTAINER_CREDENTIALS_FULL_URI: https to any host, http only to local agents."""
    try:
        url = URL(uri)
    except ValueError:
        raise CredentialError("container", f"{FULL_URI_VAR} is not a URL") from None
    host = (url.host or "").lower()
    if url.scheme == "https" and host:
        return url
    if url.scheme == "http" and host and _is_allowed_plain_http_host(host):
        return url
    raise CredentialError(
        "container",
        f"{FULL_URI_VAR} must be https, or http to loopback, localhost, 169.254.170.2, "
        f"169.254.170.23 or fd00:ec2::23; got {url.scheme}://{host or '?'}",
    )


def _is_allowed_plain_http_host(host: str) -> bool:
    if host in _PLAIN_HTTP_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or str(address) in _PLAIN_HTTP_HOSTS


def check_header_value(value: str, source: str) -> str:
    """Reject an Authorization value with CR or LF: it would inject headers."""
    if "\r" in value or "\n" in value:
        raise CredentialError("container", f"{source} contains a CR or LF character")
    return value


class ContainerProvider:
    """Credentials from the ECS / EKS Pod Identity container endpoint."""

    name = "container"

    def __init__(
        self,
        env: Mapping[str, str],
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._env = dict(env)
        self._session = session
        self._clock = clock
        self._sleep = sleep

    def describe(self) -> str:
        """What this provider tries, for the "no credentials" message."""
        if not self._env.get(RELATIVE_URI_VAR) and not self._env.get(FULL_URI_VAR):
            return f"{RELATIVE_URI_VAR} and {FULL_URI_VAR} not set"
        try:
            endpoint = resolve_endpoint(self._env)
        except CredentialError as error:
            return error.message
        return f"endpoint {endpoint.display} from {endpoint.variable}" if endpoint else ""

    async def load(self) -> Credentials | None:
        """Fetch credentials; None when no container endpoint is configured."""
        endpoint = resolve_endpoint(self._env)
        if endpoint is None:
            return None
        headers = {"Accept": "application/json"}
        authorization = await self._authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        document = await self._fetch(endpoint, headers)
        return self._parse(endpoint, document)

    async def _authorization(self) -> str | None:
        token_file = self._env.get(TOKEN_FILE_VAR)
        if token_file:
            # Re-read on every fetch: EKS rotates the projected token file.
            try:
                value = await asyncio.to_thread(Path(token_file).read_text, encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or type(error).__name__
                raise CredentialError(
                    "container", f"{TOKEN_FILE_VAR} {token_file}: cannot read: {reason}"
                ) from None
            return check_header_value(value, f"{TOKEN_FILE_VAR} {token_file}")
        token = self._env.get(TOKEN_VAR)
        if token:
            return check_header_value(token, TOKEN_VAR)
        return None

    async def _fetch(self, endpoint: ContainerEndpoint, headers: dict[str, str]) -> object:
        failure = ""
        for attempt in range(1, ATTEMPTS + 1):
            if attempt > 1:
                await self._sleep(RETRY_DELAY_SECONDS)
            try:
                status, body = await self._get(endpoint.url, headers)
            except TimeoutError:
                failure = f"no answer within {TIMEOUT_SECONDS:g}s"
                continue
            except aiohttp.ClientError as error:
                failure = f"connection failed ({type(error).__name__})"
                continue
            if status == 200:
                try:
                    return json.loads(body)
                except ValueError:
                    failure = "answer is not JSON"
                    continue
            failure = f"HTTP {status}{_error_summary(body)}"
            # 4xx other than 429 means a wrong token or URL: asking again will not help.
            if status < 500 and status != 429:
                break
        raise CredentialError(
            "container", f"{endpoint.display} (from {endpoint.variable}): {failure}"
        )

    async def _get(self, url: URL, headers: Mapping[str, str]) -> tuple[int, bytes]:
        async with self._session.get(
            url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
            # A redirect could carry the Authorization header to another host.
            allow_redirects=False,
        ) as response:
            body = await read_capped(response.content, _MAX_BODY)
            return response.status, body

    def _parse(self, endpoint: ContainerEndpoint, document: object) -> Credentials:
        where = f"{endpoint.display} (from {endpoint.variable})"
        if not isinstance(document, dict):
            raise CredentialError("container", f"{where}: answer is not a JSON object")
        key_id = document.get("AccessKeyId")
        secret = document.get("SecretAccessKey")
        if not isinstance(key_id, str) or not key_id:
            raise CredentialError("container", f"{where}: answer lacks AccessKeyId")
        if not isinstance(secret, str) or not secret:
            raise CredentialError("container", f"{where}: answer lacks SecretAccessKey")
        token = document.get("Token")
        expiration = document.get("Expiration")
        expiry: float | None = None
        if isinstance(expiration, str):
            try:
                expiry = parse_expiration(expiration)
            except ValueError as error:
                raise CredentialError("container", f"{where}: Expiration: {error}") from None
        return Credentials(
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token if isinstance(token, str) and token else None,
            expiry=expiry,
            provider=self.name,
        )


def _error_summary(body: bytes) -> str:
    """The agent's error code and message, if it sent the usual JSON error document."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    parts = [str(document[k])[:200] for k in ("code", "message") if k in document]
    return f": {' '.join(parts)}" if parts else ""
