"""Timing for the suite: every variant of a workload takes turns, and ratios are paired.

Standard library only, because both sides import it: this virtualenv for our pipeline
and the plain baselines, ``.venv-pystream`` for PyStream. So every variant, PyStream
included, is timed by the same code: wall time from the first item offered to the last
output delivered to the caller.

- Throughput: ``rounds`` rounds; in each, every variant runs the same batch once, in an
  order that rotates from round to round, so a change in the machine's load hits all of
  them alike. A ratio between two variants is the median of their per-round ratios
  (paired rounds), which drifting load cannot tilt the way best-of-each can.
- Latency: one item at a time (offer it, wait for its output); the variants take turns
  in chunks of ``chunk`` samples, and percentiles are over every sample (nearest rank).
"""

from __future__ import annotations

import gc
import itertools
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

RESULT_TIMEOUT = 120.0
"""Seconds any one batch or item may take before the variant counts as failed."""


class Unavailable(Exception):
    """A variant that cannot run here (a baseline not installed, a feature not built yet)."""


class Chain(Protocol):
    """A built chain of stages in this process."""

    def batch(self, payloads: Sequence[Any]) -> tuple[float, list[Any]]:
        """Offer every payload, wait for the last output: (wall seconds, outputs delivered)."""
        ...

    def one(self, payload: Any) -> Any:
        """Offer one payload and wait for its output."""
        ...

    def close(self) -> None:
        """Stop every thread the chain started, and wait for them."""
        ...


@dataclass(frozen=True)
class BatchTime:
    """One timed batch: its wall time, whether outputs came in input order, how many came."""

    seconds: float
    in_order: bool
    delivered: int


class Timed(Protocol):
    """What the harness measures: a chain here (``Local``) or in another process."""

    def time_batch(self, count: int) -> BatchTime:
        """Run ``count`` payloads through as one batch."""
        ...

    def time_ones(self, start: int, count: int) -> list[float]:
        """Seconds of each of ``count`` one-at-a-time round trips (payloads from ``start``)."""
        ...

    def close(self) -> None:
        """Stop the chain; returns only once it has stopped."""
        ...


class Local:
    """``Timed`` for a chain in this process; ``key`` gives an output's input index."""

    def __init__(self, chain: Chain, payload: Callable[[int], Any], key: Callable[[Any], Any]):
        self.chain, self.payload, self.key = chain, payload, key

    def time_batch(self, count: int) -> BatchTime:
        payloads = [self.payload(i) for i in range(count)]
        gc.collect()
        seconds, outputs = self.chain.batch(payloads)
        keys = [self.key(out) for out in outputs]
        in_order = all(a < b for a, b in itertools.pairwise(keys))
        return BatchTime(seconds, in_order, len(outputs))

    def time_ones(self, start: int, count: int) -> list[float]:
        one, key, taken = self.chain.one, self.key, []
        gc.collect()
        for i in range(start, start + count):
            payload = self.payload(i)
            started = time.perf_counter()
            out = one(payload)
            taken.append(time.perf_counter() - started)
            if key(out) != i:
                raise RuntimeError(f"one-at-a-time run returned item {key(out)!r} for {i}")
        return taken

    def close(self) -> None:
        self.chain.close()


@dataclass
class Throughput:
    """Per-round wall times of one variant's batches; ``delivered``: the fewest outputs."""

    items: int
    rounds: list[float] = field(default_factory=list)
    in_order: bool = True
    delivered: int = 0

    @property
    def seconds(self) -> float:
        """The median round."""
        return statistics.median(self.rounds)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    def us_per_hop(self, hops: int) -> float:
        return self.seconds / (self.items * hops) * 1e6


@dataclass
class Latency:
    """Every one-at-a-time sample of one variant, in seconds."""

    samples: list[float] = field(default_factory=list)

    def ms(self, fraction: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        ordered = sorted(self.samples)
        if not ordered:
            return math.nan
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1] * 1000


T = TypeVar("T", Throughput, Latency)


@dataclass
class Outcome(Generic[T]):
    """A variant's figures, or why there are none (``failed``: an error, else n/a)."""

    value: T | None = None
    note: str = ""
    failed: bool = False


