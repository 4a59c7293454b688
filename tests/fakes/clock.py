"""A clock that only moves when told to, for tests and benchmarks."""

from __future__ import annotations


class FakeClock:
    """A clock that only moves when told to; shared by tests and benchmarks."""

    def __init__(self, start: float = 1_440_938_160.0) -> None:
        # Default start: 2015-08-30T12:36:00Z, the SigV4 test-suite time.
        self._wall = start
        self._mono = 1000.0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds
