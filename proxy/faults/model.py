"""Fault rules as config: one frozen dataclass and its strict parser.

The same parser reads `faults:` in the YAML config and the JSON body of `PUT /faults` on the
admin listener, so both take the same keys and fail with the same path-qualified messages
(`faults[0].probability: must be between 0 and 1, got 1.5`). Kept apart from the matching
(proxy.faults.rules) so proxy.config can import it without the request-path code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config import readers as cp
from proxy.config.readers import ConfigError

FAULT_KINDS = ("throttle", "internal", "unavailable", "error", "latency", "reset", "timeout")
FAULT_PLACES = ("upstream", "client")
_FAULT_KEYS = {
    "name",
    "service",
    "operations",
    "region",
    "identity",
    "probability",
    "every",
    "after",
    "for",
    "kind",
    "status",
    "code",
    "latency",
    "jitter",
    "at",
}


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault rule: which requests it covers, how often it fires, what it does."""

    name: str
    kind: str
    service: str | None = None  # None: every service
    operations: tuple[str, ...] = ()  # as in `limits`: globs, `!` excludes; () = all
    region: str | None = None  # a glob over the signing region
    identity: str | None = None  # a glob over the signing identity's name
    probability: float | None = None  # fires with this chance per matching request
    every: int | None = None  # fires on every Nth matching request (1st fires at N)
    after: float = 0.0  # seconds after the rule was loaded before it starts firing
    duration: float | None = None  # `for`: seconds it keeps firing after `after` (None: ever)
    status: int | None = None  # kind error (required), or to override a kind's status
    code: str | None = None  # kind error (required), or e.g. throttle's DynamoDB code
    latency: float = 0.0  # seconds: kind latency's delay; other kinds answer this late
    jitter: float = 0.0  # up to this many seconds more, drawn per firing
    at: str = "upstream"  # upstream: stands in for AWS's answer; client: answers the app


def fault_rule(raw: object, path: str) -> FaultRule:
    """Parse one rule; every error names its key path."""
    section = cp.mapping(raw, path)
    cp.reject_unknown(section, _FAULT_KEYS, path)
    for required in ("name", "kind"):
        if required not in section:
            raise ConfigError(f"{path}.{required}", "is required")
    kind = cp.string(section["kind"], f"{path}.kind")
    if kind not in FAULT_KINDS:
        raise ConfigError(f"{path}.kind", f"expected one of {', '.join(FAULT_KINDS)}, got {kind!r}")
    at = cp.string(section.get("at", "upstream"), f"{path}.at")
    if at not in FAULT_PLACES:
        raise ConfigError(f"{path}.at", f"expected one of {', '.join(FAULT_PLACES)}, got {at!r}")
    probability, every = _frequency(section, path)
    status = None
    if "status" in section:
        status = cp.integer(section["status"], f"{path}.status", 100)
        if status > 599:
            raise ConfigError(f"{path}.status", f"must be at most 599, got {status}")
    code = cp.optional_string(section.get("code"), f"{path}.code")
    if kind == "error" and (status is None or code is None):
        missing = "status" if status is None else "code"
        raise ConfigError(f"{path}.{missing}", "is required for kind error")
    latency = cp.duration(section.get("latency", 0), f"{path}.latency")
    if kind == "latency" and latency == 0:
        raise ConfigError(f"{path}.latency", "is required (and above 0) for kind latency")
    return FaultRule(
        name=cp.string(section["name"], f"{path}.name"),
        kind=kind,
        service=_lower(cp.optional_string(section.get("service"), f"{path}.service")),
        operations=cp.string_list(section["operations"], f"{path}.operations")
        if "operations" in section
        else (),
        region=cp.optional_string(section.get("region"), f"{path}.region"),
        identity=cp.optional_string(section.get("identity"), f"{path}.identity"),
        probability=probability,
        every=every,
        after=cp.duration(section.get("after", 0), f"{path}.after"),
        duration=None
        if section.get("for") is None
        else cp.duration(section["for"], f"{path}.for", allow_zero=False),
        status=status,
        code=code,
        latency=latency,
        jitter=cp.duration(section.get("jitter", 0), f"{path}.jitter"),
        at=at,
    )


def _frequency(section: Mapping[str, Any], path: str) -> tuple[float | None, int | None]:
    if "probability" in section and "every" in section:
        raise ConfigError(path, "give probability or every, not both")
    if "every" in section:
        return None, cp.integer(section["every"], f"{path}.every", 1)
    if "probability" not in section:
        return 1.0, None  # no frequency given: every matching request
    probability = cp.number(section["probability"], f"{path}.probability")
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(
            f"{path}.probability", f"must be between 0 and 1, got {section['probability']}"
        )
    return probability, None


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def fault_rules(raw: object, path: str) -> tuple[FaultRule, ...]:
    """A list of rules with unique names (`faults:` in the config, `PUT /faults`)."""
    return cp.named_items(raw, path, fault_rule)


def fault_seed(raw: object, path: str) -> int | None:
    """`fault_seed`: an integer makes every run draw the same sequence."""
    return None if raw is None else cp.integer(raw, path)
