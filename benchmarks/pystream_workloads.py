"""PyStream 0.2.0's side of the benchmark suite: the same workloads, printed as JSON.

Runs inside ``.venv-pystream`` (PyStream 0.2.0 imports only with numpy<2 beside the
pandas it pins, so it cannot share the project's virtualenv); ``suite.py`` starts it as a
subprocess and puts its figures in the same table. It measures:

- ``overhead``: four no-op stages in PyStream's parallel mode (a thread per stage joined
  by ``Queue(maxsize=1)``), items/s and microseconds per hop;
- ``latency``: one item at a time (``forward`` then ``get_results``) in serial mode, where
  PyStream runs every stage in the caller's thread: p50/p99;
- ``sleep``: four 2 ms sleeping stages in parallel mode, items/s;
- ``opencv``: the four OpenCV stages of ``cpu_stages.py`` in parallel mode, items/s (only
  if OpenCV is installed in that virtualenv).

PyStream's parallel mode keeps only the latest output (``get_results`` is lossy), so a
run's end is detected by the last stage itself: it counts the items it has finished and
sets an event at the last one. Throughput is the best of ``--repeats`` runs, each after
a warm-up; a hop is one stage-to-stage transfer and ``us_per_hop`` = wall time /
(items x 4), as in ``suite.py``.

    .venv-pystream/bin/python benchmarks/pystream_workloads.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

STAGES = 4
RUN_TIMEOUT = 120.0


def noop(data: Any) -> Any:
    """A stage that does nothing."""
    return data


def sleep_2ms(data: Any) -> Any:
    """A stage that waits 2 ms (a sleep releases the GIL, like I/O)."""
    time.sleep(0.002)
    return data


class CountingStage:
    """Wraps the last stage: counts finished items and sets ``done`` at the expected one."""

    def __init__(self, stage: Callable[[Any], Any]) -> None:
        self.stage = stage
        self.count = 0
        self.expected = -1
        self.done = threading.Event()

    def arm(self, expected: int) -> None:
        """Expect ``expected`` more items (call while the pipeline is idle)."""
        self.count = 0
        self.expected = expected
        self.done.clear()

    def __call__(self, data: Any) -> Any:
        out = self.stage(data)
        self.count += 1
        if self.count == self.expected:
            self.done.set()
        return out


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


def parallel_throughput(
    pystream: Any,
    stages: Sequence[Callable[[Any], Any]],
    make_item: Callable[[int], Any],
    items: int,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    """Best-of-``repeats`` wall time for ``items`` through a parallel PyStream pipeline."""
    counter = CountingStage(stages[-1])
    pipeline = pystream.Pipeline()
    for index, stage in enumerate(stages[:-1]):
        pipeline.add(stage, f"S{index + 1}")
    pipeline.add(counter, f"S{len(stages)}")
    pipeline.parallelize(block_input=True, input_timeout=RUN_TIMEOUT)
    payloads = [make_item(i) for i in range(items)]

    def run(count: int) -> float:
        counter.arm(count)
        refused: list[int] = []

        def feed() -> None:
            for payload in payloads[:count]:
                if not pipeline.forward(payload):
                    refused.append(1)

        started = time.perf_counter()
        feeder = threading.Thread(target=feed, name="pystream-feeder")
        feeder.start()
        finished = counter.done.wait(RUN_TIMEOUT)
        wall = time.perf_counter() - started
        feeder.join()
        if not finished or refused:
            raise RuntimeError(f"PyStream finished {counter.count} of {count} items in time")
        return wall

    try:
        run(min(warmup, items))
        best = min(run(items) for _ in range(repeats))
    finally:
        # PyStream's cleanup sleeps about 2 s; let it run while the next workload measures.
        threading.Thread(target=pipeline.cleanup, name="pystream-cleanup", daemon=True).start()
    return {
        "items": items,
        "seconds": best,
        "items_per_s": items / best,
        "us_per_hop": best / (items * STAGES) * 1e6,
    }


def serial_latency(pystream: Any, samples: int, repeats: int) -> dict[str, Any]:
    """One item at a time through a serial PyStream pipeline of four no-op stages."""
    pipeline = pystream.Pipeline()
    for index in range(STAGES):
        pipeline.add(noop, f"S{index + 1}")
    pipeline.serialize()
    for i in range(min(200, samples)):  # warm-up
        pipeline.forward(i)
        pipeline.get_results()
    latencies: list[float] = []
    for _ in range(repeats):
        for i in range(samples):
            started = time.perf_counter()
            pipeline.forward(i)
            out = pipeline.get_results()
            latencies.append(time.perf_counter() - started)
            if out != i:
                raise RuntimeError(f"PyStream serial returned {out!r} for {i}")
    pipeline.cleanup()
    latencies.sort()
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def guarded(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one workload; a failure becomes ``{"error": reason}`` instead of a crash."""
    try:
        return work()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def opencv_workload(pystream: Any, items: int, repeats: int) -> dict[str, Any]:
    """The four OpenCV stages of ``cpu_stages.py`` in parallel mode."""
    try:
        import cpu_stages
        import cv2
    except ImportError as exc:
        return {"error": f"OpenCV is not installed in this virtualenv ({exc})"}
    cpu_stages.single_threaded_opencv()
    frame = cpu_stages.make_frame()
    result = parallel_throughput(
        pystream, cpu_stages.OPENCV_STAGES, lambda _: frame, items, repeats, warmup=20
    )
    result["opencv"] = cv2.__version__
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (``suite.py`` passes its own sizes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--overhead-items", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=1000)
    parser.add_argument("--sleep-items", type=int, default=250)
    parser.add_argument("--opencv-items", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every workload and print one JSON object on stdout."""
    args = parse_args(argv)
    try:
        import pystream  # type: ignore[import-not-found]
    except Exception as exc:
        print(json.dumps({"error": f"cannot import pystream: {type(exc).__name__}: {exc}"}))
        return 0
    import numpy

    results: dict[str, Any] = {
        "versions": {
            "python": platform.python_version(),
            "pystream": getattr(pystream, "__version__", "?"),
            "numpy": numpy.__version__,
        },
        "overhead": guarded(
            lambda: parallel_throughput(
                pystream, [noop] * STAGES, int, args.overhead_items, args.repeats, warmup=500
            )
        ),
        "latency": guarded(lambda: serial_latency(pystream, args.latency_samples, args.repeats)),
        "sleep": guarded(
            lambda: parallel_throughput(
                pystream, [sleep_2ms] * STAGES, int, args.sleep_items, args.repeats, warmup=20
            )
        ),
        "opencv": guarded(lambda: opencv_workload(pystream, args.opencv_items, args.repeats)),
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
