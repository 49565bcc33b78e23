"""Workload (11) of the suite: Ray stages (``executor="ray"``) against a hand-written Ray chain.

The baseline is what a Ray user writes by hand: four Ray actors, the driver submitting
each item's four calls at once with each call's ``ObjectRef`` passed to the next (data goes
actor to actor through the object store), at most ``window`` items in flight (it waits for
the oldest result before submitting more). Ours: the same four stages as
``add(..., executor="ray", ray_options={"max_in_flight": window})`` in a pipeline with
``parallelize(capacity=window)`` (the window is the one bound, as for the hand-written
chain), fed through the handle, every item's future awaited. Both use actors that hold no CPU
(``num_cpus=0``), so four fit on a 2-CPU machine; rounds alternate, figures are medians.

(11a) four 2 ms sleep stages, window 64 (ideal 500 items/s), target >= 0.9x;
(11b) 1 MiB numpy frames through four no-op stages, window 16, target >= 0.9x;
(11c) four no-op stages on small ints, window 64 (the driver's per-hop cost), target >= 0.7x;
(11d) 1 MiB frames made in the first of three Ray stages, the last returning a checksum:
      the driver's RSS must stay flat (growth < 20 MB over the run): data does not transit it.

    python benchmarks/ray_rows.py            # standalone (starts a local Ray)
    python benchmarks/ray_rows.py --quick
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from harness import error_text  # noqa: E402
from report import Row, Section, Verdict  # noqa: E402

import pystream_actors as ps  # noqa: E402

if TYPE_CHECKING:
    from workloads import Sizes

FREE = {"num_cpus": 0}
RSS_TARGET_MB = 20.0
FRAME = 1 << 20


def noop(x: Any) -> Any:
    return x


def sleep_2ms(x: Any) -> Any:
    time.sleep(0.002)
    return x


def make_frame(seed: int) -> Any:
    import numpy as np

    return np.full(FRAME // 8, float(seed))


def checksum(frame: Any) -> float:
    return float(frame[0])


class _Actor:
    def __init__(self, stage: Callable[[Any], Any]) -> None:
        self.stage = stage

    def f(self, x: Any) -> Any:
        return self.stage(x)


def hand_written(stages: list[Callable[[Any], Any]], inputs: list[Any], window: int) -> float:
    """items/s of a hand-written Ray actor chain with ObjectRef chaining, ``window`` in flight."""
    import ray

    actor = ray.remote(_Actor)
    actors = [actor.options(num_cpus=0).remote(stage) for stage in stages]
    ray.get([a.f.remote(0) for a in actors])  # up and warm
    pending: collections.deque[Any] = collections.deque()
    started = time.perf_counter()
    for x in inputs:
        if len(pending) >= window:
            ray.get(pending.popleft())
        ref = x
        for a in actors:
            ref = a.f.remote(ref)
        pending.append(ref)
    while pending:
        ray.get(pending.popleft())
    seconds = time.perf_counter() - started
    for a in actors:
        ray.kill(a)
    return len(inputs) / seconds


def ours(stages: list[Callable[[Any], Any]], inputs: list[Any], window: int) -> float:
    """items/s of the same stages as Ray stages of a pipeline."""
    pipeline = ps.Pipeline(name="ray_bench")
    options = {**FREE, "max_in_flight": window}  # the window is the one bound, as theirs
    for index, stage in enumerate(stages):
        pipeline.add(stage, f"S{index}", executor="ray", ray_options=options)
    with pipeline.parallelize(capacity=window):
        handle = pipeline.handle
        for f in [handle.submit(0) for _ in range(len(stages) * 2)]:
            f.result(timeout=60)  # up and warm
        started = time.perf_counter()
        futures = [handle.submit(x) for x in inputs]
        for f in futures:
            f.result(timeout=120)
        seconds = time.perf_counter() - started
    return len(inputs) / seconds


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_growth(items: int) -> tuple[float, float]:
    """(driver RSS growth in MB after warm-up, items/s): frames made and used in Ray only."""
    pipeline = ps.Pipeline(name="ray_rss")
    pipeline.add(make_frame, "Make", executor="ray", ray_options=FREE)
    pipeline.add(noop, "Pass", executor="ray", ray_options=FREE)
    pipeline.add(checksum, "Sum", executor="ray", ray_options=FREE)
    with pipeline.parallelize(capacity=16):
        handle = pipeline.handle
        for f in [handle.submit(i) for i in range(50)]:
            f.result(timeout=60)
        before = rss_mb()
        started = time.perf_counter()
        for f in [handle.submit(i) for i in range(items)]:
            assert f.result(timeout=120) >= 0
        rate = items / (time.perf_counter() - started)
        after = rss_mb()
    return after - before, rate


CASES: tuple[tuple[str, str, Callable[[], list[Callable[[Any], Any]]], int, float], ...] = (
    ("11a", "four 2 ms sleep stages, window 64", lambda: [sleep_2ms] * 4, 64, 0.9),
    ("11b", "1 MiB numpy frames, four no-op stages, window 16", lambda: [noop] * 4, 16, 0.9),
    ("11c", "four no-op stages, small ints, window 64", lambda: [noop] * 4, 64, 0.7),
)


def _inputs(key: str, items: int) -> list[Any]:
    if key == "11b":
        import numpy as np

        return [np.full(FRAME // 8, float(i)) for i in range(items)]
    return list(range(items))


def run(items: dict[str, int], rounds: int) -> list[Section]:
    """Measure every case; one section each, ratios are medians over alternating rounds."""
    import ray
    import ray.cloudpickle

    if __name__ != "__main__":  # the Ray workers cannot import this folder's modules
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=600 << 20,
            logging_level="ERROR",
            log_to_driver=False,
        )
    sections = []
    try:
        for key, title, stages, window, target in CASES:
            inputs = _inputs(key, items[key])
            section = Section(key, f"Ray: {title}, {len(inputs)} items, {rounds} rounds")
            theirs_rates: list[float] = []
            ours_rates: list[float] = []
            for round_ in range(rounds):
                order = (hand_written, ours) if round_ % 2 == 0 else (ours, hand_written)
                for runner in order:
                    rate = runner(stages(), inputs, window)
                    (theirs_rates if runner is hand_written else ours_rates).append(rate)
            theirs_rate, ours_rate = statistics.median(theirs_rates), statistics.median(ours_rates)
            ratio = ours_rate / theirs_rate
            section.rows.append(
                Row("hand-written Ray chain, ObjectRef chaining", f"{window}", theirs_rate)
            )
            row = Row(
                'ours, executor="ray"', f"capacity {window}", ours_rate, ratio=f"{ratio:.2f}x"
            )
            row.verdicts.append(
                Verdict(
                    row.label,
                    f"items/s >= {target}x hand-written",
                    ratio,
                    "PASS" if ratio >= target else "FAIL",
                    f"rounds: ours {[round(r) for r in ours_rates]}, "
                    f"hand-written {[round(r) for r in theirs_rates]}",
                )
            )
            section.rows.append(row)
            sections.append(section)
        growth, rate = rss_growth(items["11d"])
        section = Section("11d", f"Ray: 1 MiB frames through 3 Ray stages, {items['11d']} items")
        row = Row('ours, executor="ray"', "capacity 16", rate, note=f"driver RSS +{growth:.1f} MB")
        row.verdicts.append(
            Verdict(
                row.label,
                f"driver RSS growth < {RSS_TARGET_MB:.0f} MB",
                None,
                "PASS" if growth < RSS_TARGET_MB else "FAIL",
                f"+{growth:.1f} MB",
            )
        )
        section.rows.append(row)
        sections.append(section)
    finally:
        if started_here:
            ray.shutdown()
    return sections


def ray_rows(sizes: Sizes) -> Section:
    """The suite's entry: one section holding every Ray row (n/a without Ray)."""
    merged = Section("11", "Ray stages vs a hand-written Ray actor chain (4 stages)")
    try:
        import ray  # noqa: F401
    except ImportError:
        merged.rows.append(Row('ours, executor="ray"', note="n/a: ray is not installed"))
        return merged
    quick = sizes.rounds < 5
    try:
        for section in run(_sizes(quick), 3):
            for row in section.rows:
                row.note = "; ".join(x for x in (section.title, row.note) if x)
                merged.rows.append(row)
    except Exception as exc:
        row = Row('ours, executor="ray"', note=f"error: {error_text(exc)}")
        row.verdicts.append(Verdict(row.label, "runs", None, "FAIL", error_text(exc)))
        merged.rows.append(row)
    return merged


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"11a": 300, "11b": 100, "11c": 600, "11d": 200}
    return {"11a": 1000, "11b": 200, "11c": 2000, "11d": 400}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for section in run(_sizes(args.quick), args.rounds):
        print(section.title)
        for row in section.rows:
            rate = f"{row.items_per_s:,.1f} items/s" if row.items_per_s else ""
            print(f"  {row.label:45} {rate:>18} {row.ratio:>7} {row.note}")
            for verdict in row.verdicts:
                print(f"    {verdict.result}: {verdict.target} ({verdict.detail})")


if __name__ == "__main__":
    main()
