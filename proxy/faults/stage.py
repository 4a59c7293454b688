"""The injection stage: where fault rules meet the request path.

`at: upstream` rules act inside the attempt loop, in place of one upstream send: the loop, the
retry quota, adaptive limits and the metrics see an injected throttle exactly as they would
see AWS's; `reset` and `timeout` raise the upstream client's own UpstreamUnavailable and
UpstreamTimeout. Nothing reaches AWS for an injected attempt. `at: client` rules answer the
app before the limiter and the loop. With no rules in force the pipeline pays one attribute
check per place (`upstream_on`, `client_on`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.aws.errors import ErrorAnswer
from proxy.aws.operations import Operation
from proxy.aws.routing import Target
from proxy.clock import Clock
from proxy.credentials.identities import DEFAULT_IDENTITY
from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.faults.answers import fault_answer
from proxy.faults.model import FaultRule
from proxy.faults.rules import (
    CompiledFault,
    FaultDecision,
    FaultScope,
    FaultSet,
    compile_faults,
    describe_faults,
)
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics
from proxy.upstream.client import UpstreamResponse

log = get_logger("proxy.faults")
Sleep = Callable[[float], Awaitable[None]]
InjectionHook = Callable[[Operation, CompiledFault], None]
_SILENT = frozenset({"reset", "timeout"})


class FaultInjector:
    """Holds the rules in force (swapped whole by config reload or `PUT /faults`)."""

    def __init__(
        self,
        rules: Sequence[FaultRule],
        seed: int | None,
        metrics: Metrics,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
        on_inject: InjectionHook | None = None,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.seed = seed
        self.on_inject = on_inject
        self.faults = FaultSet()
        self.upstream_on = False
        self.client_on = False
        self.replace(rules)

    def replace(self, rules: Sequence[FaultRule]) -> None:
        """Put `rules` in force; their windows and counters start now."""
        self.faults = compile_faults(rules, self.seed, self._clock.monotonic())
        self.upstream_on = bool(self.faults.upstream)
        self.client_on = bool(self.faults.client)
        log.info("faults-loaded", rules=[rule.name for rule in rules])

    def remove(self, name: str) -> bool:
        """Take one rule out of force; the others keep their counters and windows."""
        if all(c.name != name for c in self.faults.rules):
            return False
        self.faults = self.faults.without(name)
        self.upstream_on = bool(self.faults.upstream)
        self.client_on = bool(self.faults.client)
        log.info("fault-removed", rule=name)
        return True

    def describe(self) -> list[dict[str, object]]:
        return describe_faults(self.faults)

    def _decide(
        self, rules: Sequence[CompiledFault], op: Operation, target: Target
    ) -> FaultDecision:
        identity = DEFAULT_IDENTITY if target.identity is None else target.identity
        scope = FaultScope(op.service, op.name, target.endpoint.region, identity)
        decision = self.faults.decide(rules, scope, self._clock.monotonic())
        for compiled in decision.fired:
            self._metrics.faults_injected_total.labels(compiled.name, compiled.rule.kind).inc()
            if self.on_inject is not None:
                self.on_inject(op, compiled)
        return decision

    async def at_upstream(
        self,
        op: Operation,
        target: Target,
        request_id: str,
        send: Callable[[], Awaitable[UpstreamResponse]],
        *,
        read_timeout: float,
        deadline: float,
    ) -> UpstreamResponse:
        """One attempt: the upstream rules' answer, or `send()` (after any latency)."""
        decision = self._decide(self.faults.upstream, op, target)
        if decision.delay > 0:
            await self._sleep(decision.delay)
        fault = decision.fault
        if fault is None:
            return await send()
        rule = fault.rule
        if rule.kind == "reset":
            raise UpstreamUnavailable(
                f"upstream connection reset (fault rule {rule.name!r}: nothing was sent)"
            )
        if rule.kind == "timeout":
            # As a silent upstream: the wait ends at the read timeout or the request's deadline.
            remaining = deadline - asyncio.get_running_loop().time()
            await self._sleep(max(0.0, min(read_timeout, remaining)))
            raise UpstreamTimeout(f"upstream did not answer in time (fault rule {rule.name!r})")
        answer = fault_answer(rule, op.protocol, request_id)
        return UpstreamResponse(answer.status, _headers(answer), answer.body, None)

    async def at_client(
        self,
        op: Operation,
        target: Target,
        request_id: str,
        cut: Callable[[], None],
        *,
        silence: float,
    ) -> ErrorAnswer | None:
        """The client rules' answer to the app, or None to go on. `reset` cuts the client's
        connection (`cut()`, then ConnectionResetError); `timeout` answers nothing for
        `silence` seconds, then cuts."""
        decision = self._decide(self.faults.client, op, target)
        if decision.delay > 0:
            await self._sleep(decision.delay)
        fault = decision.fault
        if fault is None:
            return None
        rule = fault.rule
        if rule.kind in _SILENT:
            if rule.kind == "timeout":
                await self._sleep(silence)
            cut()
            raise ConnectionResetError(f"connection cut by fault rule {rule.name!r}")
        return fault_answer(rule, op.protocol, request_id)


def _headers(answer: ErrorAnswer) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(answer.headers))
