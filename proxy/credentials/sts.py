"""The proxy's own STS client: four query-protocol calls signed with the proxy's signer.

Endpoint: AWS_ENDPOINT_URL_STS, then AWS_ENDPOINT_URL, then `https://sts.<region>.amazonaws.com`.
Every failure becomes a CredentialError carrying STS's own code and message (or the transport
problem), never a secret: request bodies and response credentials are not quoted.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from proxy.clock import Clock
from proxy.credentials.base import Credentials
from proxy.credentials.identities import account_of_arn
from proxy.credentials.timestamps import parse_expiration
from proxy.errors import CredentialError
from proxy.signing.sigv4 import SigningInput, SigningKeyCache, sign

STS_VERSION = "2011-06-15"
_FORM = "application/x-www-form-urlencoded; charset=utf-8"
_MAX_ANSWER = 1024 * 1024


def sts_endpoint(env: Mapping[str, str], region: str) -> str:
    """Where the proxy's own STS calls go (the SDKs' endpoint-override order)."""
    for variable in ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"):
        if env.get(variable):
            return env[variable].rstrip("/")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}"


@dataclass(frozen=True)
class CallerIdentity:
    """GetCallerIdentity's answer."""

    account: str
    arn: str
    user_id: str


def _host_header(parts: URL) -> str:
    host = parts.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return host if parts.is_default_port() else f"{host}:{parts.port}"


class StsClient:
    """Calls STS through the shared upstream session; signs each call with a fresh SigV4."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        region: str,
        clock: Clock,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._endpoint = URL(endpoint)
        self._region = region
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._keys = SigningKeyCache()

    @property
    def endpoint(self) -> str:
        return str(self._endpoint)

    @property
    def region(self) -> str:
        """The region every call is signed for."""
        return self._region

    async def assume_role(
        self,
        source: Credentials,
        *,
        role_arn: str,
        session_name: str,
        provider: str,
        external_id: str | None = None,
        duration_seconds: int | None = None,
        serial_number: str | None = None,
        token_code: str | None = None,
    ) -> Credentials:
        """Signed AssumeRole with the source credentials."""
        params = {"RoleArn": role_arn, "RoleSessionName": session_name}
        optional = {
            "ExternalId": external_id,
            "DurationSeconds": None if duration_seconds is None else str(duration_seconds),
            "SerialNumber": serial_number,
            "TokenCode": token_code,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        root = await self._call("AssumeRole", params, source, provider, f"role {role_arn}")
        return _credentials(root, provider, "AssumeRole")

    async def assume_role_with_web_identity(
        self,
        *,
        role_arn: str,
        session_name: str,
        token: str,
        provider: str,
        duration_seconds: int | None = None,
    ) -> Credentials:
        """Unsigned AssumeRoleWithWebIdentity: the web identity token is the proof."""
        params = {"RoleArn": role_arn, "RoleSessionName": session_name, "WebIdentityToken": token}
        if duration_seconds is not None:
            params["DurationSeconds"] = str(duration_seconds)
        root = await self._call(
            "AssumeRoleWithWebIdentity", params, None, provider, f"role {role_arn}"
        )
        return _credentials(root, provider, "AssumeRoleWithWebIdentity")

    async def get_session_token(
        self,
        source: Credentials,
        *,
        provider: str,
        serial_number: str | None = None,
        token_code: str | None = None,
        duration_seconds: int | None = None,
    ) -> Credentials:
        """Signed GetSessionToken with long-term keys (MFA code optional)."""
        params: dict[str, str] = {}
        if serial_number is not None:
            params["SerialNumber"] = serial_number
        if token_code is not None:
            params["TokenCode"] = token_code
        if duration_seconds is not None:
            params["DurationSeconds"] = str(duration_seconds)
        root = await self._call("GetSessionToken", params, source, provider, "session token")
        return _credentials(root, provider, "GetSessionToken")

    async def get_caller_identity(self, source: Credentials) -> CallerIdentity:
        """Signed GetCallerIdentity: who the credentials are."""
        root = await self._call("GetCallerIdentity", {}, source, source.provider, "identity")
        return CallerIdentity(
            account=_text(root, "Account"), arn=_text(root, "Arn"), user_id=_text(root, "UserId")
        )

    async def _call(
        self,
        action: str,
        params: Mapping[str, str],
        creds: Credentials | None,
        provider: str,
        what: str,
    ) -> ET.Element:
        body = urlencode({"Action": action, "Version": STS_VERSION, **params}).encode()
        path = self._endpoint.raw_path or "/"
        headers: list[tuple[str, str]] = [("Content-Type", _FORM)]
        query = ""
        if creds is not None:
            signed = sign(
                SigningInput(
                    method="POST",
                    host=_host_header(self._endpoint),
                    path=path,
                    query="",
                    headers=headers,
                    payload_hash=hashlib.sha256(body).hexdigest(),
                    service="sts",
                    region=self._region,
                ),
                creds,
                self._clock.time(),
                self._keys,
            )
            path, query, headers = signed.path, signed.query, signed.headers
        url = self._endpoint.with_path(path, encoded=True).with_query(None)
        target = URL(f"{url}?{query}", encoded=True) if query else url
        where = f"STS {action} ({what}) at {self._endpoint.origin()}"
        try:
            async with self._session.post(
                target, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as answer:
                text = await _read_capped(answer.content)
                status = answer.status
        except TimeoutError:
            raise CredentialError(provider, f"{where}: timed out") from None
        except aiohttp.ClientError as exc:
            raise CredentialError(provider, f"{where}: {type(exc).__name__}: {exc}") from None
        root = _parse(text)
        if status != 200:
            code = _text(root, "Code") if root is not None else ""
            message = _text(root, "Message") if root is not None else ""
            detail = f"{code}: {message}" if code else f"HTTP {status}"
            raise CredentialError(provider, f"{where}: {detail}")
        if root is None:
            raise CredentialError(provider, f"{where}: answer is not XML")
        return root


async def _read_capped(stream: aiohttp.StreamReader) -> bytes:
    # read(n) may return less than n: collect chunks until EOF or the cap.
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_ANSWER:
        chunk = await stream.read(_MAX_ANSWER - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse(text: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(text)  # noqa: S314 - STS answers, capped in size, no DTDs used
    except ET.ParseError:
        return None


def _find(root: ET.Element, name: str) -> ET.Element | None:
    # STS answers are namespaced; match on the local name so any version/namespace works.
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == name:
            return element
    return None


def _text(root: ET.Element, name: str) -> str:
    element = _find(root, name)
    return (element.text or "").strip() if element is not None else ""


def _credentials(root: ET.Element, provider: str, action: str) -> Credentials:
    block = _find(root, "Credentials")
    if block is None:
        raise CredentialError(provider, f"STS {action}: answer has no Credentials")
    key_id, secret = _text(block, "AccessKeyId"), _text(block, "SecretAccessKey")
    token, expiration = _text(block, "SessionToken"), _text(block, "Expiration")
    if not (key_id and secret and token and expiration):
        raise CredentialError(provider, f"STS {action}: answer has incomplete Credentials")
    try:
        expiry = parse_expiration(expiration)
    except ValueError as exc:
        raise CredentialError(provider, f"STS {action}: Expiration: {exc}") from None
    # AssumeRole* answers name the role session: its ARN holds the account (rate limits).
    user = _find(root, "AssumedRoleUser")
    account = account_of_arn(_text(user, "Arn")) if user is not None else None
    return Credentials(key_id, secret, token, expiry, provider, account)
