"""Which fault fires for a request: matching and draws, pure (time comes in as `now`).

Every rule that covers a request draws, in config order, whether or not an earlier rule
already fired, so a rule's sequence depends only on the requests it covers: with a
`fault_seed` each rule's random source is seeded from the seed and the rule's name, and two
runs of the same traffic fire on the same requests. `kind: latency` rules add their delay and
let the request go on; the first other rule that fires decides the answer.
"""

from __future__ import annotations

import fnmatch
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.credentials.identities import DEFAULT_IDENTITY
from proxy.faults.model import FaultRule
from proxy.ratelimit.rules import OperationMatcher, operation_matcher

_COVERING_MEMO = 4096


@dataclass(frozen=True, slots=True)
class FaultScope:
    """What a rule is matched against: known once the request is classified."""

    service: str
    operation: str | None  # the operation's name (None when it cannot be named)
    region: str
    identity: str = DEFAULT_IDENTITY


@dataclass(slots=True)
class CompiledFault:
    """A FaultRule ready for the request path, with its counters and random source."""

    rule: FaultRule
    matcher: OperationMatcher
    rng: random.Random
    loaded_at: float
    matched: int = 0  # requests the rule covered while its window was open
    injected: int = 0  # of those, the ones it fired on

    @property
    def name(self) -> str:
        return self.rule.name

    def covers(self, scope: FaultScope) -> bool:
        rule = self.rule
        if rule.service is not None and rule.service != scope.service:
            return False
        if rule.region is not None and not fnmatch.fnmatchcase(scope.region, rule.region):
            return False
        if rule.identity is not None and not fnmatch.fnmatchcase(scope.identity, rule.identity):
            return False
        return self.matcher.matches(scope.operation)

    def in_window(self, now: float) -> bool:
        elapsed = now - self.loaded_at
        if elapsed < self.rule.after:
            return False
        return self.rule.duration is None or elapsed < self.rule.after + self.rule.duration

    def draw(self) -> bool:
        """Count one covered request and say whether the rule fires on it."""
        self.matched += 1
        rule = self.rule
        if rule.every is not None:
            fires = self.matched % rule.every == 0
        else:
            # Always draw (even at 0 or 1) so a changed probability keeps the sequence aligned.
            fires = self.rng.random() < (rule.probability or 0.0)
        if fires:
            self.injected += 1
        return fires

    def delay(self) -> float:
        """The rule's latency plus a fresh jitter draw (seconds)."""
        jitter = self.rule.jitter
        return self.rule.latency + (self.rng.uniform(0.0, jitter) if jitter > 0 else 0.0)


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What the rules say for one request at one place: wait `delay`, then `fault` (or go)."""

    delay: float = 0.0
    fault: CompiledFault | None = None
    fired: tuple[CompiledFault, ...] = ()  # every rule that fired, latency ones included


NO_FAULT = FaultDecision()


def seed_for(seed: int | None, name: str) -> random.Random:
    """The rule's own random source: from `fault_seed` and its name, else from the OS."""
    if seed is None:
        return random.Random(os.urandom(16))
    # A str seed is hashed with SHA-512 by random.seed: the same in every process and run.
    return random.Random(f"{seed}:{name}")


@dataclass(slots=True)
class FaultSet:
    """The rules in force, compiled, split by where they act."""

    rules: tuple[CompiledFault, ...] = ()
    upstream: tuple[CompiledFault, ...] = field(default=())
    client: tuple[CompiledFault, ...] = field(default=())
    # Which rules cover a scope, worked out once per scope: operation names come from
    # clients, so the memo is bounded (dropped whole when full).
    _covering: dict[tuple[bool, FaultScope], tuple[CompiledFault, ...]] = field(
        default_factory=dict
    )

    def without(self, name: str) -> FaultSet:
        """The same compiled rules (state kept) less the one named `name`."""
        return FaultSet(
            tuple(c for c in self.rules if c.name != name),
            tuple(c for c in self.upstream if c.name != name),
            tuple(c for c in self.client if c.name != name),
        )

    def decide(
        self, rules: Sequence[CompiledFault], scope: FaultScope, now: float
    ) -> FaultDecision:
        """Draw every covering rule of `rules` (`self.upstream` or `self.client`) for one
        request."""
        key = (rules is self.upstream, scope)
        covering = self._covering.get(key)
        if covering is None:
            if len(self._covering) >= _COVERING_MEMO:
                self._covering.clear()
            covering = self._covering[key] = tuple(c for c in rules if c.covers(scope))
        delay = 0.0
        fault: CompiledFault | None = None
        fired: list[CompiledFault] = []
        for compiled in covering:
            if not compiled.in_window(now):
                continue
            if not compiled.draw():
                continue
            fired.append(compiled)
            if compiled.rule.kind == "latency":
                delay += compiled.delay()
            elif fault is None:
                fault = compiled
                delay += compiled.delay()
        if not fired:
            return NO_FAULT
        return FaultDecision(delay, fault, tuple(fired))


def compile_faults(rules: Sequence[FaultRule], seed: int | None, now: float) -> FaultSet:
    """Compile rules loaded at `now` (their windows count from it)."""
    compiled = tuple(
        CompiledFault(rule, operation_matcher(rule.operations), seed_for(seed, rule.name), now)
        for rule in rules
    )
    return FaultSet(
        compiled,
        tuple(c for c in compiled if c.rule.at == "upstream"),
        tuple(c for c in compiled if c.rule.at == "client"),
    )


def describe_faults(faults: FaultSet) -> list[dict[str, object]]:
    """The rules in force with their counters, as `GET /faults` returns them."""
    described: list[dict[str, object]] = []
    for compiled in faults.rules:
        rule = compiled.rule
        entry: dict[str, object] = {"name": rule.name, "kind": rule.kind, "at": rule.at}
        for key in ("service", "region", "identity", "status", "code"):
            value = getattr(rule, key)
            if value is not None:
                entry[key] = value
        if rule.operations:
            entry["operations"] = list(rule.operations)
        if rule.every is not None:
            entry["every"] = rule.every
        else:
            entry["probability"] = rule.probability
        if rule.after:
            entry["after"] = rule.after
        if rule.duration is not None:
            entry["for"] = rule.duration
        if rule.latency:
            entry["latency"] = rule.latency
        if rule.jitter:
            entry["jitter"] = rule.jitter
        entry["matched"] = compiled.matched
        entry["injected"] = compiled.injected
        described.append(entry)
    return described
