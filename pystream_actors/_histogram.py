"""A streaming, fixed-size latency histogram: percentiles without a row per item."""

from __future__ import annotations

import math

_SUBBUCKETS = 16  # per power of two: at most about 3% relative error on a percentile
_MIN_EXP = -20  # 2**-20 s, just under a microsecond
_MAX_EXP = 8  # 2**8 s, about four minutes; anything longer lands in the last bucket
_BUCKETS = (_MAX_EXP - _MIN_EXP) * _SUBBUCKETS


class Histogram:
    """Counts durations in log-spaced buckets; memory stays the same whatever the count.

    Written by one thread (the actor that owns it), read by any: a reader may see a
    count one item ahead of the total, which is fine for monitoring.
    """

    __slots__ = ("counts", "count", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Add one duration (seconds)."""
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds <= 0.0:
            index = 0
        else:
            mantissa, exponent = math.frexp(seconds)
            index = (exponent - _MIN_EXP) * _SUBBUCKETS + int((mantissa - 0.5) * 2 * _SUBBUCKETS)
            if index < 0:
                index = 0
            elif index >= _BUCKETS:
                index = _BUCKETS - 1
        self.counts[index] += 1

    def add(self, other: Histogram) -> None:
        """Fold ``other``'s records into this histogram."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float:
        """Mean duration in seconds (0.0 when empty)."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, fraction: float) -> float:
        """Duration below which ``fraction`` (0..1) of the records fall (0.0 when empty)."""
        counts = list(self.counts)
        total = sum(counts)
        if total == 0:
            return 0.0
        rank = max(1, math.ceil(fraction * total))
        running = 0
        for index, count in enumerate(counts):
            running += count
            if running >= rank:
                return min(_bucket_midpoint(index), self.max)
        return self.max


def _bucket_midpoint(index: int) -> float:
    exponent, sub = divmod(index, _SUBBUCKETS)
    return math.ldexp(0.5 + (sub + 0.5) / (2 * _SUBBUCKETS), exponent + _MIN_EXP)
