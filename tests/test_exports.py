"""The public surface is pinned: a change to it must be deliberate."""

from __future__ import annotations

import pystream_actors

EXPECTED = {
    "MAIN_PIPELINE_NAME",
    "Chain",
    "Executor",
    "InvalidArgument",
    "InvalidItem",
    "InvalidStage",
    "InvalidStageName",
    "InvalidState",
    "ItemDropped",
    "Joined",
    "JunctionStatistics",
    "MissingExtra",
    "OnError",
    "OnFull",
    "OutputTimeout",
    "Parallel",
    "Percentiles",
    "Pipeline",
    "PipelineFull",
    "PipelineHandle",
    "PipelineInitiationError",
    "PipelineNotFound",
    "PipelineStage",
    "PipelineState",
    "PipelineStatistics",
    "PipelineTerminated",
    "PipelineUndefined",
    "ProfilingError",
    "PyStreamError",
    "Route",
    "Stage",
    "StageBusy",
    "StageError",
    "StageNotFound",
    "StageState",
    "StageStatistics",
    "StageStatus",
    "SourceStatistics",
    "Sync",
    "Tap",
    "__version__",
    "functional",
    "get_handle",
    "get_profiler_db_folder",
    "logger",
    "set_profiler_db_folder",
}


def test_public_names_are_pinned() -> None:
    """__all__ lists exactly the public API, once each, and every name in it exists."""
    assert len(set(pystream_actors.__all__)) == len(pystream_actors.__all__)
    assert set(pystream_actors.__all__) == EXPECTED
    for name in pystream_actors.__all__:
        assert hasattr(pystream_actors, name), name
