"""`throttle-proxy mfa`: trade long-term keys and an MFA code for session credentials.

The aws-mfa convention: long-term keys live in `[NAME-long-term]`; GetSessionToken's answer is
written to `[NAME]` of the shared credentials file with an `expiration` key. The file is
replaced atomically (temp file in the same directory, mode 0600, os.replace) so a running proxy
never reads half a file, and its file watcher picks the new keys up without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from proxy.clock import Clock
from proxy.config.model import Config
from proxy.credentials.base import Credentials
from proxy.credentials.chain import build_chain
from proxy.credentials.profiles import (
    CREDENTIALS_FILE_PROVIDER,
    ProfilePaths,
    ProfileStore,
    select_profile,
)
from proxy.credentials.static import static_keys
from proxy.credentials.sts import StsClient
from proxy.credentials.timestamps import format_expiration
from proxy.errors import CredentialError

MFA_PROVIDER = "mfa"
_TOKEN_CODE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class MfaRequest:
    """What the user typed: `--serial-number`, `--token-code`, optional duration and profile."""

    serial_number: str
    token_code: str
    duration_seconds: int | None = None
    profile: str | None = None

    def check(self) -> None:
        """Reject bad input before calling STS (the code is not a secret worth hiding)."""
        if not self.serial_number:
            raise CredentialError(MFA_PROVIDER, "--serial-number is empty")
        if not _TOKEN_CODE.match(self.token_code):
            raise CredentialError(MFA_PROVIDER, "--token-code must be 6 digits")
        duration = self.duration_seconds
        if duration is not None and not 900 <= duration <= 129600:
            raise CredentialError(MFA_PROVIDER, "--duration-seconds must be 900-129600")


@dataclass(frozen=True)
class MfaResult:
    """Where the session went and which keys paid for it (no secrets)."""

    profile: str
    path: Path
    expiry: float | None
    source: str
    masked_key_id: str

    def render(self) -> str:
        expires = "never" if self.expiry is None else format_expiration(self.expiry)
        return (
            f"wrote session credentials {self.masked_key_id} to [{self.profile}] in {self.path} "
            f"(expires {expires}; long-term keys from {self.source})"
        )


def replace_section(text: str, name: str, values: Mapping[str, str]) -> str:
    """`text` with section `[name]` replaced by `values` (appended when absent).

    Other sections, comments and order are kept byte for byte.
    """
    block = [f"[{name}]", *(f"{key} = {value}" for key, value in values.items())]
    out: list[str] = []
    replaced = skipping = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            skipping = stripped[1:-1].strip() == name
            if skipping:
                if not replaced:
                    out.extend(block)
                    replaced = True
                continue
        if not skipping:
            out.append(line)
    if not replaced:
        if out and out[-1].strip():
            out.append("")
        out.extend(block)
    return "\n".join(out) + "\n"


def write_profile(path: Path, name: str, credentials: Credentials) -> None:
    """Write `[name]` atomically with mode 0600 (blocking: call it in a thread)."""
    values = {
        "aws_access_key_id": credentials.access_key_id,
        "aws_secret_access_key": credentials.secret_access_key,
    }
    if credentials.session_token:
        values["aws_session_token"] = credentials.session_token
    if credentials.expiry is not None:
        values["expiration"] = format_expiration(credentials.expiry)
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(replace_section(current, name, values))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


async def run_mfa(
    request: MfaRequest,
    config: Config,
    env: Mapping[str, str],
    sts: StsClient,
    session: aiohttp.ClientSession,
    clock: Clock,
) -> MfaResult:
    """GetSessionToken with `[NAME-long-term]` keys (else the chain) and write `[NAME]`."""
    request.check()
    name, _ = select_profile(request.profile or config.credentials.profile, env)
    paths = ProfilePaths.from_env(env)
    snapshot = await ProfileStore(paths).snapshot()
    long_term = f"{name}-long-term"
    source = static_keys(
        snapshot.profile(long_term), f"profile [{long_term}]", CREDENTIALS_FILE_PROVIDER
    )
    source_label = f"[{long_term}]"
    if source is None:
        chain = build_chain(config.credentials, env, sts, session, clock)
        source, provider = await chain.resolve()
        source_label = f"the credential chain ({provider.name})"
    session_credentials = await sts.get_session_token(
        source,
        provider=MFA_PROVIDER,
        serial_number=request.serial_number,
        token_code=request.token_code,
        duration_seconds=request.duration_seconds,
    )
    await asyncio.to_thread(write_profile, paths.credentials, name, session_credentials)
    return MfaResult(
        profile=name,
        path=paths.credentials,
        expiry=session_credentials.expiry,
        source=source_label,
        masked_key_id=session_credentials.masked_key_id,
    )
