"""The shared credentials and config files: paths, parsing, profile selection.

`ProfileStore` re-reads a file only when its mtime or size changed, so every provider can ask
for a fresh snapshot on every load (a profile written by `throttle-proxy mfa` is seen without a
restart) while the parse itself happens once per change.
"""

from __future__ import annotations

import asyncio
import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from proxy.errors import CredentialError

CREDENTIALS_FILE_PROVIDER = "shared-credentials-file"
CONFIG_FILE_PROVIDER = "config-file"

Section = Mapping[str, str]
_EMPTY: Section = MappingProxyType({})


def select_profile(explicit: str | None, env: Mapping[str, str]) -> tuple[str, bool]:
    """The profile to use and whether it was chosen explicitly (an explicit one skips env).

    `--profile` / `credentials.profile` first, then AWS_DEFAULT_PROFILE, then AWS_PROFILE.
    """
    if explicit:
        return explicit, True
    for variable in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):
        if env.get(variable):
            return env[variable], False
    return "default", False


def _expand(path: str, env: Mapping[str, str]) -> Path:
    if path.startswith("~") and env.get("HOME"):
        path = env["HOME"] + path[1:]
    return Path(os.path.expanduser(path))


@dataclass(frozen=True)
class ProfilePaths:
    """Where the two files live, from the env snapshot taken at start-up."""

    credentials: Path
    config: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProfilePaths:
        return cls(
            credentials=_expand(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), env),
            config=_expand(env.get("AWS_CONFIG_FILE", "~/.aws/config"), env),
        )


def parse_ini(text: str, path: Path, provider: str, is_config: bool) -> dict[str, Section]:
    """Sections of one file by profile name; `[profile x]` means `x` in the config file.

    Raises CredentialError naming the file when the text is not an INI file.
    """
    parser = configparser.RawConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise CredentialError(provider, f"{path}: not a valid INI file: {first_line}") from None
    profiles: dict[str, Section] = {}
    for section in parser.sections():
        name = section.strip()
        if is_config:
            if name.startswith("profile "):
                name = name[len("profile ") :].strip()
            elif name != "default":
                continue  # [sso-session x], [services x]: not profiles
        values = {key.lower(): value.strip() for key, value in parser.items(section)}
        # In the config file `[profile default]` wins over `[default]`, as in botocore.
        if name in profiles and section.strip() == "default":
            continue
        profiles[name] = MappingProxyType(values)
    return profiles


@dataclass(frozen=True)
class ProfileSnapshot:
    """Both files as they were at one moment; credentials-file values win when merged."""

    paths: ProfilePaths
    credentials: Mapping[str, Section] = field(default_factory=dict)
    config: Mapping[str, Section] = field(default_factory=dict)
    credentials_found: bool = False
    config_found: bool = False

    def has_profile(self, name: str) -> bool:
        return name in self.credentials or name in self.config

    def profile(self, name: str) -> Section:
        """One profile's keys from both files; the credentials file wins on conflicts."""
        merged = dict(self.config.get(name, _EMPTY))
        merged.update(self.credentials.get(name, _EMPTY))
        return merged

    def where(self, name: str) -> str:
        """Human text for 'profile [x] not found in ...' messages."""
        return f"profile [{name}] not found in {self.paths.credentials} or {self.paths.config}"


@dataclass(frozen=True)
class _Parsed:
    stamp: tuple[int, int, int] | None  # (mtime_ns, size, inode); None: missing
    profiles: Mapping[str, Section]


class ProfileStore:
    """Reads the two files off the event loop and re-parses them only when they change."""

    def __init__(self, paths: ProfilePaths) -> None:
        self.paths = paths
        self._cache: dict[Path, _Parsed] = {}

    async def snapshot(self) -> ProfileSnapshot:
        """Fresh view of both files; raises CredentialError for an unreadable or broken file."""
        credentials, config = await asyncio.to_thread(self._read_both)
        return ProfileSnapshot(
            paths=self.paths,
            credentials=credentials.profiles,
            config=config.profiles,
            credentials_found=credentials.stamp is not None,
            config_found=config.stamp is not None,
        )

    async def changed(self) -> bool:
        """True when either file differs from the last snapshot (cheap: two stat calls)."""
        return await asyncio.to_thread(self._changed)

    def _changed(self) -> bool:
        for path in (self.paths.credentials, self.paths.config):
            cached = self._cache.get(path)
            if cached is None or cached.stamp != _stamp(path):
                return True
        return False

    def _read_both(self) -> tuple[_Parsed, _Parsed]:
        return (
            self._read(self.paths.credentials, CREDENTIALS_FILE_PROVIDER, is_config=False),
            self._read(self.paths.config, CONFIG_FILE_PROVIDER, is_config=True),
        )

    def _read(self, path: Path, provider: str, is_config: bool) -> _Parsed:
        stamp = _stamp(path)
        cached = self._cache.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        if stamp is None:
            parsed = _Parsed(None, {})
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise CredentialError(provider, f"{path}: cannot read: {reason}") from None
            parsed = _Parsed(stamp, parse_ini(text, path, provider, is_config))
        self._cache[path] = parsed
        return parsed


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        # Unreadable metadata is treated as a change so the read reports the real error.
        return (-1, exc.errno or 0, 0)
    # The inode changes on os.replace, even when mtime and size happen to match.
    return (info.st_mtime_ns, info.st_size, info.st_ino)
