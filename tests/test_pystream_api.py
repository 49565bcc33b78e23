"""PyStream's public API, behaviour by behaviour, on real actors."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import pystream_actors as ps
from pystream_actors import functional


def add_one(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


class Tagger(ps.Stage):
    """A Stage subclass that records cleanup and setup calls."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.cleanups = 0
        self.setup_thread: int | None = None  # thread idents: every actor of a stage
        self.call_threads: set[int] = set()  # shares a thread name, so names prove nothing

    def setup(self) -> None:
        self.setup_thread = threading.get_ident()

    def __call__(self, data: list[str]) -> list[str]:
        self.call_threads.add(threading.get_ident())
        return [*data, self.tag]

    def cleanup(self) -> None:
        self.cleanups += 1


def test_serial_forward_runs_every_stage_before_returning() -> None:
    """serialize(): forward blocks until the item left the last stage; get_results reads it once."""
    pipeline = ps.Pipeline()
    pipeline.add(add_one)
    pipeline.add(double)
    assert pipeline.serialize() is pipeline
    assert pipeline.forward(3) is True
    assert pipeline.get_results() == 8
    assert pipeline.get_results() is None
    pipeline.cleanup()


def test_serial_mode_keeps_one_item_in_flight() -> None:
    """In serial mode the next item enters only after the previous one left the last stage."""
    lock = threading.Lock()
    inside = 0
    most_inside = 0

    def enter(x: int) -> int:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
        return x

    def leave(x: int) -> int:
        nonlocal inside
        with lock:
            inside -= 1
        return x

    pipeline = ps.Pipeline()
    for stage in (enter, add_one, add_one, leave):
        pipeline.add(stage)
    with pipeline.serialize():
        futures = [pipeline.handle.submit(i) for i in range(50)]
        assert [f.result(timeout=30) for f in futures] == [i + 2 for i in range(50)]
    assert most_inside == 1


def test_parallel_stages_work_at_the_same_time_and_keep_order() -> None:
    """parallelize(): stage 1 works on item n+1 while stage 2 still holds item n."""
    second_stage_holding = threading.Event()
    first_stage_moved_on = threading.Event()

    def first(x: int) -> int:
        if x == 1:
            # Only possible if stage 2 holds item 0 concurrently.
            assert second_stage_holding.wait(30)
            first_stage_moved_on.set()
        return x

    def second(x: int) -> int:
        if x == 0:
            second_stage_holding.set()
            assert first_stage_moved_on.wait(30)
        return x * 10

    pipeline = ps.Pipeline()
    pipeline.add(first)
    pipeline.add(second)
    with pipeline.parallelize():
        futures = [pipeline.handle.submit(i) for i in range(20)]
        assert [f.result(timeout=30) for f in futures] == [i * 10 for i in range(20)]
    assert first_stage_moved_on.is_set()


def test_parallel_forward_and_latest_result_semantics() -> None:
    """Parallel get_results keeps only the newest output and never returns one twice."""
    pipeline = ps.Pipeline()
    pipeline.add(add_one)
    with pipeline.parallelize():
        assert all(pipeline.forward(i) for i in range(10))
        # Wait for the last item through its own future-free path: a submit after them.
        assert pipeline.handle.ask(100, timeout=30) == 101
        assert pipeline.get_results() == 101
        assert pipeline.get_results() is None


def test_block_output_waits_for_a_result() -> None:
    """With block_output, get_results waits up to output_timeout for the next output."""
    release = threading.Event()

    def gated(x: int) -> int:
        assert release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gated)
    with pipeline.parallelize(block_output=True, output_timeout=30):
        assert pipeline.forward(7)
        threading.Timer(0.05, release.set).start()
        assert pipeline.get_results() == 7


def test_parallel_forward_returns_false_when_full_and_not_blocking() -> None:
    """block_input=False: forward refuses at once when the pipeline has no room."""
    release = threading.Event()

    def gated(x: int) -> int:
        assert release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gated)
    with pipeline.parallelize(block_input=False, capacity=2):
        assert pipeline.forward(1)
        assert pipeline.forward(2)
        assert pipeline.forward(3) is False
        assert pipeline.handle.rejected == 1
        release.set()


def test_forward_uses_input_generator() -> None:
    """forward() with no data (or None) takes the next value from the input generator."""
    values = iter(range(100, 200))
    pipeline = ps.Pipeline(input_generator=lambda: next(values))
    pipeline.add(add_one)
    with pipeline.serialize():
        pipeline.forward()
        assert pipeline.get_results() == 101
        pipeline.forward(None)
        assert pipeline.get_results() == 102
        pipeline.forward(5)
        assert pipeline.get_results() == 6


