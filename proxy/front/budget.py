"""One memory budget for every request body held in memory at once (Envoy's overload idea).

A body that is buffered (to hash it for the signature and replay it on a retry) reserves its
size before it is read, and before 100 Continue invites it; the exchange gives the bytes back
when its request ends, whatever happened to it. Over the budget the request is refused with
503 and Retry-After, in the service's format, and nobody else's request is touched.
"""

from __future__ import annotations

from prometheus_client import Gauge

from proxy.errors import Overloaded

# What a refused client is told to wait: long enough for a few bodies to finish.
RETRY_AFTER = 1.0


class BodyBudget:
    def __init__(self, limit: int, gauge: Gauge) -> None:
        self.limit = limit
        self.used = 0
        self._gauge = gauge

    def take(self, size: int) -> None:
        """Reserve `size` bytes, or raise Overloaded."""
        if self.used + size > self.limit:
            raise Overloaded(
                f"the proxy holds {self.used} bytes of request bodies; {size} more would pass "
                f"buffered_body_budget ({self.limit} bytes): try again shortly",
                "body-budget-exceeded",
                RETRY_AFTER,
            )
        self.used += size
        self._gauge.set(self.used)

    def give_back(self, size: int) -> None:
        self.used -= size
        self._gauge.set(self.used)
