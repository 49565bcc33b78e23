"""Benchmark: parallel mode should run a four-stage pipeline about four times faster.

Four stages each sleep 10 ms (a sleep releases the GIL, like I/O or a native call), so
serial mode is bound by the sum of the stages (about 25 items/s) and parallel mode by the
slowest one (about 100 items/s): the ideal ratio is 4x. The same items go through both
modes, submitted all at once and awaited through their futures; the ratio is measured
in this run, against the serial baseline of this run, so it does not depend on the
machine's speed.

    python benchmarks/parallel_speedup.py            # print the figures
    python benchmarks/parallel_speedup.py --check    # also exit 1 if the ratio < 3.0
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pystream_actors as ps

STAGES = 4
STAGE_SECONDS = 0.010
TARGET_RATIO = 3.0
RESULT_TIMEOUT = 60.0


def sleep_stage(data: Any) -> Any:
    """Stand-in for real work that releases the GIL; returns its input unchanged."""
    time.sleep(STAGE_SECONDS)
    return data


@dataclass(frozen=True)
class Measurement:
    """One mode's figures: wall-clock rate and the library's own statistics."""

    mode: str
    items: int
    wall_seconds: float
    stats: ps.PipelineStatistics

    @property
    def items_per_second(self) -> float:
        """Items over the wall time from the first submit to the last result."""
        return self.items / self.wall_seconds


def measure(mode: str, items: int) -> Measurement:
    """Push ``items`` through a fresh pipeline in ``mode``: submit all, then await all.

    Submitting runs ahead of the pipeline until the in-flight window is full, then
    waits for room (back-pressure), so both modes always have work queued.
    """
    pipeline = ps.Pipeline()
    for index in range(1, STAGES + 1):
        pipeline.add(sleep_stage, f"Sleep{index}")
    running = pipeline.serialize() if mode == "serial" else pipeline.parallelize()
    with running:
        started = time.perf_counter()
        futures = [pipeline.handle.submit(i, timeout=RESULT_TIMEOUT) for i in range(items)]
        outputs = [future.result(timeout=RESULT_TIMEOUT) for future in futures]
        wall = time.perf_counter() - started
        stats = pipeline.statistics()
    if outputs != list(range(items)):
        raise RuntimeError(f"{mode} mode returned wrong or reordered outputs")
    return Measurement(mode, items, wall, stats)


def report(result: Measurement) -> None:
    """One line per mode."""
    print(
        f"{result.mode:<9} {result.items_per_second:8.1f} items/s  "
        f"({result.items} items in {result.wall_seconds:.2f} s; library: "
        f"{result.stats.mean_throughput:.1f} items/s, "
        f"mean latency {result.stats.latency.mean * 1000:.0f} ms with the window full)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=200, help="items per mode (default 200)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if parallel/serial is below {TARGET_RATIO}",
    )
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both modes, print the ratio, and judge it only when asked to."""
    args = parse_args(argv)
    ideal = STAGES * STAGE_SECONDS * 1000
    print(
        f"{STAGES} stages x {STAGE_SECONDS * 1000:.0f} ms sleep, {args.items} items per mode "
        f"(serial ideal {1000 / ideal:.0f} items/s, parallel ideal {1 / STAGE_SECONDS:.0f})"
    )
    serial = measure("serial", args.items)
    report(serial)
    parallel = measure("parallel", args.items)
    report(parallel)
    ratio = parallel.items_per_second / serial.items_per_second
    print(f"ratio     {ratio:8.2f}x parallel/serial (ideal {STAGES}x, target >= {TARGET_RATIO}x)")
    if args.check and ratio < TARGET_RATIO:
        print(f"FAIL: speed-up {ratio:.2f}x is below {TARGET_RATIO}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
