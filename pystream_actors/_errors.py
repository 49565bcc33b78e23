"""The one exception tree of pystream_actors.

    PyStreamError
    ├── PipelineUndefined        no mode chosen yet, or the pipeline was cleaned up
    ├── PipelineTerminated       the pipeline (or a stage it needs) was stopped
    ├── PipelineInitiationError  the pipeline could not be built (a stage's setup failed)
    ├── PipelineFull             the in-flight window is full and the policy refused the item
    ├── PipelineNotFound         no running pipeline has the requested name (also a LookupError)
    ├── InvalidStage             something given to ``add`` is not a usable stage (also a TypeError)
    ├── InvalidItem              an item cannot be accepted, e.g. unpicklable for a process stage
    ├── InvalidStageName         a stage name breaks the naming rules (also a ValueError)
    ├── ProfilingError           profiles were asked for in a way that cannot work (also a ValueError)
    ├── StageBusy                a control call found the stage still handing over from a busy actor
    ├── StageError               a stage raised on an item; the original exception is chained
    └── ItemDropped              an accepted item was dropped by a policy, a deadline or a stop

PyStream's error names are kept, so ``except PipelineUndefined`` keeps working after the
import changes.
"""

from __future__ import annotations


class PyStreamError(Exception):
    """Root of every error raised by pystream_actors."""


class PipelineUndefined(PyStreamError):
    """The pipeline has no running mode: call ``serialize()`` or ``parallelize()`` first."""


class PipelineTerminated(PyStreamError):
    """The pipeline, or a stage it depends on, has been stopped."""


class PipelineInitiationError(PyStreamError):
    """The pipeline could not be built, for example because a stage's ``setup()`` raised."""


class PipelineFull(PyStreamError):
    """The in-flight window is full and the ``on_full`` policy refused the item."""


class PipelineNotFound(PyStreamError, LookupError):
    """No running pipeline is registered under the requested name."""


class InvalidStage(PyStreamError, TypeError):
    """Something given to ``Pipeline.add`` cannot be used as a stage."""


class InvalidItem(PyStreamError, TypeError):
    """An item cannot be accepted as given, e.g. it cannot be pickled for a process stage."""


class InvalidStageName(PyStreamError, ValueError):
    """A stage name breaks the naming rules (no ``-``, no ``__``, no leading/trailing ``_``)."""


class ProfilingError(PyStreamError, ValueError):
    """Profiles were requested in a way that cannot work."""


class StageBusy(PyStreamError):
    """A runtime-control call found the stage still handing over from an actor that is
    busy in a stage call; retry once that call has returned."""


class StageError(PyStreamError):
    """A stage raised while processing one item.

    ``stage`` names the stage, ``item_index`` is the item's position in input order
    (0-based), ``data`` is what the stage was given, and ``__cause__`` is the exception
    the stage raised.
    """

    def __init__(
        self, stage: str, item_index: int, cause: BaseException, data: object = None
    ) -> None:
        super().__init__(
            f"stage {stage!r} failed on item #{item_index}: {type(cause).__name__}: {cause}"
        )
        self.stage = stage
        self.item_index = item_index
        self.data = data
        self.__cause__ = cause

    def __reduce__(self) -> tuple[object, ...]:
        return (StageError, (self.stage, self.item_index, self.__cause__, self.data))


class ItemDropped(PyStreamError):
    """An accepted item was dropped, never processed to the end; ``reason`` says why."""

    def __init__(self, item_index: int, reason: str) -> None:
        super().__init__(f"item #{item_index} was dropped: {reason}")
        self.item_index = item_index
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (ItemDropped, (self.item_index, self.reason))
