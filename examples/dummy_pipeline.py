"""PyStream's dummy pipeline, on pystream_actors: the whole API tour in a few seconds.

Three stages that only sleep a few milliseconds and annotate a dict stand in for real
work. The script shows, in order:

1. ``serialize()`` with ``forward()`` and ``get_results()``: one item at a time;
2. ``parallelize()`` with ``start_loop(period)`` / ``stop_loop()``: an input generator
   feeds the pipeline on a clock while ``get_results()`` reads the newest output;
3. ``get_profiles()``: PyStream's per-stage latency and throughput dictionaries;
4. ``cleanup()``: every stage's ``cleanup()`` runs and every thread is joined.

No third-party package is needed: ``python examples/dummy_pipeline.py``.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pystream_actors as ps

Data = dict[str, Any]

LOOP_PERIOD = 0.010  # seconds between inputs in the loop: faster than the slowest stage
LOOP_RESULTS = 40  # outputs to read from the loop before stopping it


class DummyStage(ps.Stage):
    """Sleeps ``work`` seconds (the stand-in for real processing) and stamps the item.

    A ``Stage`` subclass, so it can hold state (a counter) and get ``setup()`` and
    ``cleanup()`` calls on its own thread.
    """

    def __init__(self, work: float) -> None:
        self.work = work
        self.calls = 0
        self.cleaned_up = False

    def setup(self) -> None:
        """Runs once, on the stage's own thread, before the first item."""
        self.cleaned_up = False

    def __call__(self, data: Data) -> Data:
        """Do the pretend work, then record which stage saw the item."""
        time.sleep(self.work)
        self.calls += 1
        data.setdefault("visited", []).append(self.name)
        return data

    def cleanup(self) -> None:
        """Runs once at ``cleanup()``; a real stage would close its camera or model here."""
        self.cleaned_up = True


def stamp_latency(data: Data) -> Data:
    """A plain function stage: any one-argument callable works as a stage."""
    time.sleep(0.002)
    data["latency_ms"] = round((time.perf_counter() - data["created"]) * 1000, 2)
    return data


def make_input_generator() -> Callable[[], Data]:
    """The input generator: each call makes a fresh, numbered item with its birth time."""
    counter = itertools.count()

    def generate() -> Data:
        return {"id": next(counter), "created": time.perf_counter()}

    return generate


def build_pipeline(stages: list[DummyStage]) -> ps.Pipeline:
    """Three stateful stages then a function; profiling on, so ``get_profiles()`` works."""
    pipeline = ps.Pipeline(input_generator=make_input_generator(), use_profiler=True)
    for index, stage in enumerate(stages, start=1):
        pipeline.add(stage, f"Dummy{index}")
    pipeline.add(stamp_latency, "Stamp")
    return pipeline


def show(label: str, data: Data | None) -> None:
    """One output on one line."""
    if data is None:
        print(f"  {label}: no new output")
        return
    print(
        f"  {label}: id={data['id']:<3} latency={data['latency_ms']:6.2f} ms "
        f"visited={' > '.join(data['visited'])}"
    )


def run_serial(pipeline: ps.Pipeline) -> None:
    """Serial mode: ``forward()`` returns once the item went through every stage."""
    print("Serial mode: forward() then get_results()")
    pipeline.serialize()
    for _ in range(5):
        pipeline.forward()  # no argument: the input generator makes the item
        show("get_results", pipeline.get_results())
    show("get_results again", pipeline.get_results())  # an output is returned only once


def run_parallel(pipeline: ps.Pipeline) -> None:
    """Parallel mode fed by ``start_loop``; ``get_results()`` waits for each new output.

    Calling ``parallelize()`` on the serialized pipeline rebuilds it in the new mode: each
    stage is cleaned up on its old thread and set up again on its new one.
    """
    print(f"\nParallel mode: start_loop({LOOP_PERIOD}) and get_results()")
    pipeline.parallelize(block_output=True, output_timeout=2.0)
    pipeline.start_loop(LOOP_PERIOD)
    seen: list[int] = []
    try:
        while len(seen) < LOOP_RESULTS:
            data = pipeline.get_results()  # blocks until a new output (or the timeout)
            if data is None:
                print("  no output within the timeout; stopping early")
                break
            seen.append(data["id"])
            if len(seen) % 10 == 0:
                show(f"output #{len(seen)}", data)
    finally:
        pipeline.stop_loop()
    if seen:
        skipped = seen[-1] - seen[0] + 1 - len(seen)
        print(
            f"  read {len(seen)} outputs, ids {seen[0]}..{seen[-1]}; {skipped} skipped "
            "(get_results() returns only the newest output, so a slow reader skips some)"
        )


def show_profiles(pipeline: ps.Pipeline) -> None:
    """PyStream's profile format: mean latency (s) and throughput (items/s) per key."""
    latency, throughput = pipeline.get_profiles()
    print("\nget_profiles() (parallel run):")
    print(f"  {'key':<26} {'latency ms':>10} {'items/s':>8}")
    for key in latency:
        print(f"  {key:<26} {latency[key] * 1000:10.2f} {throughput[key]:8.1f}")


def main() -> int:
    """Walk through both modes, the profiles and the cleanup."""
    stages = [DummyStage(0.004), DummyStage(0.006), DummyStage(0.004)]
    pipeline = build_pipeline(stages)
    with tempfile.TemporaryDirectory() as profile_dir:
        ps.set_profiler_db_folder(profile_dir)  # cleanup() saves the profiles there
        try:
            run_serial(pipeline)
            run_parallel(pipeline)
            show_profiles(pipeline)
        finally:
            pipeline.cleanup()
    print(
        f"\ncleanup(): every stage cleaned up = {all(s.cleaned_up for s in stages)}; "
        f"items handled per stage = {[s.calls for s in stages]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
