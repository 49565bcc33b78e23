"""The Ray side of a Ray stage: what runs inside each Ray actor, and what is shipped there.

Nothing here imports Ray: ``StageHost`` is a plain class that ``_ray_stage`` turns into a
Ray actor class when the first Ray stage starts, so that the core keeps depending on pykka
alone. A host builds its stage from a ``RaySpec`` (the instance, Stage class or factory the
user gave, pickled by Ray's cloudpickle) in its own process, runs ``setup()`` there, and
answers one call per item with a small *status* next to the data: errors travel in our
envelope, never as Ray errors, so a failed item can never fail the calls after it.
"""

from __future__ import annotations

import os
import struct
import traceback
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ._errors import InvalidStage

OK = 0
FAILED = 1
HELD = 2
PASSED = 3
"""Status codes: ``(OK, service seconds, None)``; ``(FAILED, service seconds, Failed)``;
``(HELD, 0.0, None)``: the host failed earlier under ``restart``/``stop`` and leaves the
item, unstarted, to its successor; ``(PASSED, 0.0, Failed)``: the input was the failed
envelope of an earlier Ray stage (forwarded before its status was known), passed on
without running the stage."""

SERVICE = struct.Struct("<d")
"""An OK status as ``process`` sends it: the service seconds as 8 raw bytes, which Ray
hands back without unpickling (the status of every hop is read on the driver)."""

RAY_MISSING = "executor='ray' needs Ray, which is not installed: pip install pystream-actors[ray]"


class RaySpec:
    """What a Ray stage is made of, as given to ``add``: sent to each Ray actor, which
    builds its own instance (a Stage class or factory is never called in this process)."""

    def __init__(
        self, name: str, stage: Any, factory: Callable[[], Any] | None, is_class: bool
    ) -> None:
        self.name = name
        self.stage = stage
        self.factory = factory
        self.is_class = is_class

    @classmethod
    def build(cls, name: str, stage: object, factory: Callable[[], Any] | None) -> RaySpec:
        """Check what the user gave and that Ray can ship it."""
        from ._stage import Stage, _is_async

        is_class = isinstance(stage, type) and issubclass(stage, Stage)
        if is_class:  # each Ray actor (and each restart) makes its own instance
            factory, stage = stage, None  # type: ignore[assignment]
        if stage is None:
            if factory is None:
                raise InvalidStage(f"stage {name!r}: pass a stage, a Stage class or factory=...")
            if not callable(factory):
                raise InvalidStage(f"stage {name!r}: factory must be a zero-argument callable")
        elif not callable(stage):
            raise InvalidStage(
                f"stage {name!r} is a {type(stage).__name__}, which is not callable; "
                "pass a function taking one argument or a pystream_actors.Stage instance"
            )
        elif _is_async(stage):
            raise InvalidStage(f"stage {name!r} is an async function; Ray stages must be plain")
        spec = cls(name, stage, factory, is_class)
        try:
            import ray.cloudpickle as cloudpickle
        except ImportError:
            from ._errors import MissingExtra

            raise MissingExtra(RAY_MISSING) from None
        try:
            cloudpickle.dumps(spec)
        except Exception as exc:
            raise InvalidStage(
                f"stage {name!r} cannot be sent to a Ray actor ({type(exc).__name__}: {exc}); "
                "keep unpicklable resources (sockets, cameras, locks, models on a GPU) out of "
                "its attributes until setup(), which runs inside the Ray actor"
            ) from exc
        return spec

    def renewed(self) -> RaySpec:
        """The spec for a restart: the same description (each Ray actor builds afresh)."""
        return self

    def __call__(self, data: Any) -> Any:
        raise RuntimeError(f"stage {self.name!r} runs in Ray actors, not in this process")


def portable(exc: BaseException) -> BaseException:
    """``exc`` if Ray can send it back, else a ``RemoteStageError`` with its text."""
    try:
        import ray.cloudpickle as cloudpickle

        cloudpickle.loads(cloudpickle.dumps(exc))
        return exc
    except BaseException:
        return RemoteStageError(_describe(exc))


class RemoteStageError(Exception):
    """An exception raised inside a Ray actor that could not be sent back as is."""


def _describe(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:
        return type(exc).__name__


class Failed:
    """The output of a call that failed: the envelope of the error, naming the stage.

    A Ray stage may forward an item to the next Ray stage before its status is known; a
    host given a ``Failed`` as input passes it on without running its stage, so the item
    fails once, with the error of the stage that raised."""

    __slots__ = ("data", "error", "stage")

    def __init__(self, stage: str, error: BaseException, data: Any) -> None:
        self.stage = stage
        self.error = error
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return Failed, (self.stage, self.error, self.data)


class StageHost:
    """One Ray actor running one instance of a stage, one item at a time, in call order."""

    def __init__(self, spec: RaySpec, retries: int, holds_after_failure: bool) -> None:
        self._name = spec.name
        self._retries = retries
        self._holds = holds_after_failure  # on_error restart/stop: hold after a failure
        self._broken = False
        self._set_up = False
        self.setup_error: BaseException | None = None
        self._stage: Any = None
        try:
            stage = spec.factory() if spec.factory is not None else spec.stage
            if hasattr(stage, "name"):
                try:
                    stage.name = spec.name
                except AttributeError:
                    pass
            setup = getattr(stage, "setup", None)
            if callable(setup):
                setup()
            self._stage = stage
            self._set_up = True
        except BaseException as exc:  # every item then fails with it, as a local stage's
            self.setup_error = portable(exc)

    def ready(self) -> tuple[str, int, BaseException | None]:
        """(node id, process id, setup error or None), once the stage is set up."""
        node = ""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:
            pass
        return node, os.getpid(), self.setup_error

    def _run(self, data: Any) -> tuple[Any, Any]:
        if type(data) is Failed:  # an earlier stage failed on it: pass its envelope on
            return (PASSED, 0.0, data), data
        if self._broken:
            return (HELD, 0.0, None), None
        started = perf_counter()
        error = self.setup_error
        if error is None:
            attempts = self._retries + 1
            while True:
                try:
                    out = self._stage(data)
                    return (OK, perf_counter() - started, None), out
                except SystemExit:  # Ray ends a worker this way (its node is going): let it
                    raise
                except BaseException as exc:  # KeyboardInterrupt too: it fails the item only
                    attempts -= 1
                    if attempts <= 0:
                        error = exc
                        break
        self._broken = self._holds
        failed = Failed(self._name, portable(error), data)
        return (FAILED, perf_counter() - started, failed), failed

    def process(self, data: Any) -> tuple[Any, Any]:
        """Two returns: the status (``SERVICE`` bytes if OK), and the output (forwarded by
        ref to the next Ray stage)."""
        status, out = self._run(data)
        if status[0] == OK:
            return SERVICE.pack(status[1]), out
        return status, out

    process.__ray_num_returns__ = 2  # type: ignore[attr-defined]  # what @ray.method sets

    def process_value(self, data: Any) -> tuple[Any, Any]:
        """One return, (status, output): for a stage whose output goes back to the driver
        (a failure is in the status: the output is then None)."""
        status, out = self._run(data)
        return status, (None if status[0] != OK else out)

    def cleanup(self) -> str | None:
        """Run the stage's ``cleanup()`` (once per setup); the error's text if it raised."""
        if not self._set_up:
            return None
        self._set_up = False
        cleanup = getattr(self._stage, "cleanup", None)
        if not callable(cleanup):
            return None
        try:
            cleanup()
        except BaseException as exc:
            return _describe(exc)
        return None
