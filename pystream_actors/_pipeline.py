"""The pipeline builder: PyStream's ``Pipeline`` API on top of the actor runtime."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from . import _arguments as check
from ._combinators import Combinator, Slot, check_unique, make_slot, names_in
from ._coordinator import PARALLEL, SERIAL
from ._errors import (
    InvalidArgument,
    InvalidStageName,
    InvalidState,
    PipelineUndefined,
)
from ._handle import PipelineHandle
from ._policy import FailurePolicy, OnError
from ._profiles import Profiles, get_profiler_db_folder, profiles_from
from ._runtime import DEFAULT_SETUP_TIMEOUT, FlowSettings, Runtime
from ._scaling import Executor, Scaling
from ._stage import Stage, StageCallable, StageSlot, check_stage_name
from ._statistics import PipelineStatistics
from ._sync import Sync
from ._window import OnFull

logger = logging.getLogger("pystream_actors")

_NO_DATA: Any = object()
NESTED_TIMEOUT = 60.0
"""Seconds a nested pipeline's stage waits for the child's output by default."""


class Pipeline:
    """A chain of stages, each run by its own actor, fed through a thread-safe handle.

    Build it with ``add``; start it with ``serialize()`` (lock-step, one item in flight)
    or ``parallelize()`` (every stage busy at once); feed it with ``forward``, the
    ``handle`` or ``start_loop``; stop it with ``cleanup()``, by leaving a ``with`` block,
    or with ``handle.stop()`` (the same stop).

    ``name`` publishes the running pipeline for ``get_handle(name)``. ``statistics=False``
    keeps only counts (no latency histograms or rates), for the last microseconds per item.
    """

    def __init__(
        self,
        input_generator: Callable[[], Any] | Mapping[str, Callable[[], Any]] | None = None,
        use_profiler: bool = False,
        *,
        name: str | None = None,
        statistics: bool = True,
    ) -> None:
        if isinstance(input_generator, Mapping):
            for source, generate in input_generator.items():
                if not isinstance(source, str) or not callable(generate):
                    raise InvalidArgument(
                        "input_generator as a dict maps each source name to a zero-argument "
                        f"callable; got {source!r}: {type(generate).__name__}"
                    )
            input_generator = dict(input_generator)
        elif input_generator is not None and not callable(input_generator):
            raise InvalidArgument(
                "input_generator must be a zero-argument callable (or a dict of them by "
                f"source), got {type(input_generator).__name__}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name must be a non-empty string or None, got {name!r}")
        self._input_generator = input_generator
        self.use_profiler = check.flag("use_profiler", use_profiler)
        self.name = name
        self._timed = check.flag("statistics", statistics) or use_profiler
        self._slots: list[Slot] = []
        self._stage_count = 0
        self._handle = PipelineHandle(name)
        self._block_output = False
        self._output_timeout: float | None = 10.0
        self._last_start: tuple[str, FlowSettings] | None = None
        self._lock = threading.RLock()
        if use_profiler:
            self._handle.on_final_stop.append(_save_profiles)

    # -- building ---------------------------------------------------------------

    def add(
        self,
        stage: StageCallable | Stage | type[Stage] | Combinator | None = None,
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
        ray_options: Mapping[str, Any] | None = None,
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
        ``executor="ray"`` runs each worker in a Ray actor (needs the ``ray`` extra), placed
        by ``ray_options`` (``num_cpus`` (default 1), ``num_gpus``, ``resources``,
        ``runtime_env``, ``scheduling_strategy``, ...; ``max_in_flight`` calls per actor).

        ``stage`` may also be a combinator (``Parallel``, ``Route``, ``Tap``): one step whose
        branches are chains of stages; names are unique across the whole graph.

        Raises ``InvalidArgument`` (a bad option, naming it), ``InvalidStage``,
        ``InvalidStageName``, and ``InvalidState`` while the pipeline runs (stages are
        added before ``serialize()``/``parallelize()``, or after ``cleanup()``).
        """
        if self._handle.is_running:
            raise InvalidState(
                "add() while the pipeline runs would not take effect: call cleanup() first, "
                "or add every stage before serialize()/parallelize()"
            )
        if name is None:
            name = getattr(stage, "name", "") if not isinstance(stage, type) else ""
            name = name or self._default_name()
        check_stage_name(name)
        if any(slot.name == name for slot in self._slots):
            raise InvalidStageName(
                f"a stage named {name!r} is already in this pipeline; pass a unique name to add()"
            )
        if isinstance(stage, Sync) and self._slots:
            raise InvalidArgument(
                f"{name!r}: a Sync must be the pipeline's first step (its sources are the "
                "pipeline's inputs); add it before any other stage"
            )
        policy = FailurePolicy(on_error, retries, restart_backoff, max_restarts, restart_window)
        scaling = Scaling(workers, ordered, executor, thread_safe, ray_options)
        slot = make_slot(stage, name, factory, policy, scaling)
        check_unique([slot], {n for existing in self._slots for n in names_in(existing)})
        self._slots.append(slot)
        self._stage_count += 1

    def _default_name(self) -> str:
        number = self._stage_count + 1
        taken = {slot.name for slot in self._slots}
        while f"Stage_{number}" in taken:
            number += 1
        return f"Stage_{number}"

    @property
    def stage_names(self) -> list[str]:
        """The stage names in order."""
        return [slot.name for slot in self._slots]

    @property
    def stages(self) -> list[tuple[str, Any]]:
        """(name, stage) pairs in order, as running now (a replaced stage shows its
        replacement; a nested pipeline is a ``PipelineStage``; a combinator is itself)."""
        return [
            (slot.name, slot.stage if isinstance(slot, StageSlot) else slot.combinator)
            for slot in self._slots
        ]

    @property
    def input_generator(self) -> Callable[[], Any] | dict[str, Callable[[], Any]] | None:
        """The zero-argument callable that ``forward()`` and ``start_loop()`` draw inputs
        from (a dict of them by source for a pipeline that starts with a ``Sync``)."""
        return self._input_generator

    def _generator(self, source: str | None) -> Callable[[], Any] | None:
        generators = self._input_generator
        if not isinstance(generators, dict):
            return generators
        if source is None:
            raise InvalidArgument(
                f"the input generator is a dict by source: pass source=, one of {list(generators)}"
            )
        if source not in generators:
            raise InvalidArgument(
                f"no input generator for source {source!r}; they are for {list(generators)}"
            )
        return generators[source]

    def serialize(
        self,
        *,
        capacity: int = 1,
        on_full: OnFull = "block",
        max_age: float | None = None,
        results_buffer: int = 1024,
        setup_timeout: float | None = DEFAULT_SETUP_TIMEOUT,
    ) -> Pipeline:
        """Run in serial mode: each item passes every stage before the next one enters.

        ``capacity`` items may wait at the coordinator for their turn (default 1: a
        ``forward`` from another thread waits until the pipeline is free).
        ``setup_timeout`` bounds how long every stage's ``setup()`` may take.

        On a running pipeline this is a rebuild: accepted items finish first, each stage
        cleans up on its old thread and sets up again on its new one. Raises
        ``InvalidArgument`` (before touching a running pipeline), ``PipelineUndefined``
        (no stages) and ``PipelineInitiationError`` (a ``setup()`` raised or hung).
        """
        flow = FlowSettings(capacity, on_full, None, max_age, results_buffer, setup_timeout)
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
        setup_timeout: float | None = DEFAULT_SETUP_TIMEOUT,
    ) -> Pipeline:
        """Run in parallel mode: every stage on its own thread, items kept in order.

        ``capacity`` bounds the items inside the pipeline (default: 4 per stage).
        ``on_full`` says what a full pipeline does with a new item: ``"block"`` (wait
        up to ``input_timeout``; PyStream's ``block_input=True``), ``"reject"`` (refuse
        at once; ``block_input=False``) or ``"drop_oldest"`` (keep the newest, drop the
        oldest not yet started). ``max_age`` drops items older than that many seconds
        before a stage starts them. ``get_results`` waits up to ``output_timeout``
        seconds when ``block_output``. ``setup_timeout`` bounds every stage's ``setup()``.

        Raises as ``serialize()``.
        """
        check.flag("block_input", block_input)
        check.flag("block_output", block_output)
        output_timeout = check.seconds("output_timeout", output_timeout)  # type: ignore[assignment]
        if capacity is None:
            capacity = max(4, 4 * len(self._slots))
        if on_full is None:
            on_full = "block" if block_input else "reject"
        flow = FlowSettings(
            capacity, on_full, input_timeout, max_age, results_buffer, setup_timeout
        )
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
            self._handle._start(
                lambda outputs: Runtime(
                    self._slots,
                    mode,
                    flow,
                    outputs,
                    self._handle.error_callbacks,
                    self._timed,
                )
            )
            self._last_start = (mode, flow)
            self._block_output = False

    def _start_again(self) -> None:
        """Run again as last started (a nested pipeline whose parent was rebuilt)."""
        with self._lock:
            if self._handle.is_running or self._last_start is None:
                return
            self._start(*self._last_start)

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

    def forward(self, data: Any = _NO_DATA, *, source: str | None = None) -> bool:
        """Push one item; without ``data`` (or with None) the input generator makes it.

        Serial mode returns once the item went through every stage (a stage's error is
        raised here as ``StageError``). Parallel mode returns False if the pipeline had
        no room in time. ``source`` names the input of a pipeline that starts with a
        ``Sync``. Raises ``PipelineUndefined`` when not running.
        """
        runtime = self._handle._runtime
        if runtime is None:
            raise PipelineUndefined(
                "forward() needs a running pipeline: call serialize() or parallelize() first"
                " (after cleanup() the pipeline must be started again)"
            )
        generate = self._generator(source) if self._input_generator is not None else None
        if data is _NO_DATA or (data is None and generate is not None):
            data = generate() if generate is not None else None
        if runtime.mode == SERIAL:
            self._handle.ask(data)
            return True
        return self._handle.tell(data, source=source)

    def get_results(self) -> Any:
        """The latest output not read yet, or None; the same output is never returned twice."""
        if not self._handle.is_running:
            raise PipelineUndefined(
                "get_results() needs a running pipeline: call serialize() or parallelize() first"
            )
        timeout = self._output_timeout if self._block_output else 0.0
        return self._handle.latest(timeout)

    def start_loop(
        self, period: float | Mapping[str, float] = 0.01, *, source: str | None = None
    ) -> None:
        """Feed the pipeline from the input generator every ``period`` seconds, in the background.

        With a generator per source (a ``Sync`` pipeline), each source gets its own loop:
        ``source=`` starts one, else all start; ``period`` may map sources to periods, so
        each sensor keeps its own rate. The loops belong to the pipeline's life: any stop
        ends them. Raises ``PipelineUndefined`` (no input generator, or not running),
        ``InvalidArgument`` (a bad period or source) and ``InvalidState`` (a loop already
        runs).
        """
        if self._input_generator is None:
            raise PipelineUndefined(
                "start_loop() needs an input generator: Pipeline(input_generator=...)"
            )
        if not self._handle.is_running:
            raise PipelineUndefined(
                "start_loop() needs a running pipeline: call serialize() or parallelize() first"
            )
        generators = self._input_generator
        if not isinstance(generators, dict):
            if source is not None:
                raise InvalidArgument("source= needs an input generator per source (a dict)")
            self._handle._start_loop(generators, _period(period, None))
            return
        chosen = [source] if source is not None else list(generators)
        periods = {name: _period(period, name) for name in chosen}
        for name in chosen:
            generate = self._generator(name)
            assert generate is not None
            self._handle._start_loop(generate, periods[name], name)

    @property
    def missed_ticks(self) -> int:
        """Ticks of the input loop skipped because a push ran past its due time."""
        return self._handle.missed_ticks

    def stop_loop(self) -> None:
        """Stop the input loop started by ``start_loop``; harmless when none runs."""
        self._handle._stop_loop()

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

    def as_stage(self, timeout: float | None = NESTED_TIMEOUT) -> PipelineStage:
        """This built pipeline as one stage of another pipeline; it keeps its own mode.

        The stage waits up to ``timeout`` seconds for the child's output (None: for ever);
        an item that takes longer fails with ``StageError`` (cause ``OutputTimeout``).
        """
        timeout = check.seconds("timeout", timeout)
        if not self._handle.is_running:
            raise PipelineUndefined(
                "as_stage() needs a built pipeline: call serialize() or parallelize() on it first"
            )
        return PipelineStage(self, timeout)

    # -- stopping -------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the loop and every stage actor, and call each stage's ``cleanup()``.

        Items still in flight finish first (those held by a stopped stage are dropped
        with a reason). Afterwards the pipeline is undefined again; calling
        ``cleanup()`` twice is harmless, and a ``cleanup()`` interrupted by Ctrl-C is
        finished by the next one.
        """
        with self._lock:
            self._handle.stop(drain=True)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _period(period: float | Mapping[str, float], source: str | None) -> float:
    if isinstance(period, Mapping):
        if source is None:
            raise InvalidArgument("period= as a dict needs an input generator per source")
        if source not in period:
            raise InvalidArgument(f"period= gives no period for source {source!r}")
        return check.positive_seconds(f"period[{source!r}]", period[source])
    return check.positive_seconds("period", period)


def _save_profiles(statistics: PipelineStatistics) -> None:
    """Write the last run's profiles to the profile folder (the profiler's final stop)."""
    latency, throughput = profiles_from(statistics)
    try:
        folder = get_profiler_db_folder()
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "last_profiles.json"), "w", encoding="utf-8") as out:
            json.dump({"latency": latency, "throughput": throughput}, out, indent=2)
    except OSError as exc:
        logger.warning("could not write profiles to %s: %s", get_profiler_db_folder(), exc)


class PipelineStage(Stage):
    """A built pipeline used as one stage of another (from ``Pipeline.as_stage()``)."""

    def __init__(self, pipeline: Pipeline, timeout: float | None = NESTED_TIMEOUT) -> None:
        self.pipeline = pipeline
        self.name = pipeline.name or ""
        self.timeout = timeout

    def setup(self) -> None:
        """Start the child again if the parent's rebuild or restart stopped it."""
        self.pipeline._start_again()

    def __call__(self, data: Any) -> Any:
        return self.pipeline.handle.ask(data, timeout=self.timeout)

    def cleanup(self) -> None:
        """Stop the child, draining for at most ``timeout`` seconds (the parent's stop must
        not wait for ever on a child stuck in a stage call)."""
        with self.pipeline._lock:
            self.pipeline.handle.stop(drain=True, timeout=self.timeout)

    def child_statistics(self) -> PipelineStatistics | None:
        """The nested pipeline's snapshot, shown under this stage."""
        try:
            return self.pipeline.statistics()
        except PipelineUndefined:
            return None
