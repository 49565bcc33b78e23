"""The one exception tree of pystream_actors.

    PyStreamError
    ├── PipelineUndefined        no mode chosen yet, or the pipeline was cleaned up
    ├── PipelineTerminated       the pipeline (or a stage it needs) was stopped
    ├── PipelineInitiationError  the pipeline could not be built (a stage's setup failed or hung)
    ├── PipelineFull             the in-flight window is full and the policy refused the item
    ├── PipelineNotFound         no running pipeline has the requested name (also a LookupError)
    ├── StageNotFound            no stage of this pipeline has the requested name (also a LookupError)
    ├── InvalidArgument          an argument has the wrong type or value (also ValueError, TypeError)
    │   ├── InvalidStage         something given to ``add`` is not a usable stage
    │   ├── InvalidItem          an item cannot be accepted, e.g. unpicklable for a process stage
    │   ├── InvalidStageName     a stage name breaks the naming rules
    │   └── ProfilingError       the profile folder cannot be used
    ├── InvalidState             the call does not fit the pipeline's state (also a RuntimeError)
    ├── StageBusy                too many hand-overs are already queued behind a busy stage call
    ├── OutputTimeout            ``ask`` got no output in time (also a TimeoutError)
    ├── MissingExtra             an optional part needs a package not installed (also an ImportError)
    ├── StageError               a stage raised on an item; the original exception is chained
    └── ItemDropped              an accepted item was dropped by a policy, a deadline or a stop

Every error the library raises is one of these. PyStream's error names are kept, so
``except PipelineUndefined`` keeps working after the import changes; the builtin bases
(``ValueError``, ``TypeError``, ``LookupError``, ``RuntimeError``, ``TimeoutError``, ``ImportError``) keep generic handlers
working too.
"""

from __future__ import annotations


class PyStreamError(Exception):
    """Root of every error raised by pystream_actors."""


class PipelineUndefined(PyStreamError):
    """The pipeline has no running mode: call ``serialize()`` or ``parallelize()`` first."""


class PipelineTerminated(PyStreamError):
    """The pipeline, or a stage it depends on, has been stopped."""


class PipelineInitiationError(PyStreamError):
    """The pipeline could not be built: a stage's ``setup()`` raised or did not finish in time."""


class PipelineFull(PyStreamError):
    """The in-flight window is full and the ``on_full`` policy refused the item."""


class PipelineNotFound(PyStreamError, LookupError):
    """No running pipeline is registered under the requested name."""


class StageNotFound(PyStreamError, LookupError):
    """No stage of the pipeline has the requested name."""


class InvalidArgument(PyStreamError, ValueError, TypeError):
    """An argument has the wrong type or value; the message names it and says what fits."""


class InvalidStage(InvalidArgument):
    """Something given to ``Pipeline.add`` cannot be used as a stage."""


class InvalidItem(InvalidArgument):
    """An item cannot be accepted as given, e.g. it cannot be pickled for a process stage."""


class InvalidStageName(InvalidArgument):
    """A stage name breaks the naming rules (no ``-``, no ``__``, no leading/trailing ``_``)."""


class ProfilingError(InvalidArgument):
    """The profile folder cannot be used (not a path, or a file is in the way)."""


class InvalidState(PyStreamError, RuntimeError):
    """The call does not fit the pipeline's current state, e.g. ``add()`` while running."""


class StageBusy(PyStreamError):
    """Too many runtime-control calls on one stage are queued and have not taken over yet
    (typically behind a stage call that has not returned); retry once they have."""


class OutputTimeout(PyStreamError, TimeoutError):
    """``ask`` got no output within its timeout; the item itself goes on and still settles."""


class MissingExtra(PyStreamError, ImportError):
    """An optional part (an exporter, the live CLI view) needs a package that is not
    installed; the message names the extra to install."""


def describe(exc: BaseException) -> str:
    """``Type: message`` for any exception, even one whose ``__str__`` raises."""
    try:
        text = str(exc)
    except BaseException:  # a user exception must never break our error path
        text = "<str() of the exception raised>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StageError(PyStreamError):
    """A stage raised while processing one item.

    ``stage`` names the stage, ``item_index`` is the item's position in input order
    (0-based), ``data`` is what the stage was given, and ``__cause__`` is the exception
    the stage raised (any ``BaseException``, ``SystemExit`` and ``KeyboardInterrupt``
    included: they fail the item, never the pipeline).
    """

    def __init__(
        self, stage: str, item_index: int, cause: BaseException, data: object = None
    ) -> None:
        super().__init__(f"stage {stage!r} failed on item #{item_index}: {describe(cause)}")
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
