"""Regression tests: bad input fails at the call with an error that names it, in one tree.

Each test names the defect of issue 10 it pins (``#n``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pystream_actors as ps
from tests import process_stages
from tests.conftest import our_threads


def running() -> ps.Pipeline:
    pipeline = ps.Pipeline(lambda: 1)
    pipeline.add(lambda x: x, "Echo")
    return pipeline.parallelize()


BAD_ADD_OPTIONS = [
    ("restart_backoff", {"restart_backoff": 0.5}),
    ("restart_backoff", {"restart_backoff": ("a", 1)}),
    ("restart_backoff", {"restart_backoff": (2.0, 1.0)}),
    ("max_restarts", {"max_restarts": "3"}),
    ("max_restarts", {"max_restarts": -1}),
    ("restart_window", {"restart_window": None}),
    ("restart_window", {"restart_window": math.nan}),
    ("retries", {"retries": 1.5}),
    ("workers", {"workers": 0}),
    ("workers", {"workers": True}),
    ("on_error", {"on_error": "ignore"}),
    ("executor", {"executor": "gpu"}),
    ("ordered", {"ordered": "yes"}),
]


@pytest.mark.parametrize(("parameter", "options"), BAD_ADD_OPTIONS)
def test_bad_add_options_fail_at_the_call_naming_the_parameter(
    parameter: str, options: dict[str, Any]
) -> None:
    """#24: wrong types or values for add()'s options raise InvalidArgument naming them,
    and the refused add changes nothing (#25: the next default name is still Stage_1)."""
    pipeline = ps.Pipeline()
    with pytest.raises(ps.InvalidArgument, match=parameter) as raised:
        pipeline.add(lambda x: x, **options)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)
    assert pipeline.stage_names == []
    pipeline.add(lambda x: x)
    assert pipeline.stage_names == ["Stage_1"]


BAD_FLOW_OPTIONS: list[tuple[str, Callable[[ps.Pipeline], object]]] = [
    ("capacity", lambda p: p.parallelize(capacity=0)),
    ("capacity", lambda p: p.parallelize(capacity=2.5)),  # type: ignore[arg-type]
    ("max_age", lambda p: p.parallelize(max_age=math.nan)),
    ("max_age", lambda p: p.parallelize(max_age=-1)),
    ("max_age", lambda p: p.serialize(max_age="1")),  # type: ignore[arg-type]
    ("input_timeout", lambda p: p.parallelize(input_timeout="10")),  # type: ignore[arg-type]
    ("input_timeout", lambda p: p.parallelize(input_timeout=-1)),
    ("setup_timeout", lambda p: p.parallelize(setup_timeout=math.inf)),
    ("results_buffer", lambda p: p.parallelize(results_buffer=0)),
    ("on_full", lambda p: p.parallelize(on_full="never")),  # type: ignore[arg-type]
    ("block_input", lambda p: p.parallelize(block_input="no")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("parameter", "start"), BAD_FLOW_OPTIONS)
def test_bad_flow_options_fail_before_anything_starts(
    parameter: str, start: Callable[[ps.Pipeline], object]
) -> None:
    """#24: a bad mode option raises InvalidArgument naming it; no thread was started."""
    before = set(our_threads())
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Echo")
    with pytest.raises(ps.InvalidArgument, match=parameter):
        start(pipeline)
    assert set(our_threads()) <= before
    assert pipeline.handle.state == "idle"


def test_bad_call_arguments_name_the_parameter() -> None:
    """#24: submit(timeout=), ask(timeout=), start_loop(period=) and control-call timeouts
    are checked at the call."""
    pipeline = running()
    try:
        for call in (
            lambda: pipeline.handle.submit(1, timeout="1"),  # type: ignore[arg-type]
            lambda: pipeline.handle.ask(1, timeout=-1),
            lambda: pipeline.handle.tell(1, timeout=math.nan),
            lambda: pipeline.handle.restart_stage("Echo", timeout="x"),  # type: ignore[arg-type]
            lambda: pipeline.handle.latest(timeout=-2),
        ):
            with pytest.raises(ps.InvalidArgument, match="timeout"):
                call()
        for period in (0, -1, "0.1", math.nan):
            with pytest.raises(ps.InvalidArgument, match="period"):
                pipeline.start_loop(period=period)  # type: ignore[arg-type]
        assert pipeline.handle.ask(3, timeout=30) == 3
    finally:
        pipeline.cleanup()


def test_an_async_def_stage_is_refused_at_add() -> None:
    """#24: async def stages (functions or __call__) are refused with a hint."""

    async def fetch(x: int) -> int:
        return x

    class AsyncStage(ps.Stage):
        async def __call__(self, x: int) -> int:  # type: ignore[override]
            return x

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    with pytest.raises(ps.InvalidStage, match="async"):
        pipeline.add(fetch)
    with pytest.raises(ps.InvalidStage, match="async"):
        pipeline.add(AsyncStage())
    assert pipeline.stage_names == []


def test_add_while_running_is_refused_and_not_listed() -> None:
    """#24: add() on a running pipeline raises InvalidState and is not listed."""
    pipeline = running()
    try:
        with pytest.raises(ps.InvalidState, match="cleanup"):
            pipeline.add(lambda x: x, "Late")
        assert pipeline.stage_names == ["Echo"]
    finally:
        pipeline.cleanup()
    pipeline.add(lambda x: x * 2, "Late")  # after cleanup it is fine
    with pipeline.parallelize():
        assert pipeline.handle.ask(2, timeout=30) == 4


def test_an_unknown_stage_name_is_stage_not_found() -> None:
    """#24: control calls with a name the pipeline lacks raise StageNotFound (a LookupError),
    naming the stages that exist."""
    pipeline = running()
    try:
        for call in (
            pipeline.handle.restart_stage,
            pipeline.handle.stop_stage,
            pipeline.handle.start_stage,
            pipeline.handle.replace_stage,
        ):
            with pytest.raises(ps.StageNotFound, match="'Echo'"):
                call("Nope")
        with pytest.raises(LookupError):
            pipeline.handle.restart_stage("Nope")
    finally:
        pipeline.cleanup()


def test_an_unpicklable_output_of_a_process_stage_says_so() -> None:
    """#24: an output a worker process cannot send back fails the item with a message that
    says the output cannot be pickled (not an unrelated AttributeError)."""
    pipeline = ps.Pipeline()
    pipeline.add(process_stages.return_a_lock, "Locks", executor="process")
    with pipeline.parallelize():
        with pytest.raises(ps.StageError, match="cannot be pickled"):
            pipeline.handle.ask(1, timeout=60)
        assert pipeline.handle.status()["Locks"].state == "running"


def test_every_error_raised_is_in_the_tree() -> None:
    """#15: errors of the library are PyStreamError subclasses; control calls raise none of
    pykka's exceptions, even with a zero timeout on a busy stage."""
    release = threading.Event()
    entered = threading.Event()

    def gate(x: int) -> int:
        entered.set()
        release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gate, "Gate")
    pipeline.parallelize()
    pipeline.handle.submit(1)
    assert entered.wait(30)
    for call in (
        lambda: pipeline.handle.restart_stage("Gate", timeout=0),
        lambda: pipeline.handle.stop_stage("Gate", timeout=0),
        lambda: pipeline.handle.start_stage("Gate", timeout=0),
        lambda: pipeline.handle.replace_stage("Gate", lambda x: x, timeout=0),
    ):
        try:
            call()
        except Exception as error:
            assert isinstance(error, ps.PyStreamError), repr(error)
    with pytest.raises(ps.OutputTimeout) as raised:
        pipeline.handle.ask(2, timeout=0.05)  # the gate still holds item 1
    assert isinstance(raised.value, TimeoutError)
    release.set()
    pipeline.cleanup()


