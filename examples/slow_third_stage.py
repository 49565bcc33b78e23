"""A four-stage pipeline whose third stage is twice as slow: how a bottleneck looks.

The stages wait 2, 2, 4 and 2 ms (a wait releases the GIL, like I/O or a native call).
In parallel mode the pipeline can go no faster than its slowest stage, ``Detect``
(about 250 items/s): it shows the highest utilization and the command line's live view
marks it as the bottleneck::

    pystream-actors run examples/slow_third_stage.py:build --duration 5
    pystream-actors run examples/slow_third_stage.py:build --rate 300 --on-full drop_oldest
    pystream-actors graph examples/slow_third_stage.py:build --format mermaid

At 200 items/s ``Detect`` is busy about 80% of the time and the others about 40%; past
250 items/s its queue grows, and the ``on_full`` policy decides what happens next.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pystream_actors as ps

STAGE_MILLISECONDS = {"Decode": 2.0, "Resize": 2.0, "Detect": 4.0, "Publish": 2.0}
"""Each stage's work per item, in order; the third one is the slow one."""

SLOW_STAGE = "Detect"


class Work:
    """Stands in for real processing: waits a fixed time without holding the GIL."""

    def __init__(self, milliseconds: float) -> None:
        self.seconds = milliseconds / 1000
        self._never = threading.Event()  # never set: wait() is an interruptible sleep

    def __call__(self, data: Any) -> Any:
        self._never.wait(self.seconds)
        return data


def build() -> ps.Pipeline:
    """The pipeline, not started: the caller chooses serial or parallel mode."""
    frames = itertools.count()
    pipeline = ps.Pipeline(input_generator=lambda: next(frames))
    for name, milliseconds in STAGE_MILLISECONDS.items():
        pipeline.add(Work(milliseconds), name)
    return pipeline


def main(items: int = 300) -> str | None:
    """Run ``items`` through the pipeline in parallel mode and name the bottleneck."""
    pipeline = build()
    assert pipeline.input_generator is not None
    with pipeline.parallelize(capacity=8):
        futures = [pipeline.handle.submit(pipeline.input_generator()) for _ in range(items)]
        for future in futures:
            future.result(timeout=60)
        stats = pipeline.statistics()
    for stage in stats.stages:
        print(
            f"{stage.name:<8} utilization {stage.utilization:5.0%}  {stage.throughput:6.1f} items/s"
        )
    print(f"bottleneck: {stats.bottleneck}")
    return stats.bottleneck


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Show which stage limits the pipeline.")
    parser.add_argument("--items", type=int, default=300)
    main(parser.parse_args().items)