def test_start_loop_feeds_the_pipeline_until_stopped() -> None:
    """start_loop pushes generator values periodically; stop_loop stops the pushes."""
    counter = iter(range(1_000_000))
    enough = threading.Event()
    seen: list[int] = []

    def collect(x: int) -> int:
        seen.append(x)
        if len(seen) >= 5:
            enough.set()
        return x

    pipeline = ps.Pipeline(input_generator=lambda: next(counter))
    pipeline.add(collect)
    with pipeline.parallelize():
        pipeline.start_loop(0.001)
        assert enough.wait(30)
        pipeline.stop_loop()
        count_after_stop = pipeline.handle.ask(-1, timeout=30)
        assert count_after_stop == -1
        seen_at_stop = list(seen)
        assert pipeline.handle.ask(-2, timeout=30) == -2
        assert seen[len(seen_at_stop) :] == [-2]
    assert seen[:5] == [0, 1, 2, 3, 4]


def test_default_names_count_per_pipeline() -> None:
    """Default stage names are Stage_<n>, counted per pipeline, not globally."""
    first = ps.Pipeline()
    first.add(add_one)
    first.add(add_one)
    second = ps.Pipeline()
    second.add(add_one)
    assert first.stage_names == ["Stage_1", "Stage_2"]
    assert second.stage_names == ["Stage_1"]


def test_stage_name_attribute_is_used_and_set() -> None:
    """A Stage's own name is used when add() gets none; the chosen name is written back."""
    named = Tagger("a")
    named.name = "Decoder"
    unnamed = Tagger("b")
    pipeline = ps.Pipeline()
    pipeline.add(named)
    pipeline.add(unnamed)
    assert pipeline.stage_names == ["Decoder", "Stage_2"]
    assert unnamed.name == "Stage_2"


@pytest.mark.parametrize("bad", ["a-b", "a__b", "_a", "a_", "MainPipeline", "FinalStage", ""])
def test_invalid_stage_names_raise(bad: str) -> None:
    """Names with '-' or '__', outer underscores or reserved names are refused with the fix."""
    pipeline = ps.Pipeline()
    with pytest.raises(ps.InvalidStageName) as info:
        pipeline.add(add_one, bad)
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value) or bad == ""


def test_duplicate_stage_name_raises() -> None:
    """Two stages with one name would make profiles ambiguous: refused."""
    pipeline = ps.Pipeline()
    pipeline.add(add_one, "Same")
    with pytest.raises(ps.InvalidStageName, match="already"):
        pipeline.add(double, "Same")


def test_non_callable_stage_raises() -> None:
    """A stage that cannot be called is refused when added, with what to pass instead."""
    pipeline = ps.Pipeline()
    with pytest.raises(ps.InvalidStage, match="not callable") as info:
        pipeline.add(42, "Answer")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


def test_empty_pipeline_cannot_start() -> None:
    """Choosing a mode with no stages says to add one."""
    with pytest.raises(ps.PipelineUndefined, match="add"):
        ps.Pipeline().serialize()
    with pytest.raises(ps.PipelineUndefined, match="add"):
        ps.Pipeline().parallelize()


def test_forward_before_a_mode_and_after_cleanup_raises() -> None:
    """forward and get_results need a chosen mode; after cleanup the pipeline is undefined."""
    pipeline = ps.Pipeline()
    pipeline.add(add_one)
    with pytest.raises(ps.PipelineUndefined, match="serialize"):
        pipeline.forward(1)
    with pytest.raises(ps.PipelineUndefined):
        pipeline.get_results()
    pipeline.parallelize()
    assert pipeline.forward(1)
    pipeline.cleanup()
    with pytest.raises(ps.PipelineUndefined):
        pipeline.forward(1)
    with pytest.raises(ps.PipelineUndefined):
        pipeline.handle.submit(1)


def test_forward_raises_terminated_when_a_stage_actor_died() -> None:
    """A running pipeline whose stage actors were stopped raises PipelineTerminated."""
    pipeline = ps.Pipeline()
    pipeline.add(add_one)
    pipeline.parallelize()
    runtime = pipeline.handle._runtime
    assert runtime is not None
    runtime.records[0].ref.stop(timeout=30)
    with pytest.raises(ps.PipelineTerminated):
        pipeline.forward(1)
    pipeline.cleanup()


def test_cleanup_calls_every_stage_cleanup_once_and_is_idempotent() -> None:
    """cleanup() runs each Stage.cleanup() once; a second cleanup() does nothing."""
    a, b = Tagger("a"), Tagger("b")
    pipeline = ps.Pipeline()
    pipeline.add(a)
    pipeline.add(b)
    pipeline.parallelize()
    assert pipeline.handle.ask([], timeout=30) == ["a", "b"]
    pipeline.cleanup()
    pipeline.cleanup()
    assert (a.cleanups, b.cleanups) == (1, 1)


def test_setup_runs_in_the_stage_thread_before_the_first_item() -> None:
    """Stage.setup() runs once, on the thread that then runs __call__."""
    stage = Tagger("a")
    pipeline = ps.Pipeline()
    pipeline.add(stage)
    with pipeline.parallelize():
        pipeline.handle.ask([], timeout=30)
        pipeline.handle.ask([], timeout=30)
    assert stage.setup_thread is not None
    assert stage.call_threads == {stage.setup_thread}


