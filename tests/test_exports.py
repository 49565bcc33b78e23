"""The public surface is pinned: a change to it must be deliberate."""

from __future__ import annotations

import pystream_actors


def test_public_names_are_pinned() -> None:
    """__all__ lists exactly the public API, and every name in it exists."""
    assert sorted(pystream_actors.__all__) == pystream_actors.__all__
    for name in pystream_actors.__all__:
        assert hasattr(pystream_actors, name), name
    assert set(pystream_actors.__all__) >= {
        "MAIN_PIPELINE_NAME",
        "Pipeline",
        "Stage",
        "PipelineUndefined",
        "PipelineTerminated",
        "PipelineInitiationError",
        "InvalidStageName",
        "ProfilingError",
        "functional",
        "logger",
        "get_profiler_db_folder",
        "set_profiler_db_folder",
    }