def test_profiling_error_is_raised_for_an_unusable_folder(tmp_path: Path) -> None:
    """#25: ProfilingError (a ValueError) is raised for a profile folder that cannot work."""
    a_file = tmp_path / "file"
    a_file.write_text("")
    old = ps.get_profiler_db_folder()
    try:
        with pytest.raises(ps.ProfilingError, match="is a file"):
            ps.set_profiler_db_folder(a_file)
        with pytest.raises(ValueError):
            ps.set_profiler_db_folder(42)  # type: ignore[arg-type]
    finally:
        ps.set_profiler_db_folder(old)


def test_restarts_do_not_grow_the_books() -> None:
    """#25: many restarts leave the runtime's actor and thread lists short."""
    pipeline = running()
    try:
        for _ in range(50):
            pipeline.handle.restart_stage("Echo", timeout=30)
        pipeline.handle.restart_stage("Echo", timeout=30)
        runtime = pipeline.handle._runtime
        assert runtime is not None
        assert len(runtime.group._refs) <= 4
        assert len(runtime.group._threads) <= 4
    finally:
        pipeline.cleanup()


def test_a_stopped_handle_keeps_no_outputs() -> None:
    """#25: after the final stop the handle's readers end and their buffers are released."""
    pipeline = running()
    reader = pipeline.handle.results(timeout=30)
    pipeline.handle.ask(1, timeout=30)
    pipeline.cleanup()
    assert list(reader) == [1]  # what it had read is delivered, then it ends
    assert not pipeline.handle._outputs.results.active


def test_a_nested_pipeline_stage_waits_with_a_timeout() -> None:
    """#25: a nested pipeline's stage fails an item the child does not answer in time."""
    release = threading.Event()
    child = ps.Pipeline()
    child.add(lambda x: release.wait(30) and x, "Stuck")
    child.parallelize()
    parent = ps.Pipeline()
    parent.add(child.as_stage(timeout=0.1), "Child")
    with parent.parallelize():
        with pytest.raises(ps.StageError, match="OutputTimeout"):
            parent.handle.ask(1, timeout=30)
        release.set()
    assert not child.handle.is_running