def test_serial_pipeline_as_a_stage_of_a_parallel_one() -> None:
    """as_stage(): a serialized child runs inside a parallel parent; order is kept."""
    child = ps.Pipeline()
    child.add(add_one, "StageA")
    child.add(double, "StageB")
    child.serialize()
    parent = ps.Pipeline()
    parent.add(add_one, "First")
    parent.add(child.as_stage(), "Child")
    with parent.parallelize():
        futures = [parent.handle.submit(i) for i in range(30)]
        assert [f.result(timeout=30) for f in futures] == [((i + 1) + 1) * 2 for i in range(30)]
    assert child.mode is None  # cleaning up the parent cleaned up the child


def test_parallel_pipeline_as_a_stage_of_a_serial_one() -> None:
    """as_stage(): a parallelized child runs inside a serial parent."""
    child = ps.Pipeline()
    child.add(double, "StageA")
    child.parallelize()
    parent = ps.Pipeline()
    parent.add(child.as_stage(), "Child")
    parent.add(add_one, "Last")
    with parent.serialize():
        for i in range(10):
            assert parent.forward(i)
            assert parent.get_results() == i * 2 + 1


def test_as_stage_needs_a_built_pipeline() -> None:
    """as_stage() on a pipeline with no mode says to build it first."""
    child = ps.Pipeline()
    child.add(add_one)
    with pytest.raises(ps.PipelineUndefined, match="serialize"):
        child.as_stage()


def test_get_profiles_keys_and_values() -> None:
    """Profiles are keyed MainPipeline, MainPipeline__Stage and MainPipeline__Child__StageA."""
    child = ps.Pipeline(use_profiler=True)
    child.add(add_one, "StageA")
    child.serialize()
    parent = ps.Pipeline(use_profiler=True)
    parent.add(add_one, "First")
    parent.add(child.as_stage(), "Child")
    with parent.parallelize():
        for i in range(20):
            parent.handle.ask(i, timeout=30)
        latency, throughput = parent.get_profiles()
    expected = {
        ps.MAIN_PIPELINE_NAME,
        "MainPipeline__First",
        "MainPipeline__Child",
        "MainPipeline__Child__StageA",
    }
    assert set(latency) == expected
    assert set(throughput) == expected
    assert all(value > 0 for value in latency.values())
    assert all(value > 0 for value in throughput.values())


def test_get_profiles_without_profiler_logs_and_returns_empty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With use_profiler=False get_profiles logs an error and returns ({}, {})."""
    pipeline = ps.Pipeline()
    pipeline.add(add_one)
    with pipeline.serialize(), caplog.at_level(logging.ERROR, logger="pystream_actors"):
        assert pipeline.get_profiles() == ({}, {})
    assert "use_profiler=True" in caplog.text


def test_profiler_folder_roundtrip_and_saved_profiles(tmp_path: Any) -> None:
    """set/get_profiler_db_folder work; a profiled pipeline saves its profiles there on cleanup."""
    old = ps.get_profiler_db_folder()
    try:
        ps.set_profiler_db_folder(tmp_path / "profiles")
        assert ps.get_profiler_db_folder() == str(tmp_path / "profiles")
        pipeline = ps.Pipeline(use_profiler=True)
        pipeline.add(add_one, "Only")
        with pipeline.serialize():
            pipeline.forward(1)
        saved = (tmp_path / "profiles" / "last_profiles.json").read_text()
        assert "MainPipeline__Only" in saved
    finally:
        ps.set_profiler_db_folder(old)


def test_module_level_names() -> None:
    """MAIN_PIPELINE_NAME and the package logger (with only a NullHandler) are exported."""
    assert ps.MAIN_PIPELINE_NAME == "MainPipeline"
    assert ps.logger.name == "pystream_actors"
    assert all(isinstance(h, logging.NullHandler) for h in ps.logger.handlers)


def test_func_serial_chains_outputs() -> None:
    """functional.func_serial runs callables in order, each on the previous output."""
    composed = functional.func_serial([add_one, double, add_one])
    assert composed(3) == 9


def test_func_parallel_thread_runs_all_on_the_same_input() -> None:
    """functional.func_parallel_thread runs every callable at once and returns the input."""
    barrier = threading.Barrier(3, timeout=30)

    def put(key: str) -> Any:
        def writer(data: dict[str, str]) -> None:
            barrier.wait()  # all three must run at the same time to get past this
            data[key] = threading.current_thread().name

        return writer

    composed = functional.func_parallel_thread([put("a"), put("b"), put("c")])
    data: dict[str, str] = {}
    assert composed(data) is data
    assert set(data) == {"a", "b", "c"}
    assert len(set(data.values())) == 3


def test_func_parallel_thread_raises_a_callable_error() -> None:
    """An exception in one of the parallel callables reaches the caller."""

    def boom(data: object) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        functional.func_parallel_thread([boom])({})
