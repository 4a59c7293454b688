"""The live rules of a limiter: per-rule state, metric children, and the service index.

Built once per config (start-up and each reload) and swapped whole. A rule whose name and
shape did not change keeps its buckets and adaptive state across a reload; its rate and
burst change at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Gauge

from proxy.aws.operations import Operation
from proxy.config.model import LimitRule
from proxy.observability.hotmetrics import HotCounterChild, HotHistogramChild
from proxy.observability.metrics import Metrics
from proxy.ratelimit.adaptive import CubicRate
from proxy.ratelimit.bucket import BucketShape, BucketTable, RefillClock
from proxy.ratelimit.rules import CompiledRule, compile_rule, same_shape

DECISIONS = ("allowed", "delayed", "rejected")
SHADOW_DECISIONS = ("shadow_allowed", "shadow_delayed", "shadow_rejected")


@dataclass(frozen=True, slots=True)
class RuleMetrics:
    """The rule's metric children, created when the rule is loaded."""

    decisions: dict[str, HotCounterChild]
    wait: HotHistogramChild
    queue_depth: Gauge
    rate: Gauge


def rule_metrics(metrics: Metrics, rule: LimitRule) -> RuleMetrics:
    names = SHADOW_DECISIONS if rule.shadow else DECISIONS
    return RuleMetrics(
        decisions={d: metrics.ratelimit_decisions_total.labels(rule.name, d) for d in names},
        wait=metrics.ratelimit_wait_seconds.labels(rule.name),
        queue_depth=metrics.ratelimit_queue_depth.labels(rule.name),
        rate=metrics.ratelimit_rate.labels(rule.name),
    )


class RuleState:
    """One rule while it is loaded: its buckets, current rate and counters.

    Buckets keep their `tat` in tokens on the rule's `refill` clock (see RefillClock), so
    `shape` is in tokens: one token per interval, `burst` tokens of tolerance.
    """

    __slots__ = ("adaptive", "buckets", "compiled", "metrics", "refill", "shape", "waiting")

    def __init__(self, compiled: CompiledRule, metrics: RuleMetrics) -> None:
        rule = compiled.rule
        self.compiled = compiled
        self.metrics = metrics
        self.buckets = BucketTable()
        self.adaptive = CubicRate(rule.rate) if rule.adaptive else None
        self.refill = RefillClock(rule.rate)
        self.shape = BucketShape(1.0, rule.burst)
        self.waiting = 0
        metrics.rate.set(rule.rate)

    @property
    def name(self) -> str:
        return self.compiled.rule.name

    @property
    def shadow(self) -> bool:
        return self.compiled.rule.shadow

    @property
    def rate(self) -> float:
        """Tokens per second now (below the configured rate while adaptive has cut it)."""
        return self.refill.rate

    def retune(self, rule: LimitRule, now: float) -> None:
        """Take a reloaded rule of the same shape: new rate and burst, same buckets, each
        bucket's level capped at the new burst (see BucketTable.reshape)."""
        self.compiled = compile_rule(rule)
        self.buckets.reshape(rule.burst - self.shape.burst, self.refill.at(now))
        self.shape = BucketShape(1.0, rule.burst)
        if self.adaptive is not None and rule.adaptive:
            self.adaptive.set_ceiling(rule.rate)
        else:
            self.adaptive = CubicRate(rule.rate) if rule.adaptive else None
        self.set_rate(self.adaptive.rate if self.adaptive is not None else rule.rate, now)

    def set_rate(self, rate: float, now: float) -> None:
        self.refill.set_rate(rate, now)
        self.metrics.rate.set(rate)


class Coverage:
    """The rules covering one kind of operation, split the way the request path uses them.

    Worked out once per (service, operation, unfiltered) and ruleset: a reload builds a new
    RuleSet, so a kept entry never outlives the rules it was made from."""

    __slots__ = ("enforcing", "rules", "shadows")

    def __init__(self, rules: tuple[RuleState, ...]) -> None:
        self.rules = rules  # in config order (empty: not limited)
        self.enforcing = tuple(state for state in rules if not state.shadow)
        self.shadows = tuple(state for state in rules if state.shadow)


_NOT_COVERED = Coverage(())


class RuleSet:
    """All loaded rules, indexed by service so a request no rule covers costs one lookup."""

    def __init__(self, states: Sequence[RuleState]) -> None:
        self.states = tuple(states)
        by_service: dict[str, list[RuleState]] = {}
        for state in self.states:
            by_service.setdefault(state.compiled.rule.service, []).append(state)
        self._by_service = {service: tuple(group) for service, group in by_service.items()}
        # What a rule covers depends on the service, the operation's name and whether it is
        # unfiltered, nothing else. Names the services' models know (and no name) are worked
        # out once: bounded by the models; a client-made name is matched every time, never
        # stored.
        self._memo: dict[tuple[str, str | None, bool], Coverage] = {}

    def coverage(self, op: Operation) -> Coverage:
        """The rules covering `op`."""
        key = (op.service, op.name, op.unfiltered)
        found = self._memo.get(key)
        if found is not None:
            return found
        group = self._by_service.get(op.service)
        if group is None:
            found = _NOT_COVERED
        else:
            found = Coverage(tuple(state for state in group if state.compiled.covers(op)))
        if op.name is None or op.label == op.name:
            self._memo[key] = found
        return found

    def matching(self, op: Operation) -> tuple[RuleState, ...]:
        """The rules covering `op`, in config order (empty: not limited)."""
        return self.coverage(op).rules


def build_ruleset(
    rules: Sequence[LimitRule], metrics: Metrics, now: float, previous: RuleSet | None = None
) -> RuleSet:
    """Compile `rules`, carrying state over from `previous` for rules of unchanged shape."""
    old = {state.name: state for state in previous.states} if previous else {}
    states: list[RuleState] = []
    for rule in rules:
        kept = old.pop(rule.name, None)
        if kept is not None and same_shape(kept.compiled.rule, rule) and kept.shadow == rule.shadow:
            kept.retune(rule, now)
            states.append(kept)
        else:
            states.append(RuleState(compile_rule(rule), rule_metrics(metrics, rule)))
    for gone in old.values():
        gone.metrics.queue_depth.set(0)
        metrics.ratelimit_rate.remove(gone.name)
        metrics.ratelimit_queue_depth.remove(gone.name)
    return RuleSet(states)
