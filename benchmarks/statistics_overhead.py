"""What always-on statistics cost, and that their memory stays flat.

What it shows: the per-item time of a four-stage no-op pipeline (parallel mode) with
statistics on against the same pipeline with ``Pipeline(statistics=False)``, measured in
the same run, interleaved, best of several rounds; the target is at most 10% more per
item. Then the memory of the statistics while ``--items`` (default 1,000,000) items go
through a one-stage pipeline: traced allocations of the library's statistics modules
before and after must not grow.

    python benchmarks/statistics_overhead.py [--items N] [--rounds R] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pystream_actors as ps

OVERHEAD_TARGET = 1.10
MEMORY_TARGET_BYTES = 64 * 1024


def noop(item: Any) -> Any:
    return item


def per_item_seconds(statistics: bool, items: int) -> float:
    """Wall time per item for four no-op stages, fed as fast as the window allows."""
    pipeline = ps.Pipeline(statistics=statistics)
    for _ in range(4):
        pipeline.add(noop)
    with pipeline.parallelize(capacity=64):
        pipeline.handle.ask(-1, timeout=60)  # warm up
        started = time.perf_counter()
        for item in range(items - 1):
            pipeline.handle.tell(item, timeout=60)
        pipeline.handle.ask(items, timeout=60)
        return (time.perf_counter() - started) / items


def statistics_memory_growth(items: int) -> tuple[int, float]:
    """Bytes the statistics modules gained over ``items`` items, and items/s."""
    pipeline = ps.Pipeline()
    pipeline.add(noop, "Only")
    with pipeline.parallelize(capacity=256):
        tracemalloc.start()
        for item in range(10_000):  # fill every ring of recent durations while traced
            pipeline.handle.tell(item, timeout=60)
        pipeline.handle.ask(-1, timeout=60)
        before = tracemalloc.take_snapshot()
        started = time.perf_counter()
        for item in range(items):
            pipeline.handle.tell(item, timeout=60)
        pipeline.handle.ask(-1, timeout=60)
        rate = items / (time.perf_counter() - started)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        assert pipeline.statistics().stage("Only").processed == items + 10_002
    growth = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename.endswith(("_statistics.py", "_histogram.py"))
    )
    return growth, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="items for the memory run")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per variant")
    parser.add_argument("--per-round", type=int, default=20_000, help="items per timing round")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    on, off = [], []
    for _ in range(args.rounds):  # interleaved, so drifting machine load hits both alike
        on.append(per_item_seconds(True, args.per_round))
        off.append(per_item_seconds(False, args.per_round))
    best_on, best_off = min(on), min(off)
    paired = sorted(a / b for a, b in zip(on, off))
    ratio = paired[len(paired) // 2]  # median of the rounds' own ratios: robust to drift
    print(f"four no-op stages, parallel, {args.per_round} items, {args.rounds} interleaved rounds")
    print(f"  statistics off   {best_off * 1e6:8.2f} us/item (best round)")
    print(
        f"  statistics on    {best_on * 1e6:8.2f} us/item (best round), best/best {best_on / best_off:.3f}x"
    )
    print(f"  median of the rounds' on/off ratios: {ratio:.3f}x")
    growth, rate = statistics_memory_growth(args.items)
    print(f"statistics memory over {args.items:,} items ({rate:,.0f} items/s): {growth:+,} bytes")
    overhead_ok = ratio <= OVERHEAD_TARGET
    memory_ok = growth < MEMORY_TARGET_BYTES
    print(f"{'PASS' if overhead_ok else 'FAIL'}  overhead {ratio:.3f}x <= {OVERHEAD_TARGET}x")
    print(
        f"{'PASS' if memory_ok else 'FAIL'}  memory growth {growth:+,} B < {MEMORY_TARGET_BYTES:,} B"
    )
    return 1 if args.check and not (overhead_ok and memory_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
