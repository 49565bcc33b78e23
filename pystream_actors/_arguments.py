"""Argument checks that fail at the call, naming the parameter and what would fit.

Every public entry point checks its arguments here before it touches anything, so a bad
argument never half-applies (a running pipeline is not torn down by a typo).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from ._errors import InvalidArgument

T = TypeVar("T")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(
    name: str, value: object, *, allow_none: bool = True, allow_zero: bool = True
) -> float | None:
    """A duration in seconds: a finite number >= 0 (> 0 unless ``allow_zero``), or None."""
    if value is None and allow_none:
        return None
    floor = ">= 0" if allow_zero else "> 0"
    if not _is_number(value) or math.isnan(value) or math.isinf(value):  # type: ignore[arg-type]
        hint = " or None (no limit)" if allow_none else ""
        raise InvalidArgument(
            f"{name} must be a finite number of seconds {floor}{hint}, got {value!r}"
        )
    number = float(value)  # type: ignore[arg-type]
    if number < 0 or (number == 0 and not allow_zero):
        raise InvalidArgument(f"{name} must be a number of seconds {floor}, got {value!r}")
    return number


def positive_seconds(name: str, value: object) -> float:
    """A duration that must be given and be > 0."""
    checked = seconds(name, value, allow_none=False, allow_zero=False)
    assert checked is not None
    return checked


def whole_number(name: str, value: object, minimum: int) -> int:
    """An ``int`` (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def one_of(name: str, value: T, choices: Sequence[T]) -> T:
    """One of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise InvalidArgument(f"{name} must be one of {options}; got {value!r}")
    return value


def flag(name: str, value: object) -> bool:
    """A bool."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, got {value!r}")
    return value


def seconds_range(name: str, value: Any) -> tuple[float, float]:
    """A ``(low, high)`` pair of seconds with 0 <= low <= high."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidArgument(
            f"{name} must be a (min, max) pair of seconds, e.g. (0.01, 1.0); got {value!r}"
        )
    low = seconds(f"{name}[0]", value[0], allow_none=False)
    high = seconds(f"{name}[1]", value[1], allow_none=False)
    assert low is not None and high is not None
    if low > high:
        raise InvalidArgument(f"{name} must be (min, max) with min <= max, got {value!r}")
    return low, high
