"""Statistics snapshots: counts, percentiles and the bottleneck stage."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import pystream_actors as ps
from pystream_actors._durations import Durations


def sleeper(seconds: float) -> object:
    """A stage that waits ``seconds`` on an event nobody sets (no bare sleep)."""
    never = threading.Event()

    def stage(x: object) -> object:
        never.wait(seconds)
        return x

    return stage


@pytest.mark.parametrize("mode", ["serialize", "parallelize"])
def test_bottleneck_is_the_slowest_stage(mode: str) -> None:
    """A third stage six times as slow as the others is named the bottleneck and is busiest
    (a ratio a loaded machine cannot overturn: the others would need 6x their time)."""
    pipeline = ps.Pipeline()
    pipeline.add(sleeper(0.002), "A")
    pipeline.add(sleeper(0.002), "B")
    pipeline.add(sleeper(0.012), "Slow")
    pipeline.add(sleeper(0.002), "D")
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


def test_durations_percentiles_and_fixed_memory() -> None:
    """Percentiles come from the most recent records; mean and max from all; no growth."""
    durations = Durations()
    size = len(durations.recent)
    for i in range(1, 10_001):
        durations.record(i / 1_000_000)  # 1 us .. 10 ms uniform
    assert len(durations.recent) == size
    recent = [i / 1_000_000 for i in range(10_001 - size, 10_001)]  # what the ring kept
    assert durations.percentile(0.5) == pytest.approx(recent[len(recent) // 2 - 1])
    assert durations.percentile(0.99) == pytest.approx(
        recent[int(len(recent) * 0.99) - 1], rel=1e-3
    )
    assert durations.max == pytest.approx(0.01)
    assert durations.mean == pytest.approx(0.0050005)


def test_statistics_off_keeps_counts_only() -> None:
    """Pipeline(statistics=False) still counts items but records no timings."""
    pipeline = ps.Pipeline(statistics=False)
    pipeline.add(lambda x: x, "Only")
    with pipeline.parallelize():
        for i in range(20):
            pipeline.handle.ask(i, timeout=30)
        stats = pipeline.statistics()
    assert stats.completed == 20 and stats.stage("Only").processed == 20
    assert stats.latency.mean == 0.0 and stats.stage("Only").service_time.mean == 0.0


def test_statistics_memory_stays_flat_over_a_million_records() -> None:
    """A million recorded items do not grow the counters' memory at all."""
    import tracemalloc

    from pystream_actors._statistics import PipelineCounters, StageCounters

    stage, pipeline = StageCounters("S"), PipelineCounters()
    tracemalloc.start()
    for i in range(10_000):  # warm up while traced: every ring of recent durations is full
        stage.record(i * 1e-3, i * 1e-3 + 1e-4, 1e-5, True)
        pipeline.record_done(0.0, i * 1e-3, "ok")
    before = tracemalloc.take_snapshot()
    for i in range(1_000_000):
        now = 20.0 + i * 1e-5
        stage.record(now, now + 2e-6 * (i % 100), 1e-6, i % 97 != 0)
        pipeline.record_done(now - 1e-3, now, "ok")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 10_000, f"statistics grew by {growth} bytes over 1,000,000 items"
    assert stage.processed + stage.failed == 1_010_000
