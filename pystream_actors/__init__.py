"""pystream_actors: real-time Python data pipelines on pykka actors, PyStream-compatible.

Change ``import pystream`` to ``import pystream_actors as pystream`` (or the matching
``from`` import) and PyStream code keeps working.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from . import (
    _lifecycle,  # noqa: F401 - registers the stop of running pipelines at exit
    functional,
)
from ._combinators import Chain, Joined, Parallel, Route, Tap
from ._errors import (
    InvalidArgument,
    InvalidItem,
    InvalidStage,
    InvalidStageName,
    InvalidState,
    ItemDropped,
    MissingExtra,
    OutputTimeout,
    PipelineFull,
    PipelineInitiationError,
    PipelineNotFound,
    PipelineTerminated,
    PipelineUndefined,
    ProfilingError,
    PyStreamError,
    StageBusy,
    StageError,
    StageNotFound,
)
from ._handle import PipelineHandle, PipelineState
from ._pipeline import Pipeline, PipelineStage
from ._policy import OnError
from ._profiles import get_profiler_db_folder, set_profiler_db_folder
from ._registry import get_handle
from ._scaling import Executor
from ._stage import MAIN_PIPELINE_NAME, Stage
from ._statistics import (
    JunctionStatistics,
    Percentiles,
    PipelineStatistics,
    SourceStatistics,
    StageStatistics,
)
from ._supervisor import StageState, StageStatus
from ._sync import Sync
from ._window import OnFull

try:
    __version__ = version("pystream-actors")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

logger = logging.getLogger("pystream_actors")
"""The package logger; the library attaches only a ``NullHandler``."""
logger.addHandler(logging.NullHandler())

__all__ = [
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
    "SourceStatistics",
    "Stage",
    "StageBusy",
    "StageError",
    "StageNotFound",
    "StageState",
    "StageStatistics",
    "StageStatus",
    "Sync",
    "Tap",
    "__version__",
    "functional",
    "get_handle",
    "get_profiler_db_folder",
    "logger",
    "set_profiler_db_folder",
]
