"""The decorator for value objects built on every request (operation, target, signing input...).

They would be frozen dataclasses, but a frozen dataclass's `__init__` sets each field through
`object.__setattr__`, five times the cost of a plain one, and a request builds about ten of
them. So they are plain slotted dataclasses that compare and hash by value as frozen ones do
(`unsafe_hash`), and the rule that makes that safe is this one: never change one once built.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(eq_default=True, field_specifiers=(dataclasses.field,))
def request_value(cls: type[T]) -> type[T]:
    """A slotted dataclass compared and hashed by value; treat it as immutable."""
    return dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
