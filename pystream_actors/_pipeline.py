"""The pipeline builder: PyStream's ``Pipeline`` API on top of the actor runtime."""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from . import _registry
from ._coordinator import PARALLEL, SERIAL
from ._errors import InvalidStageName, PipelineTerminated, PipelineUndefined
from ._handle import PipelineHandle
from ._loop import InputLoop
from ._policy import FailurePolicy, OnError
from ._profiles import Profiles, get_profiler_db_folder, profiles_from
from ._runtime import FlowSettings, Runtime
from ._scaling import Executor, Scaling
from ._stage import Stage, StageCallable, StageSlot, check_stage_name
from ._statistics import PipelineStatistics
from ._window import OnFull

logger = logging.getLogger("pystream_actors")

_live_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()
_NO_DATA: Any = object()
_EXIT_TIMEOUT = 5.0  # seconds a stage may take to stop when the interpreter exits


class Pipeline:
    """A chain of stages, each run by its own actor, fed through a thread-safe handle.

    Build it with ``add``; start it with ``serialize()`` (lock-step, one item in flight)
    or ``parallelize()`` (every stage busy at once); feed it with ``forward``, the
    ``handle`` or ``start_loop``; stop it with ``cleanup()`` or by leaving a ``with`` block.

    ``name`` publishes the running pipeline for ``get_handle(name)``. ``statistics=False``
    keeps only counts (no latency histograms or rates), for the last microseconds per item.
    """

    def __init__(
        self,
        input_generator: Callable[[], Any] | None = None,
        use_profiler: bool = False,
        *,
        name: str | None = None,
        statistics: bool = True,
    ) -> None:
        if input_generator is not None and not callable(input_generator):
            raise TypeError(
                f"input_generator must be a zero-argument callable, got {type(input_generator).__name__}"
            )
        self._input_generator = input_generator
        self.use_profiler = use_profiler
        self.name = name
        self._timed = statistics or use_profiler
        self._slots: list[StageSlot] = []
        self._stage_count = 0
        self._handle = PipelineHandle(name)
        self._block_output = False
        self._output_timeout: float | None = 10.0
        self._loop: InputLoop | None = None
        self._missed_ticks_before = 0
        self._lock = threading.RLock()
        _live_pipelines.add(self)

    # -- building ---------------------------------------------------------------

    def add(
        self,
        stage: StageCallable | Stage | type[Stage] | None = None,
        name: str | None = None,
        *,
        factory: Callable[[], StageCallable] | None = None,
        on_error: OnError = "skip",
        retries: int = 0,
        restart_backoff: tuple[float, float] = (0.01, 1.0),
        max_restarts: int = 5,
        restart_window: float = 60.0,
        workers: int = 1,
        ordered: bool = True,
        executor: Executor = "thread",
        thread_safe: bool = False,
    ) -> None:
        """Append a stage: a ``Stage`` instance or class, any one-argument callable, or ``factory``.

        Without ``name`` the stage's own ``name`` attribute is used, else ``Stage_<n>``
        counting stages of this pipeline. ``on_error`` chooses what a failure does:
        ``"skip"`` (the item fails, the stage goes on), ``"restart"`` (as skip, then a new
        actor and a fresh instance from the class or factory take over) or ``"stop"``
        (the pipeline stops). ``retries`` re-runs a failing item first.

        ``workers`` runs the stage on that many actors, each with its own instance (pass
        the class or ``factory``; one instance is shared only with ``thread_safe=True``);
        outputs keep input order unless ``ordered=False``. ``executor="process"`` runs
        each worker's stage in its own process: the stage must be picklable.
        """
        self._stage_count += 1
        if name is None:
            name = getattr(stage, "name", "") if not isinstance(stage, type) else ""
            name = name or f"Stage_{self._stage_count}"
        check_stage_name(name)
        if any(slot.name == name for slot in self._slots):
            raise InvalidStageName(
                f"a stage named {name!r} is already in this pipeline; pass a unique name to add()"
            )
        policy = FailurePolicy(on_error, retries, restart_backoff, max_restarts, restart_window)
        scaling = Scaling(workers, ordered, executor, thread_safe)
        slot = StageSlot.build(name, stage, factory, policy, scaling)
        self._slots.append(slot)
        instance = slot.stage
        if isinstance(instance, Stage) or hasattr(instance, "name"):
            try:
                instance.name = name
            except AttributeError:
                pass

    @property
    def stage_names(self) -> list[str]:
        """The stage names in order."""
        return [slot.name for slot in self._slots]

    @property
    def stages(self) -> list[tuple[str, StageCallable]]:
        """(name, stage) pairs in order, as added (a nested pipeline is a ``PipelineStage``)."""
        return [(slot.name, slot.stage) for slot in self._slots]

    @property
    def input_generator(self) -> Callable[[], Any] | None:
        """The zero-argument callable that ``forward()`` and ``start_loop()`` draw inputs from."""
        return self._input_generator

    def serialize(
        self,
        *,
        capacity: int = 1,
        on_full: OnFull = "block",
        max_age: float | None = None,
        results_buffer: int = 1024,
    ) -> Pipeline:
        """Run in serial mode: each item passes every stage before the next one enters.

        ``capacity`` items may wait at the coordinator for their turn (default 1: a
        ``forward`` from another thread waits until the pipeline is free).
        """
        flow = FlowSettings(capacity, on_full, None, max_age, results_buffer)
        self._start(SERIAL, flow)
        return self

    def parallelize(
        self,
        block_input: bool = True,
        input_timeout: float | None = 10,
        block_output: bool = False,
        output_timeout: float = 10,
        *,
        capacity: int | None = None,
        on_full: OnFull | None = None,
        max_age: float | None = None,
        results_buffer: int = 1024,
    ) -> Pipeline:
        """Run in parallel mode: every stage on its own thread, items kept in order.

        ``capacity`` bounds the items inside the pipeline (default: 4 per stage).
        ``on_full`` says what a full pipeline does with a new item: ``"block"`` (wait
        up to ``input_timeout``; PyStream's ``block_input=True``), ``"reject"`` (refuse
        at once; ``block_input=False``) or ``"drop_oldest"`` (keep the newest, drop the
        oldest not yet started). ``max_age`` drops items older than that many seconds
        before a stage starts them. ``get_results`` waits up to ``output_timeout``
        seconds when ``block_output``.
        """
        if capacity is None:
            capacity = max(4, 4 * len(self._slots))
        if on_full is None:
            on_full = "block" if block_input else "reject"
        flow = FlowSettings(capacity, on_full, input_timeout, max_age, results_buffer)
        self._start(PARALLEL, flow)
        self._block_output = block_output
        self._output_timeout = output_timeout
        return self

    def _start(self, mode: str, flow: FlowSettings) -> None:
        if not self._slots:
            raise PipelineUndefined(
                "the pipeline has no stages: add at least one with add() before choosing a mode"
            )
        with self._lock:
            self._stop_runtime(drain=True, cleanup_stages=False)
            if self.name is not None:
                _registry.register(self.name, self._handle)
            runtime = Runtime(
                list(self._slots), mode, flow, self._handle.error_callbacks, self._timed
            )
            self._handle._attach(runtime)
            self._block_output = False

    # -- feeding and reading ----------------------------------------------------

    @property
    def handle(self) -> PipelineHandle:
        """The thread-safe handle to submit items and read results."""
        return self._handle

    @property
    def mode(self) -> str | None:
        """``"serial"``, ``"parallel"`` or None when no mode is running."""
        runtime = self._handle._runtime
        return runtime.mode if runtime is not None else None

    def forward(self, data: Any = _NO_DATA) -> bool:
        """Push one item; without ``data`` (or with None) the input generator makes it.

        Serial mode returns once the item went through every stage (a stage's error is
        raised here as ``StageError``). Parallel mode returns False if the pipeline had
        no room in time.
        """
        runtime = self._handle._runtime
        if runtime is None:
            raise PipelineUndefined(
                "forward() needs a running pipeline: call serialize() or parallelize() first"
                " (after cleanup() the pipeline must be started again)"
            )
        if data is _NO_DATA or (data is None and self._input_generator is not None):
            data = self._input_generator() if self._input_generator is not None else None
        if runtime.mode == SERIAL:
            self._handle.ask(data)
            return True
        return self._handle.tell(data)

    def get_results(self) -> Any:
        """The latest output not read yet, or None; the same output is never returned twice."""
        runtime = self._handle._runtime
        if runtime is None:
            raise PipelineUndefined(
                "get_results() needs a running pipeline: call serialize() or parallelize() first"
            )
        timeout = self._output_timeout if self._block_output else 0.0
        return runtime.latest.take(timeout)

    def start_loop(self, period: float = 0.01) -> None:
        """Feed the pipeline from the input generator every ``period`` seconds, in the background."""
        if self._input_generator is None:
            raise PipelineUndefined(
                "start_loop() needs an input generator: Pipeline(input_generator=...)"
            )
        if self._handle._runtime is None:
            raise PipelineUndefined(
                "start_loop() needs a running pipeline: call serialize() or parallelize() first"
            )
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("the input loop is already running; call stop_loop() first")
            generate = self._input_generator
            self._loop = InputLoop(lambda: self._loop_push(generate, period), period)

    def _loop_push(self, generate: Callable[[], Any], period: float) -> None:
        # A full pipeline gets the on_full policy, but "block" waits at most one period:
        # the clock must not stall behind a slow stage.
        try:
            self._handle.tell(generate(), timeout=period)
        except (PipelineUndefined, PipelineTerminated):
            pass

    @property
    def missed_ticks(self) -> int:
        """Ticks of the input loop skipped because a push ran past its due time."""
        loop = self._loop
        return loop.missed_ticks if loop is not None else self._missed_ticks_before

    def stop_loop(self) -> None:
        """Stop the input loop started by ``start_loop``; harmless when none runs."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
            self._missed_ticks_before = loop.missed_ticks

    # -- observing --------------------------------------------------------------

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline's and every stage's counters."""
        return self._handle.statistics()

    def get_profiles(self) -> Profiles:
        """(latency, throughput) per stage in PyStream's key format.

        Needs ``use_profiler=True``; otherwise logs an error and returns ``({}, {})``.
        """
        if not self.use_profiler:
            logger.error(
                "get_profiles(): the profiler is off; create the Pipeline with use_profiler=True"
            )
            return {}, {}
        return profiles_from(self._handle.statistics())

    # -- nesting ------------------------------------------------------------------

    def as_stage(self) -> PipelineStage:
        """This built pipeline as one stage of another pipeline; it keeps its own mode."""
        if self._handle._runtime is None:
            raise PipelineUndefined(
                "as_stage() needs a built pipeline: call serialize() or parallelize() on it first"
            )
        return PipelineStage(self)

    # -- stopping -------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the loop and every stage actor, and call each stage's ``cleanup()``.

        Items still in flight finish first. Afterwards the pipeline is undefined again;
        calling ``cleanup()`` twice is harmless.
        """
        self.stop_loop()
        with self._lock:
            self._stop_runtime(drain=True, cleanup_stages=True)

    def _stop_runtime(
        self, drain: bool, cleanup_stages: bool, timeout: float | None = None
    ) -> None:
        runtime = self._handle._runtime
        if runtime is None:
            return
        if self.use_profiler and cleanup_stages:
            self._save_profiles(runtime.statistics())
        self._handle._attach(None)
        if self.name is not None and cleanup_stages:
            _registry.unregister(self.name, self._handle)
        runtime.stop(drain=drain, timeout=timeout, cleanup_stages=cleanup_stages)

    def _save_profiles(self, statistics: PipelineStatistics) -> None:
        latency, throughput = profiles_from(statistics)
        try:
            folder = get_profiler_db_folder()
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "last_profiles.json"), "w", encoding="utf-8") as out:
                json.dump({"latency": latency, "throughput": throughput}, out, indent=2)
        except OSError as exc:
            logger.warning("could not write profiles to %s: %s", get_profiler_db_folder(), exc)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class PipelineStage(Stage):
    """A built pipeline used as one stage of another (from ``Pipeline.as_stage()``)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.name = pipeline.name or ""

    def __call__(self, data: Any) -> Any:
        return self.pipeline.handle.ask(data)

    def cleanup(self) -> None:
        self.pipeline.cleanup()

    def child_statistics(self) -> PipelineStatistics | None:
        """The nested pipeline's snapshot, shown under this stage."""
        try:
            return self.pipeline.statistics()
        except PipelineUndefined:
            return None


def cleanup_live_pipelines() -> None:
    """Stop every pipeline still running (at interpreter exit)."""
    for pipeline in list(_live_pipelines):
        try:
            pipeline.stop_loop()
            with pipeline._lock:
                pipeline._stop_runtime(drain=False, cleanup_stages=True, timeout=_EXIT_TIMEOUT)
        except Exception:
            logger.exception("stopping a pipeline at exit failed")
