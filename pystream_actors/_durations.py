"""Durations in fixed memory: exact count, mean and max; percentiles of the recent ones.

Recording must cost next to nothing on a stage's thread, so it is a write into a
preallocated ring of the last ``RECENT`` durations; the sorting for percentiles happens
only when somebody takes a snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

RECENT = 4096  # durations kept for percentiles; a power of two
MASK = RECENT - 1


class Durations:
    """A running summary of durations whose memory never grows."""

    __slots__ = ("count", "max", "next", "recent", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.recent = [0.0] * RECENT
        self.next = 0

    def record(self, seconds: float) -> None:
        """Add one duration (seconds)."""
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        index = self.next
        self.recent[index] = seconds
        self.next = (index + 1) & MASK

    def kept(self) -> list[float]:
        """The recent durations still in the ring (at most ``RECENT``)."""
        return list(self.recent[: min(self.count, RECENT)])

    @property
    def mean(self) -> float:
        """Mean over every record (0.0 when empty)."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, fraction: float) -> float:
        """Duration below which ``fraction`` of the recent records fall (0.0 when empty)."""
        return percentiles(self.kept(), (fraction,))[0]

    @staticmethod
    def merged(parts: Iterable[Durations]) -> MergedDurations:
        """One summary of several (the workers of a pooled stage)."""
        merged = MergedDurations()
        for part in parts:
            merged.count += part.count
            merged.total += part.total
            merged.max = max(merged.max, part.max)
            merged.values.extend(part.kept())
        return merged


class MergedDurations:
    """The sum of several ``Durations``, for snapshots only."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.values: list[float] = []

    def kept(self) -> list[float]:
        return self.values

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def percentiles(values: list[float], fractions: Iterable[float]) -> list[float]:
    """Nearest-rank percentiles of ``values`` (0.0 each when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return [0.0 for _ in fractions]
    last = len(ordered) - 1
    return [ordered[min(last, max(0, math.ceil(f * len(ordered)) - 1))] for f in fractions]