def error_text(exc: BaseException) -> str:
    """The first line of an exception, short enough for a table cell."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 90 else text[:87] + "..."


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of paired per-round ratios."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def ratio(metric: str, mine: Throughput | Latency, base: Throughput | Latency) -> float:
    """How ``mine`` compares with ``base`` on ``metric`` (above 1: more of it).

    Times (``us/hop``, ``seconds``) and rates (``items/s``) are medians of the paired
    per-round ratios; latency percentiles (``p50``, ``p99``) are over every sample.
    """
    if isinstance(mine, Throughput) and isinstance(base, Throughput):
        if metric == "items/s":
            return median_ratio(base.rounds, mine.rounds)
        return median_ratio(mine.rounds, base.rounds)
    if isinstance(mine, Latency) and isinstance(base, Latency):
        fraction = {"p50": 0.50, "p99": 0.99}[metric]
        return mine.ms(fraction) / base.ms(fraction)
    raise TypeError(f"cannot compare {type(mine).__name__} with {type(base).__name__}")


def _take_turns(
    makers: Mapping[str, Callable[[], Timed]],
    outcomes: dict[str, Outcome[Any]],
    warm_up: Callable[[str, Timed], object],
    turns: Sequence[Callable[[str, Timed], object]],
) -> None:
    """Build every variant, warm each up, run the turns (rotating who goes first), close all.

    A variant that fails is closed and sits out the rest; the others go on.
    """
    built: dict[str, Timed] = {}
    for label, make in makers.items():
        try:
            built[label] = make()
        except Exception as exc:
            outcomes[label] = _failure(exc)
    try:
        for index, step in enumerate([warm_up, *turns]):
            labels = list(built)
            shift = max(0, index - 1) % max(1, len(labels))
            for label in labels[shift:] + labels[:shift]:
                try:
                    step(label, built[label])
                except Exception as exc:
                    outcomes[label] = _failure(exc)
                    _close_quietly(built.pop(label))
    finally:
        for variant in built.values():
            _close_quietly(variant)


def _failure(exc: Exception) -> Outcome[Any]:
    if isinstance(exc, Unavailable):
        return Outcome(note=f"n/a: {exc}")
    return Outcome(note=f"error: {error_text(exc)}", failed=True)


def _close_quietly(variant: Timed) -> None:
    try:
        variant.close()
    except Exception as exc:
        print(f"  (closing a variant failed: {error_text(exc)})", flush=True)


def compare_throughput(
    makers: Mapping[str, Callable[[], Timed]], items: int, rounds: int, warmup: int
) -> dict[str, Outcome[Throughput]]:
    """Every variant runs a batch of ``items`` once per round, taking turns."""
    results = {label: Throughput(items, delivered=items) for label in makers}
    outcomes: dict[str, Outcome[Any]] = {label: Outcome(results[label]) for label in makers}

    def turn(label: str, variant: Timed) -> None:
        timed = variant.time_batch(items)
        result = results[label]
        result.rounds.append(timed.seconds)
        result.in_order = result.in_order and timed.in_order
        result.delivered = min(result.delivered, timed.delivered)

    _take_turns(makers, outcomes, lambda _, v: v.time_batch(max(1, warmup)), [turn] * rounds)
    return outcomes


def compare_latency(
    makers: Mapping[str, Callable[[], Timed]], samples: int, chunk: int = 100
) -> dict[str, Outcome[Latency]]:
    """``samples`` one-at-a-time round trips per variant, taking turns in chunks."""
    results = {label: Latency() for label in makers}
    outcomes: dict[str, Outcome[Any]] = {label: Outcome(results[label]) for label in makers}
    turns = []
    for start in range(0, samples, chunk):

        def turn(label: str, variant: Timed, start: int = start) -> None:
            results[label].samples += variant.time_ones(start, min(chunk, samples - start))

        turns.append(turn)
    _take_turns(makers, outcomes, lambda _, v: v.time_ones(0, min(200, samples)), turns)
    return outcomes
