"""pystream_actors: real-time Python data pipelines on pykka actors, PyStream-compatible.

Change ``import pystream`` to ``import pystream_actors as pystream`` (or the matching
``from`` import) and PyStream code keeps working.
"""

from __future__ import annotations

import atexit
import logging
from importlib.metadata import PackageNotFoundError, version

from . import functional
from ._errors import (
    InvalidItem,
    InvalidStage,
    InvalidStageName,
    ItemDropped,
    PipelineFull,
    PipelineInitiationError,
    PipelineNotFound,
    PipelineTerminated,
    PipelineUndefined,
    ProfilingError,
    PyStreamError,
    StageBusy,
    StageError,
)
from ._handle import PipelineHandle
from ._pipeline import Pipeline, PipelineStage, cleanup_live_pipelines
from ._profiles import get_profiler_db_folder, set_profiler_db_folder
from ._registry import get_handle
from ._stage import MAIN_PIPELINE_NAME, Stage
from ._statistics import Percentiles, PipelineStatistics, StageStatistics

try:
    __version__ = version("pystream-actors")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

logger = logging.getLogger("pystream_actors")
"""The package logger; the library attaches only a ``NullHandler``."""
logger.addHandler(logging.NullHandler())

atexit.register(cleanup_live_pipelines)

__all__ = [
    "MAIN_PIPELINE_NAME",
    "InvalidItem",
    "InvalidStage",
    "InvalidStageName",
    "ItemDropped",
    "Percentiles",
    "Pipeline",
    "PipelineFull",
    "PipelineHandle",
    "PipelineInitiationError",
    "PipelineNotFound",
    "PipelineStage",
    "PipelineStatistics",
    "PipelineTerminated",
    "PipelineUndefined",
    "ProfilingError",
    "PyStreamError",
    "Stage",
    "StageBusy",
    "StageError",
    "StageStatistics",
    "__version__",
    "functional",
    "get_handle",
    "get_profiler_db_folder",
    "logger",
    "set_profiler_db_folder",
]
