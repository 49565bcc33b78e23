"""PyStream's profile format, computed from the statistics snapshots; the profile folder."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import ProfilingError
from ._stage import MAIN_PIPELINE_NAME
from ._statistics import PipelineStatistics

_profiler_db_folder = Path(
    os.environ.get("PYSTREAM_ACTORS_PROFILE_DIR", Path.home() / ".pystream_actors")
)

Profiles = tuple[dict[str, float], dict[str, float]]


def profiles_from(statistics: PipelineStatistics, prefix: str = MAIN_PIPELINE_NAME) -> Profiles:
    """(latency, throughput) keyed ``MainPipeline`` and ``MainPipeline__Stage``, nested by ``__``.

    Latency is mean seconds per item, throughput mean items per second.
    """
    latency = {prefix: statistics.latency.mean}
    throughput = {prefix: statistics.mean_throughput}
    for stage in statistics.stages:
        key = f"{prefix}__{stage.name}"
        latency[key] = stage.service_time.mean
        throughput[key] = stage.mean_throughput
        if stage.child is not None:
            child_latency, child_throughput = profiles_from(stage.child, key)
            child_latency.pop(key)
            child_throughput.pop(key)
            latency.update(child_latency)
            throughput.update(child_throughput)
    return latency, throughput


def get_profiler_db_folder() -> str:
    """The folder where profile snapshots are written (PyStream kept SQLite files there)."""
    return str(_profiler_db_folder)


def set_profiler_db_folder(path: str | os.PathLike[str]) -> None:
    """Choose the folder for profile snapshots; it is created when first written to.

    Raises ``ProfilingError`` if ``path`` is not a path, or names a file.
    """
    global _profiler_db_folder
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ProfilingError(
            f"the profiler folder must be a path (str or os.PathLike), got {path!r}"
        )
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ProfilingError(f"the profiler folder {str(folder)!r} is a file; choose a folder")
    _profiler_db_folder = folder
