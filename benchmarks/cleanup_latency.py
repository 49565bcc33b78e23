"""Benchmark: starting and stopping an idle parallel pipeline is quick and leak-free.

Each repetition builds a fresh four-stage pipeline, times ``parallelize()`` (one actor
thread per stage plus the coordinator start and report ready), then at once times
``cleanup()`` on the idle pipeline, and compares ``threading.enumerate()`` before and
after: every thread the pipeline started must have ended when ``cleanup()`` returns, and
no pykka actor may stay registered. Target: p50 ``cleanup()`` well under 100 ms.

Then a busy pipeline with 1,000 accepted items is stopped both ways: ``stop(drain=True)``
delivers all 1,000 results, and ``stop(drain=False)`` returns within 100 ms with every
unfinished future failed with ``PipelineTerminated``.

    python benchmarks/cleanup_latency.py                  # print the figures
    python benchmarks/cleanup_latency.py --repetitions 200
    python benchmarks/cleanup_latency.py --check          # also exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pykka

import pystream_actors as ps

STAGES = 4
REPETITIONS = 50
TARGET_P50_MS = 100.0


def identity(data: Any) -> Any:
    """A stage that does nothing: the pipeline stays idle anyway."""
    return data


@dataclass(frozen=True)
class Round:
    """One start/stop cycle."""

    start_seconds: float
    cleanup_seconds: float
    started_threads: int
    leaked_threads: tuple[str, ...]
    leaked_actors: int


def one_round() -> Round:
    """Build, ``parallelize()`` and ``cleanup()`` one idle pipeline; time both calls."""
    before = set(threading.enumerate())
    pipeline = ps.Pipeline()
    for index in range(1, STAGES + 1):
        pipeline.add(identity, f"Stage{index}")
    try:
        started = time.perf_counter()
        pipeline.parallelize()
        start_seconds = time.perf_counter() - started
        started_threads = sum(1 for t in threading.enumerate() if t not in before)
    finally:
        started = time.perf_counter()
        pipeline.cleanup()
        cleanup_seconds = time.perf_counter() - started
    leaked = tuple(t.name for t in threading.enumerate() if t not in before and t.is_alive())
    return Round(
        start_seconds=start_seconds,
        cleanup_seconds=cleanup_seconds,
        started_threads=started_threads,
        leaked_threads=leaked,
        leaked_actors=len(pykka.ActorRegistry.get_all()),
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def summary_ms(values: Sequence[float]) -> str:
    """min / p50 / max in milliseconds, as table cells."""
    cells = (min(values), percentile(values, 0.50), max(values))
    return " ".join(f"{value * 1000:>8.2f}" for value in cells)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repetitions",
        type=int,
        default=REPETITIONS,
        help=f"start/stop cycles (default {REPETITIONS})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if p50 cleanup() >= {TARGET_P50_MS:.0f} ms or a thread was left behind",
    )
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def slow_identity(data: Any) -> Any:
    """A 1 ms stage, so that 1,000 items keep the pipeline busy for a second."""
    threading.Event().wait(0.001)
    return data


def busy_stop(drain: bool) -> tuple[float, int, int]:
    """Stop a pipeline holding 1,000 accepted items: (seconds, results, clear failures)."""
    pipeline = ps.Pipeline()
    pipeline.add(slow_identity, "Slow")
    pipeline.add(identity, "Fast")
    pipeline.parallelize(capacity=1000)
    futures = [pipeline.handle.submit(i) for i in range(1000)]
    started = time.perf_counter()
    pipeline.handle.stop(drain=drain, timeout=60)
    seconds = time.perf_counter() - started
    results = sum(1 for f in futures if f.done() and f.exception() is None)
    failed = sum(
        1 for f in futures if f.done() and isinstance(f.exception(), ps.PipelineTerminated)
    )
    pipeline.cleanup()
    return seconds, results, failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cycles, print the figures, and judge them only when asked to."""
    args = parse_args(argv)
    rounds = [one_round() for _ in range(args.repetitions)]
    starts = [r.start_seconds for r in rounds]
    cleanups = [r.cleanup_seconds for r in rounds]
    leaky = [r for r in rounds if r.leaked_threads or r.leaked_actors]
    started = sorted({r.started_threads for r in rounds})
    p50_ms = percentile(cleanups, 0.50) * 1000

    print(f"idle {STAGES}-stage parallel pipeline, {len(rounds)} start/stop cycles")
    print(f"{'':<15} {'min':>8} {'p50':>8} {'max':>8}  (ms)")
    print(f"{'parallelize()':<15} {summary_ms(starts)}")
    print(f"{'cleanup()':<15} {summary_ms(cleanups)}")
    print(
        f"threads started per parallelize(): {', '.join(map(str, started))}; cycles that left "
        f"a thread or actor behind: {len(leaky)} of {len(rounds)}"
    )
    for r in leaky[:5]:
        print(f"  left behind: threads {list(r.leaked_threads)}, actors {r.leaked_actors}")

    drain_s, drain_results, _ = busy_stop(drain=True)
    abort_s, abort_results, abort_failed = busy_stop(drain=False)
    print(
        f"stop(drain=True)  with 1,000 accepted: {drain_s * 1000:8.1f} ms, {drain_results} results"
    )
    print(
        f"stop(drain=False) with 1,000 accepted: {abort_s * 1000:8.1f} ms, {abort_results} "
        f"results, {abort_failed} futures failed with PipelineTerminated"
    )

    targets = [
        (p50_ms < TARGET_P50_MS, f"p50 cleanup() {p50_ms:.2f} ms < {TARGET_P50_MS:.0f} ms"),
        (not leaky, f"no thread or actor left behind ({len(leaky)} cycles leaked)"),
        (drain_results == 1000, f"drain=True delivered {drain_results} of 1000 results"),
        (
            abort_s * 1000 < TARGET_P50_MS and abort_results + abort_failed == 1000,
            f"drain=False returned in {abort_s * 1000:.1f} ms < 100 ms; every future settled",
        ),
    ]
    for ok, text in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    missed = [text for ok, text in targets if not ok]
    if args.check and missed:
        print(f"FAIL: {len(missed)} target(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
