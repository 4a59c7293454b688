"""Memoising a pure function of a request's query string, for short queries only.

Apps repeat the same short query call after call (`Action=DescribeInstances&Version=...`), so
its canonical form and its auth scan are worth remembering; long ones are rare and would let
a client grow the memo. Bounded to MEMO_ENTRIES entries of at most MEMO_QUERY_LENGTH
characters: a client cannot grow it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import TypeVar

T = TypeVar("T")

MEMO_QUERY_LENGTH = 256
MEMO_ENTRIES = 1024


def memoised_when_short(compute: Callable[[str], T]) -> Callable[[str], T]:
    """`compute`, remembered for queries of at most MEMO_QUERY_LENGTH characters. Only for
    functions whose answer depends on the query alone and is never changed by the caller."""
    memo = lru_cache(maxsize=MEMO_ENTRIES)(compute)

    @wraps(compute)
    def call(query: str) -> T:
        return memo(query) if len(query) <= MEMO_QUERY_LENGTH else compute(query)

    return call
