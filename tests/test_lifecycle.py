"""Start-up, rebuild and shutdown: prompt, and no actor or thread left behind."""

from __future__ import annotations

import threading

import pytest

import pystream_actors as ps
from tests.conftest import our_threads


def four_stage_pipeline() -> ps.Pipeline:
    pipeline = ps.Pipeline()
    for _ in range(4):
        pipeline.add(lambda x: x + 1)
    return pipeline


def test_cleanup_of_idle_parallel_pipeline_leaves_no_thread() -> None:
    """cleanup() joins every actor thread before it returns."""
    before = set(our_threads())
    pipeline = four_stage_pipeline().parallelize()
    assert len(set(our_threads()) - before) == 5  # four stages and the coordinator
    pipeline.cleanup()
    assert set(our_threads()) <= before


def test_choosing_a_mode_again_rebuilds_without_leaking() -> None:
    """serialize()/parallelize() on a running pipeline replaces its actors, leaking none."""
    before = set(our_threads())
    pipeline = four_stage_pipeline()
    for round_ in range(10):
        if round_ % 2:
            pipeline.serialize()
        else:
            pipeline.parallelize()
        assert pipeline.handle.ask(0, timeout=30) == 4
        assert len(set(our_threads()) - before) == 5
    pipeline.cleanup()
    assert set(our_threads()) <= before


def test_rebuild_finishes_items_already_accepted() -> None:
    """Items accepted before a rebuild still resolve with their outputs."""
    pipeline = four_stage_pipeline().parallelize()
    futures = [pipeline.handle.submit(i) for i in range(200)]
    pipeline.serialize()
    assert [f.result(timeout=30) for f in futures] == [i + 4 for i in range(200)]
    pipeline.cleanup()


def test_context_manager_cleans_up() -> None:
    """Leaving a with block runs cleanup()."""
    before = set(our_threads())
    with four_stage_pipeline().parallelize() as pipeline:
        assert pipeline.handle.ask(1, timeout=30) == 5
    assert pipeline.mode is None
    assert set(our_threads()) <= before


def test_handle_stop_without_drain_fails_pending_futures() -> None:
    """stop(drain=False) fails every pending future with PipelineTerminated at once."""
    release = threading.Event()

    def gated(x: int) -> int:
        release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gated)
    pipeline.add(lambda x: x)
    pipeline.parallelize(capacity=100)
    futures = [pipeline.handle.submit(i) for i in range(50)]
    stopper = threading.Thread(target=pipeline.handle.stop, kwargs={"drain": False})
    stopper.start()
    for future in futures[1:]:
        with pytest.raises(ps.PipelineTerminated, match="stopped"):
            future.result(timeout=30)
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    pipeline.cleanup()


def test_many_threads_share_one_handle() -> None:
    """Futures from many submitting threads each resolve to their own item's result."""
    pipeline = four_stage_pipeline().parallelize(capacity=16)
    errors: list[str] = []

    def submitter(offset: int) -> None:
        futures = [(i, pipeline.handle.submit(offset + i, timeout=30)) for i in range(500)]
        for i, future in futures:
            if future.result(timeout=30) != offset + i + 4:
                errors.append(f"{offset + i}")

    threads = [threading.Thread(target=submitter, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert pipeline.statistics().completed == 2000
    pipeline.cleanup()


def test_statistics_survive_cleanup() -> None:
    """The final figures of a run stay readable after cleanup()."""
    pipeline = four_stage_pipeline()
    with pytest.raises(ps.PipelineUndefined):
        pipeline.statistics()
    with pipeline.parallelize():
        for i in range(10):
            pipeline.handle.ask(i, timeout=30)
    assert pipeline.statistics().completed == 10
