"""The SDK retry quota, one per service: retries spend tokens, successes earn them back.

Pure bookkeeping (shared/REFERENCE.md §2): each service starts with `capacity` tokens (500); a
retry costs 14, or 5 after a throttle; a success returns what its request's last retry took,
or 1 when it needed no retry, never above the capacity. With no tokens left there is no retry,
which is what stops a fleet of proxies from turning an AWS brown-out into a retry storm.
"""

from __future__ import annotations

RETRY_COST = 14
THROTTLE_RETRY_COST = 5
NO_RETRY_REFUND = 1
DEFAULT_CAPACITY = 500


class RetryQuota:
    """Token balances per service, all with the same capacity."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = max(0, capacity)
        self._available: dict[str, int] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def available(self, service: str) -> int:
        """Tokens left for `service` (a service never seen has a full quota)."""
        return self._available.get(service, self._capacity)

    def acquire(self, service: str, throttled: bool) -> int | None:
        """Take the cost of one retry; returns the cost taken, or None when there is too little
        left (nothing is taken then)."""
        cost = THROTTLE_RETRY_COST if throttled else RETRY_COST
        left = self.available(service)
        if cost > left:
            return None
        self._available[service] = left - cost
        return cost

    def refund(self, service: str, last_retry_cost: int | None) -> bool:
        """Credit a successful request: the cost of its last retry, or 1 when it had none.
        Returns whether the balance changed (a full quota stays full)."""
        amount = NO_RETRY_REFUND if last_retry_cost is None else last_retry_cost
        left = self.available(service)
        refilled = min(self._capacity, left + amount)
        if refilled == left:
            return False
        self._available[service] = refilled
        return True

    def resize(self, capacity: int) -> None:
        """Change the capacity (config reload), keeping what each service has spent."""
        capacity = max(0, capacity)
        for service, left in self._available.items():
            spent = self._capacity - left
            self._available[service] = min(capacity, max(0, capacity - spent))
        self._capacity = capacity

    def services(self) -> tuple[str, ...]:
        """Services that have used the quota so far."""
        return tuple(self._available)
