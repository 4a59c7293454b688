"""Instance-profile credentials from the EC2 instance metadata service (IMDS).

IMDSv2 first (a session token from `PUT /latest/api/token`, cached until near its TTL), IMDSv1
as the fallback when the token request is refused or times out. Static stability: credentials
that IMDS serves already close to expiry, or the last good ones when IMDS fails, are kept with a
short jittered extension so the refresher asks again in a few minutes instead of failing.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import aiohttp
import structlog
from yarl import URL

from proxy.clock import Clock
from proxy.credentials.base import Credentials
from proxy.credentials.timestamps import format_expiration, parse_expiration
from proxy.errors import CredentialError
from proxy.upstream.client import read_capped

DISABLED_VAR = "AWS_EC2_METADATA_DISABLED"
V1_DISABLED_VAR = "AWS_EC2_METADATA_V1_DISABLED"
ENDPOINT_VAR = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
ENDPOINT_MODE_VAR = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"
TIMEOUT_VAR = "AWS_METADATA_SERVICE_TIMEOUT"
ATTEMPTS_VAR = "AWS_METADATA_SERVICE_NUM_ATTEMPTS"

IPV4_ENDPOINT = "http://169.254.169.254/"
IPV6_ENDPOINT = "http://[fd00:ec2::254]/"
TOKEN_PATH = "latest/api/token"  # noqa: S105 - a URL path
ROLE_PATH = "latest/meta-data/iam/security-credentials/"
TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105
TOKEN_HEADER = "x-aws-ec2-metadata-token"  # noqa: S105 - a header name
TOKEN_TTL_SECONDS = 21600
# Ask for a new token this long before the old one lapses, so no GET races its expiry.
TOKEN_RENEW_MARGIN_SECONDS = 60.0

# Credentials expiring within the refresher's advisory window (15 min) are treated as stale;
# extending them past that window plus 5-10 min of jitter makes the refresher's next attempt
# land 5-10 min from now, spread across a fleet, instead of immediately and on every request.
STALE_WINDOW_SECONDS = 15 * 60.0
EXTENSION_JITTER_SECONDS = (5 * 60.0, 10 * 60.0)

# IAM role names: 1-64 characters of [\w+=,.@-]; anything else would alter the URL path.
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,128}")
_MAX_BODY = 64 * 1024
# Token PUT answers that mean "this IMDS does not do v2 here": fall back to v1.
_V1_FALLBACK_STATUSES = frozenset({403, 404, 405})

Jitter = Callable[[float, float], float]
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ImdsSettings:
    """Where and how to reach IMDS, from the environment; read once, at construction."""

    base_url: str  # always ends with "/"
    v1_disabled: bool = False
    timeout: float = 1.0
    attempts: int = 1


def settings_from_env(env: Mapping[str, str]) -> ImdsSettings:
    """Read the IMDS variables; raise CredentialError naming a variable with a bad value."""
    mode = env.get(ENDPOINT_MODE_VAR, "IPv4").strip().lower()
    if mode not in ("ipv4", "ipv6"):
        raise CredentialError("imds", f"{ENDPOINT_MODE_VAR} must be IPv4 or IPv6")
    base = env.get(ENDPOINT_VAR, "").strip() or (IPV6_ENDPOINT if mode == "ipv6" else IPV4_ENDPOINT)
    try:
        parsed = URL(base)
    except ValueError:
        raise CredentialError("imds", f"{ENDPOINT_VAR} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CredentialError("imds", f"{ENDPOINT_VAR} must be an http(s) URL with a host")
    return ImdsSettings(
        base_url=base.rstrip("/") + "/",
        v1_disabled=_is_true(env.get(V1_DISABLED_VAR)),
        timeout=_positive_number(env, TIMEOUT_VAR, 1.0),
        attempts=int(_positive_number(env, ATTEMPTS_VAR, 1, integer=True)),
    )


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _positive_number(
    env: Mapping[str, str], variable: str, default: float, *, integer: bool = False
) -> float:
    raw = env.get(variable)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = 0
    if value <= 0:
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise CredentialError("imds", f"{variable} must be {kind}, got {raw!r}")
    return value


class _NotAvailable(Exception):
    """IMDS gave no credentials and that is not an error (not on EC2, no role attached)."""


class InstanceMetadataProvider:
    """Credentials of the EC2 instance profile."""

    name = "imds"

    def __init__(
        self,
        env: Mapping[str, str],
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        jitter: Jitter = random.uniform,
    ) -> None:
        self._session = session
        self._clock = clock
        self._jitter = jitter
        self._disabled = _is_true(env.get(DISABLED_VAR))
        # A bad variable is reported by load(), not here: building the chain must not fail.
        self._settings_error: str | None = None
        try:
            self._settings = settings_from_env(env)
        except CredentialError as error:
            self._settings_error = error.message
            self._settings = ImdsSettings(base_url=IPV4_ENDPOINT)
        self._token: str | None = None
        self._token_renew_at = 0.0  # monotonic
        self._last_good: Credentials | None = None
        self._outcome = f"not tried yet ({self._settings.base_url})"

    def disabled_reason(self) -> str | None:
        """Why this provider will never answer, or None when it may."""
        return f"disabled by {DISABLED_VAR}" if self._disabled else None

    def describe(self) -> str:
        """What the last attempt found, for the "no credentials" message."""
        return self.disabled_reason() or self._outcome

    async def load(self) -> Credentials | None:
        """Fetch the instance-profile credentials; None when disabled or none are available."""
        if self._disabled:
            return None
        if self._settings_error is not None:
            raise CredentialError(self.name, self._settings_error)
        try:
            fetched = await self._fetch()
        except (CredentialError, _NotAvailable) as error:
            if self._last_good is not None:
                # Static stability: an IMDS outage must not take working credentials away.
                log.warning(
                    "imds-failed-keeping-previous-credentials",
                    error=str(error),
                    access_key_id=self._last_good.masked_key_id,
                )
                return self._extended(self._last_good)
            if isinstance(error, _NotAvailable):
                self._outcome = str(error)
                return None
            raise
        self._last_good = fetched
        self._outcome = f"credentials from {self._settings.base_url}"
        if fetched.expiry is not None and fetched.expiry - self._clock.time() < (
            STALE_WINDOW_SECONDS
        ):
            log.warning(
                "imds-credentials-near-expiry-extended",
                access_key_id=fetched.masked_key_id,
                expires=format_expiration(fetched.expiry),
            )
            return self._extended(fetched)
        return fetched

    def _extended(self, credentials: Credentials) -> Credentials:
        low, high = EXTENSION_JITTER_SECONDS
        expiry = self._clock.time() + STALE_WINDOW_SECONDS + self._jitter(low, high)
        return replace(credentials, expiry=expiry)

    async def _fetch(self) -> Credentials:
        # One token decision per fetch: after a v1 fallback the second GET does not ask again.
        token = await self._session_token(renew=False)
        role_text, token = await self._get(ROLE_PATH, token, what="the role list")
        role = role_text.strip().splitlines()[0].strip() if role_text.strip() else ""
        if not role:
            raise _NotAvailable("no IAM role attached to this instance")
        if not _ROLE_NAME.fullmatch(role):
            raise CredentialError("imds", f"{self._url(ROLE_PATH)}: not an IAM role name")
        path = ROLE_PATH + role
        text, _ = await self._get(path, token, what=f"role {role}")
        return self._parse(path, text)

    async def _get(self, path: str, token: str | None, *, what: str) -> tuple[str, str | None]:
        """GET a metadata path; on 401 renew the token once and retry. Returns (body, token)."""
        for is_retry in (False, True):
            headers = {TOKEN_HEADER: token} if token is not None else {}
            status, body = await self._send("GET", path, headers)
            if status == 200:
                return body.decode("utf-8", errors="replace"), token
            if status == 404:
                raise _NotAvailable(f"{self._url(path)} answered 404: no {what}")
            if status != 401 or token is None or is_retry:
                break
            # The cached token expired or IMDS restarted: drop it and ask for a new one.
            token = await self._session_token(renew=True)
        if status == 401 and token is None:
            raise CredentialError(
                "imds", f"{self._url(path)} answered 401 to an IMDSv1 request (v2 required)"
            )
        raise CredentialError("imds", f"{self._url(path)} answered HTTP {status}")

    async def _session_token(self, *, renew: bool) -> str | None:
        """The cached IMDSv2 token, a new one, or None to speak IMDSv1."""
        if renew:
            self._token = None
        if self._token is not None and self._clock.monotonic() < self._token_renew_at:
            return self._token
        self._token = None
        headers = {TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)}
        try:
            status, body = await self._send("PUT", TOKEN_PATH, headers, timeout_is_error=False)
        except TimeoutError:
            # A dropped PUT answer is what a hop limit of 1 looks like from a container.
            self._check_v1_allowed("timed out")
            return None
        if status in _V1_FALLBACK_STATUSES:
            self._check_v1_allowed(f"answered HTTP {status}")
            return None
        if status == 400:
            raise _NotAvailable(f"{self._url(TOKEN_PATH)} answered 400: no credentials")
        if status != 200:
            raise CredentialError("imds", f"{self._url(TOKEN_PATH)} answered HTTP {status}")
        token = body.decode("ascii", errors="replace").strip()
        if not token or "\r" in token or "\n" in token:
            raise CredentialError("imds", f"{self._url(TOKEN_PATH)} returned an unusable token")
        self._token = token
        self._token_renew_at = (
            self._clock.monotonic() + TOKEN_TTL_SECONDS - TOKEN_RENEW_MARGIN_SECONDS
        )
        return token

    def _check_v1_allowed(self, why: str) -> None:
        if self._settings.v1_disabled:
            raise CredentialError(
                "imds",
                f"IMDSv2 token request to {self._url(TOKEN_PATH)} {why} and IMDSv1 is off "
                f"({V1_DISABLED_VAR}=true)",
            )

    async def _send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        timeout_is_error: bool = True,
    ) -> tuple[int, bytes]:
        """One request with the configured attempts; aiohttp's errors are mapped here.

        Refused or timed-out connections mean "not on EC2" (_NotAvailable). A timeout after
        connecting is re-raised as TimeoutError when the caller handles it (the token PUT).
        """
        url = self._url(path)
        attempts = self._settings.attempts
        failure = ""
        for attempt in range(1, attempts + 1):
            try:
                status, body = await self._request_once(method, url, headers)
            except aiohttp.ConnectionTimeoutError:
                failure = f"no connection within {self._settings.timeout:g}s"
            except TimeoutError:
                if not timeout_is_error and attempt == attempts:
                    raise
                failure = f"no answer within {self._settings.timeout:g}s"
            except aiohttp.ClientError as error:
                failure = f"connection failed ({type(error).__name__})"
            else:
                if status < 500 or attempt == attempts:
                    return status, body
        plural = "s" if attempts > 1 else ""
        raise _NotAvailable(f"{url}: {failure} ({attempts} attempt{plural})")

    async def _request_once(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        async with self._session.request(
            method,
            url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            allow_redirects=False,
        ) as response:
            return response.status, await read_capped(response.content, _MAX_BODY)

    def _url(self, path: str) -> str:
        return self._settings.base_url + path

    def _parse(self, path: str, text: str) -> Credentials:
        where = self._url(path)
        try:
            document = json.loads(text)
        except ValueError:
            raise CredentialError("imds", f"{where}: answer is not JSON") from None
        if not isinstance(document, dict):
            raise CredentialError("imds", f"{where}: answer is not a JSON object")
        code = document.get("Code", "Success")
        if code != "Success":
            raise CredentialError("imds", f"{where}: Code {str(code)[:100]}")
        fields: dict[str, str] = {}
        for key in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration"):
            value = document.get(key)
            if not isinstance(value, str) or not value:
                raise CredentialError("imds", f"{where}: answer lacks {key}")
            fields[key] = value
        try:
            expiry = parse_expiration(fields["Expiration"])
        except ValueError as error:
            raise CredentialError("imds", f"{where}: Expiration: {error}") from None
        return Credentials(
            access_key_id=fields["AccessKeyId"],
            secret_access_key=fields["SecretAccessKey"],
            session_token=fields["Token"],
            expiry=expiry,
            provider=self.name,
        )
