"""Reading a config file without letting a bad one cost more than a refusal.

A config is trusted input, but it arrives by ConfigMap, by hand and by SIGHUP into a proxy that
is serving: a file that is huge, a YAML alias bomb (billion laughs: a few hundred bytes that
expand to gigabytes), nesting thousands deep, or an integer of thousands of digits must be
refused quickly, by size and shape, before anything is expanded or converted. So the YAML's
events are checked first, nothing built yet:

- an alias (`*name`, and so `<<: *name` merges) is refused outright: a config never needs one,
  and refusing them is the only way to be sure nothing expands;
- nesting past MAX_DEPTH levels is refused;
- an integer scalar longer than MAX_INT_DIGITS is refused before int() sees it;

and only a document that passes is built, by the safe loader. Every refusal names the file and
the key path, as every other config error does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from proxy.config.readers import ConfigError, join

MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_INT_DIGITS = 32  # far past any port, size or count; int() of 10**5000 is not free
_INT_TAG = "tag:yaml.org,2002:int"
# PyYAML's own (pure) safe loader, not libyaml's: the same messages on every machine. The
# size limit bounds its cost (about a second per MiB); SIGHUP parses in a worker thread.
_Loader = yaml.SafeLoader
_RESOLVER = Resolver()


class _Refused(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass
class _Collection:
    """A mapping or sequence being read: where its next child goes."""

    is_mapping: bool
    label: str | int | None = None  # this collection's own place in its parent
    index: int = 0
    key: str | None = None  # the mapping key whose value comes next
    expecting_key: bool = True
    children: list[str | int] = field(default_factory=list)

    def place_next(self, event: Event) -> str | int:
        """The path label of the child `event` starts, advancing past it."""
        if not self.is_mapping:
            self.index += 1
            return self.index - 1
        if self.expecting_key:
            self.expecting_key = False
            self.key = _short(event.value, 40) if isinstance(event, ScalarEvent) else "?"
            return "?"
        self.expecting_key = True
        return self.key if self.key is not None else "?"


def _where(stack: list[_Collection], last: str | int | None) -> str:
    where = ""
    for part in [c.label for c in stack[1:]] + ([last] if last is not None else []):
        where = join(where, part if part is not None else "?")
    return where


def check_events(text: str) -> None:
    """Refuse aliases, deep nesting and huge integers from the parser's events (_Refused)."""
    stack: list[_Collection] = []
    for event in yaml.parse(text, Loader=_Loader):
        if not isinstance(event, NodeEvent | CollectionEndEvent):
            continue
        if isinstance(event, CollectionEndEvent):
            stack.pop()
            continue
        label = stack[-1].place_next(event) if stack else None
        if isinstance(event, AliasEvent):
            anchor = _short(str(event.anchor))
            raise _Refused(_where(stack, label), f"YAML aliases are not allowed (*{anchor})")
        if isinstance(event, MappingStartEvent | SequenceStartEvent):
            stack.append(_Collection(isinstance(event, MappingStartEvent), label))
            if len(stack) > MAX_DEPTH:
                raise _Refused(_where(stack, None), f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, ScalarEvent) and len(event.value) > MAX_INT_DIGITS:
            tag = event.tag or _RESOLVER.resolve(  # type: ignore[no-untyped-call]
                ScalarNode, event.value, event.implicit
            )
            if tag == _INT_TAG:
                digits = sum(ch.isdigit() for ch in event.value)
                raise _Refused(
                    _where(stack, label), f"integer of {digits} digits (at most {MAX_INT_DIGITS})"
                )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_config_text(path: str | Path) -> str:
    """The file's text, refused (ConfigError naming the file) past MAX_CONFIG_BYTES or when it
    is not UTF-8; never more than the limit is read."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror or exc}", file) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            "",
            f"larger than {MAX_CONFIG_BYTES // 1024} KiB; a config file is refused past that",
            file,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"cannot read: not UTF-8 (byte {exc.start})", file) from exc


def parse_yaml(text: str, file: str) -> object:
    """The YAML document in `text`, checked before it is built (ConfigError otherwise)."""
    try:
        check_events(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader, checked above
    except _Refused as refused:
        raise ConfigError(refused.path, refused.reason, file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = _short(str(getattr(exc, "problem", None) or exc).splitlines()[0], 120)
        raise ConfigError("", f"not valid YAML{where}: {problem}", file) from None


def load_yaml_file(path: str | Path) -> object:
    """Read and parse a config file under every guard."""
    return parse_yaml(read_config_text(path), str(path))
