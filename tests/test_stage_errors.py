"""A stage that raises never kills its actor: the item's future gets a StageError."""

from __future__ import annotations

import logging

import pytest

import pystream_actors as ps
from tests.conftest import our_threads


class BadFrame(ValueError):
    """The error our flaky stage raises."""


def flaky(x: int) -> int:
    if x % 7 == 3:
        raise BadFrame(f"bad frame {x}")
    return x * 10


@pytest.mark.parametrize("mode", ["serialize", "parallelize"])
def test_failing_items_raise_stage_error_and_the_rest_come_out_in_order(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed items' futures name the stage and chain the cause; all others are correct."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Decode")
    pipeline.add(flaky, "Detect")
    pipeline.add(lambda x: x + 1, "Write")
    getattr(pipeline, mode)()
    with caplog.at_level(logging.WARNING, logger="pystream_actors"):
        futures = [pipeline.handle.submit(i) for i in range(100)]
        outcomes: list[object] = []
        for i, future in enumerate(futures):
            if i % 7 == 3:
                with pytest.raises(ps.StageError) as info:
                    future.result(timeout=30)
                assert info.value.stage == "Detect"
                assert info.value.item_index == i
                assert isinstance(info.value.__cause__, BadFrame)
                assert "Detect" in str(info.value)
            else:
                outcomes.append(future.result(timeout=30))
    assert outcomes == [i * 10 + 1 for i in range(100) if i % 7 != 3]
    failures = sum(1 for i in range(100) if i % 7 == 3)
    stats = pipeline.statistics()
    assert stats.failed == failures
    assert stats.completed == 100 - failures
    assert stats.stage("Detect").failed == failures
    assert stats.stage("Write").processed == 100 - failures  # failed items skip later stages
    assert caplog.text.count("stage 'Detect' failed on item") == failures
    # The pipeline keeps serving after the failures.
    assert pipeline.handle.ask(1, timeout=30) == 11
    pipeline.cleanup()


def test_serial_forward_raises_the_stage_error() -> None:
    """In serial mode forward() raises the StageError instead of returning True."""
    pipeline = ps.Pipeline()
    pipeline.add(flaky, "Detect")
    with pipeline.serialize():
        with pytest.raises(ps.StageError, match="Detect"):
            pipeline.forward(3)
        assert pipeline.forward(4)
        assert pipeline.get_results() == 40


class BrokenSetup(ps.Stage):
    def setup(self) -> None:
        raise OSError("camera not found")

    def __call__(self, data: object) -> object:
        return data

    def cleanup(self) -> None:
        pass


def test_setup_failure_raises_initiation_error_and_leaks_nothing() -> None:
    """A stage whose setup() raises fails the build with an error naming it; no thread is left."""
    before = set(our_threads())
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Fine")
    pipeline.add(BrokenSetup(), "Camera")
    with pytest.raises(ps.PipelineInitiationError, match="Camera") as info:
        pipeline.parallelize()
    assert isinstance(info.value.__cause__, OSError)
    assert set(our_threads()) <= before
    with pytest.raises(ps.PipelineUndefined):
        pipeline.forward(1)


def test_exception_tree() -> None:
    """Every error shares one root; PyStream's ValueError-based errors stay ValueErrors."""
    for error in (
        ps.PipelineUndefined,
        ps.PipelineTerminated,
        ps.PipelineInitiationError,
        ps.PipelineFull,
        ps.PipelineNotFound,
        ps.InvalidStage,
        ps.InvalidStageName,
        ps.ProfilingError,
        ps.StageError,
        ps.ItemDropped,
    ):
        assert issubclass(error, ps.PyStreamError)
    assert issubclass(ps.InvalidStageName, ValueError)
    assert issubclass(ps.ProfilingError, ValueError)
    assert issubclass(ps.PipelineNotFound, LookupError)
