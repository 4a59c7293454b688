"""Small typed readers for YAML values, each raising ConfigError with the key path.

Kept apart from `config` so every section parser (limits, retry, routes…) reads values the
same way and every message has the same `file: path.to.key: reason` shape.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


# No message quotes more of a value than fits a line; a reason is one line whatever it holds.
SHOWN_CHARS = 60
MAX_REASON_CHARS = 1000
_SHORT_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 6, 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = SHOWN_CHARS


def shown(value: object) -> str:
    """`repr(value)` cut to about SHOWN_CHARS: what an error message quotes of a config value.

    Long strings are sliced before repr, so a megabyte value costs nothing to quote."""
    if isinstance(value, str | bytes) and len(value) > SHOWN_CHARS:
        return repr(value[:SHOWN_CHARS])[:-1] + "…" + repr(value)[-1]
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= 2 * SHOWN_CHARS else text[: 2 * SHOWN_CHARS - 1] + "…"


def _one_line(text: str) -> str:
    text = " ".join(text.split("\n"))
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


class ConfigError(Exception):
    """A config problem, rendered as `file: path.to.key: reason` (one line)."""

    def __init__(self, path: str, reason: str, file: str = "<config>") -> None:
        self.file = file
        self.path = _one_line(path)
        self.reason = _one_line(reason)
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}: {where}{self.reason}"

    def in_file(self, file: str) -> ConfigError:
        return ConfigError(self.path, self.reason, file)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def mapping(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"keys must be strings, got {shown(key)}")
    return value


def reject_unknown(section: Mapping[str, Any], known: set[str], path: str) -> None:
    for key in section:
        if key not in known:
            hint = ", ".join(sorted(known))
            raise ConfigError(join(path, key), f"unknown key (known keys: {hint})")


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"expected a non-empty string, got {type_name(value)}")
    return value


def optional_string(value: object, path: str) -> str | None:
    return None if value is None else string(value, path)


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {type_name(value)}")
    return value


def integer(value: object, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {type_name(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(path, f"must be at least {minimum}, got {value}")
    return value


def number(value: object, path: str, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"expected a number, got {type_name(value)}")
    result = float(value)
    if not math.isfinite(result):
        raise ConfigError(path, f"expected a finite number, got {value}")
    if positive and result <= 0:
        raise ConfigError(path, f"must be greater than 0, got {value}")
    if minimum is not None and result < minimum:
        raise ConfigError(path, f"must be at least {minimum:g}, got {value}")
    return result


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(value: object, path: str, allow_zero: bool = True) -> float:
    """Seconds as a number, or a string like `250ms`, `5s`, `2m`, `1h`."""
    if isinstance(value, bool):
        raise ConfigError(path, "expected a duration like 5s or 250ms, got bool")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ConfigError(path, f"expected a duration like 5s or 250ms, got {shown(value)}")
    if not math.isfinite(seconds):
        raise ConfigError(path, f"expected a finite duration, got {shown(value)}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(path, f"must be greater than 0, got {shown(value)}")
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}


def size(value: object, path: str) -> int:
    """Bytes as an integer, or a string like `8MiB`, `64KiB`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    raise ConfigError(path, f"expected a size like 8MiB or a byte count, got {shown(value)}")


def string_list(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of strings, got {type_name(value)}")
    return tuple(string(item, join(path, i)) for i, item in enumerate(value))


def listen_address(value: object, path: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or a bare port (loopback)."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"127.0.0.1:{value}"
    else:
        text = string(value, path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(path, f"expected host:port, got {shown(text)}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def items(value: object, path: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list, got {type_name(value)}")
    return tuple(parse(item, join(path, i)) for i, item in enumerate(value))


def named_items(value: object, path: str, parse: Callable[[Any, str], N]) -> tuple[N, ...]:
    """`items`, whose names must be unique: a name is what metrics, headers and the admin
    API call a rule, so two rules of one name would be one."""
    parsed = items(value, path, parse)
    seen: dict[str, int] = {}
    for index, item in enumerate(parsed):
        if item.name in seen:
            raise ConfigError(
                join(path, index) + ".name",
                f"duplicate rule name {shown(item.name)} (first at [{seen[item.name]}])",
            )
        seen[item.name] = index
    return parsed
