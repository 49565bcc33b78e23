"""Statistics snapshots: counts, percentiles and the bottleneck stage."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import pystream_actors as ps
from pystream_actors._histogram import Histogram


def sleeper(seconds: float) -> object:
    """A stage that waits ``seconds`` on an event nobody sets (no bare sleep)."""
    never = threading.Event()

    def stage(x: object) -> object:
        never.wait(seconds)
        return x

    return stage


@pytest.mark.parametrize("mode", ["serialize", "parallelize"])
def test_bottleneck_is_the_slowest_stage(mode: str) -> None:
    """A third stage twice as slow as the others is named the bottleneck and is busiest."""
    pipeline = ps.Pipeline()
    pipeline.add(sleeper(0.004), "A")
    pipeline.add(sleeper(0.004), "B")
    pipeline.add(sleeper(0.008), "Slow")
    pipeline.add(sleeper(0.004), "D")
    with getattr(pipeline, mode)():
        futures = [pipeline.handle.submit(i, timeout=30) for i in range(60)]
        for future in futures:
            future.result(timeout=30)
        stats = pipeline.statistics()
    assert stats.bottleneck == "Slow"
    slow = stats.stage("Slow")
    assert all(slow.utilization >= s.utilization for s in stats.stages)
    assert slow.service_time.mean > stats.stage("A").service_time.mean
    assert stats.completed == 60
    assert stats.in_flight == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.completed = 0  # type: ignore[misc]


def test_histogram_percentiles_are_close_and_memory_is_fixed() -> None:
    """Percentiles land within the bucket error; the bucket list never grows."""
    histogram = Histogram()
    size = len(histogram.counts)
    for i in range(1, 10_001):
        histogram.record(i / 1_000_000)  # 1 us .. 10 ms uniform
    assert len(histogram.counts) == size
    assert histogram.percentile(0.5) == pytest.approx(0.005, rel=0.04)
    assert histogram.percentile(0.99) == pytest.approx(0.0099, rel=0.04)
    assert histogram.max == pytest.approx(0.01)
    assert histogram.mean == pytest.approx(0.0050005)
