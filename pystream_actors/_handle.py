"""The thread-safe handle: the one door through which items enter a running pipeline.

The handle also owns the pipeline's life: whichever stop a user calls (``handle.stop``,
``Pipeline.cleanup``, leaving a ``with`` block, interpreter exit) ends here and stops
the input loop, the actors, the name and the readers together.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, Literal

from . import _arguments as check
from . import _lifecycle, _registry
from ._errors import (
    InvalidArgument,
    InvalidItem,
    InvalidState,
    OutputTimeout,
    PipelineFull,
    PipelineTerminated,
    PipelineUndefined,
    StageError,
)
from ._latest import LatestResult
from ._loop import InputLoop
from ._messages import Item
from ._outputs import Outputs
from ._result_stream import AsyncReader, Broadcast, Reader
from ._runtime import Runtime, SourceEntry
from ._statistics import PipelineStatistics
from ._supervisor import CONTROL_TIMEOUT, StageStatus, Supervisor
from ._sync import checked_stamp
from ._window import InFlightWindow

PipelineState = Literal["idle", "running", "stopping", "terminated", "stopped"]


class PipelineHandle:
    """Submit items and read results; safe to share between threads and with asyncio.

    The handle stays the same object for the pipeline's whole life, also when the
    pipeline is rebuilt in another mode, so services can keep it; readers of
    ``results()``, ``dead_letters()`` and ``latest()`` keep reading across a rebuild.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._runtime: Runtime | None = None
        self._stopping: Runtime | None = None  # a stop that was interrupted: finish it
        self._last_runtime: Runtime | None = None  # keeps final statistics after a stop
        self._rejected = 0
        self._rejected_lock = threading.Lock()
        self._lock = threading.RLock()  # lifecycle changes, one at a time
        self._outputs = Outputs()
        self._loops: dict[str | None, InputLoop] = {}  # by source (None: the only input)
        self._missed_ticks_before = 0
        self.error_callbacks: list[Callable[[StageError], object]] = []
        self.on_final_stop: list[Callable[[PipelineStatistics], None]] = []
        """Called with the last statistics when the pipeline stops for good (profiles)."""

    # -- life ---------------------------------------------------------------------------

    def _start(self, build: Callable[[Outputs], Runtime]) -> None:
        """Run a new runtime made by ``build``; a running one is drained and stopped first
        (its stages clean up on their threads; the new ones set up on theirs)."""
        with self._lock:
            self._finish_interrupted_stop()
            old, self._runtime = self._runtime, None
            if old is not None:
                self._stopping = old  # an interrupted rebuild is finished by the next stop
                old.stop(drain=True)
                self._stopping = None
            elif self._last_runtime is not None:
                self._outputs = Outputs()  # the last run ended its readers: start afresh
            if self.name is not None:
                _registry.register(self.name, self)
            try:
                runtime = build(self._outputs)
            except BaseException:
                if self.name is not None:
                    _registry.unregister(self.name, self)
                _lifecycle.untrack(self)
                self._outputs.close()
                raise
            self._runtime = self._last_runtime = runtime
            _lifecycle.track(self)

    def stop(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop the pipeline for good: the input loop, every actor, the name, the readers.

        With ``drain`` accepted items finish first (items held by a stopped stage are
        dropped with a reason); what is left after ``timeout`` seconds, or everything with
        ``drain=False``, fails with ``PipelineTerminated``. Each stage's ``cleanup()``
        runs on its own thread. Returns True if every thread ended within ``timeout``.
        Stopping twice is harmless; a stop interrupted (Ctrl-C) is finished by the next.
        Called from a stage of this same pipeline, the stop runs in the background and
        this returns False at once (a stage cannot wait for itself).
        """
        check.flag("drain", drain)
        check.seconds("timeout", timeout)
        runtime = self._runtime or self._stopping
        if runtime is not None and runtime.group.owns_current_thread():
            threading.Thread(
                target=self.stop, args=(drain, timeout), name="pystream-stopper", daemon=True
            ).start()
            return False
        self._stop_loop()
        with self._lock:
            runtime = self._runtime or self._stopping
            self._runtime, self._stopping = None, runtime
            if runtime is None:
                return True
            all_ended = runtime.stop(drain=drain, timeout=timeout)
            self._stopping = None
            if self.name is not None:
                _registry.unregister(self.name, self)
            self._outputs.close()
            _lifecycle.untrack(self)
        for hook in self.on_final_stop:
            hook(runtime.statistics())
        return all_ended

    def _finish_interrupted_stop(self) -> None:
        if self._stopping is not None:
            self.stop()

    @property
    def state(self) -> PipelineState:
        """``"idle"`` (never started), ``"running"``, ``"stopping"``, ``"terminated"`` (a
        stage's failure or a dead actor stopped it; cleanup still due) or ``"stopped"``."""
        runtime = self._runtime
        if runtime is not None:
            return "terminated" if runtime.terminated is not None else "running"
        if self._stopping is not None:
            return "stopping"
        return "stopped" if self._last_runtime is not None else "idle"

    @property
    def is_running(self) -> bool:
        """True while a mode is chosen and the pipeline has not been stopped."""
        return self._runtime is not None

    def _running(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            raise PipelineUndefined(
                "the pipeline is not running: call serialize() or parallelize() first"
            )
        return runtime

    def _control(self) -> Supervisor:
        runtime = self._running()
        if runtime.terminated is not None:
            raise PipelineTerminated(runtime.terminated)
        return runtime.supervisor

    # -- submitting ----------------------------------------------------------------

    def submit(
        self,
        data: Any,
        timeout: float | None = None,
        *,
        source: str | None = None,
        stamp: float | None = None,
    ) -> Future[Any]:
        """Accept ``data`` and return a future for its output.

        When the pipeline is full the ``on_full`` policy decides: ``"block"`` waits up to
        ``timeout`` seconds (default: the pipeline's input timeout), then raises
        ``PipelineFull``; ``"reject"`` raises it at once; ``"drop_oldest"`` always accepts.
        Raises ``PipelineUndefined`` when not running (never started, stopping or
        stopped), ``PipelineTerminated`` when a failure terminated it or a stop began while
        the item waited for room, ``InvalidItem`` for an item a process stage cannot
        receive. The
        future raises ``StageError`` if a stage failed on the item, ``ItemDropped`` if a
        policy dropped it, ``PipelineTerminated`` if the pipeline stopped first: every
        future returned resolves.

        When the first step is a ``Sync``, ``source`` names the input the item comes from
        (it enters by that source's own window) and ``stamp`` is its sensor time (default:
        the ``Sync``'s ``stamp`` function for the source, else ``time.monotonic()``).
        """
        future: Future[Any] = Future()
        self._enter(data, future, _checked_timeout(timeout), source, stamp)
        return future

    def ask(
        self,
        data: Any,
        timeout: float | None = None,
        *,
        source: str | None = None,
        stamp: float | None = None,
    ) -> Any:
        """Submit ``data`` and wait for its output; ``timeout`` covers both waits together.

        Raises what ``submit`` and its future raise, and ``OutputTimeout`` when the output
        does not come in time (the item goes on and still settles).
        """
        timeout = _checked_timeout(timeout)
        if timeout is None:
            return self.submit(data, source=source, stamp=stamp).result()
        deadline = time.monotonic() + timeout
        future = self.submit(data, timeout, source=source, stamp=stamp)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if future.done():
                raise  # the item itself failed with a TimeoutError-like error
            raise OutputTimeout(
                f"no output within {timeout}s; the item is still in the pipeline"
            ) from None

    def tell(
        self,
        data: Any,
        timeout: float | None = None,
        *,
        source: str | None = None,
        stamp: float | None = None,
    ) -> bool:
        """Submit ``data`` without a future; False if the pipeline refused it for lack of room."""
        try:
            self._enter(data, None, _checked_timeout(timeout), source, stamp)
        except PipelineFull:
            return False
        return True

    async def asubmit(
        self,
        data: Any,
        timeout: float | None = None,
        *,
        source: str | None = None,
        stamp: float | None = None,
    ) -> Any:
        """``submit`` for asyncio: waits for room and for the output without blocking the loop
        or a thread.

        Cancelled while waiting for room, the item is withdrawn: it was never accepted.
        Cancelled after acceptance, the item still goes through the pipeline (its output
        reaches ``latest()`` and ``results()`` readers); only this caller stops waiting.
        """
        timeout = _checked_timeout(timeout)
        runtime, item, window = self._prepare(data, Future(), source, stamp)
        wait = runtime.flow.admit_timeout if timeout is None else timeout
        admitted = await window.admit_async(item, wait)
        self._admitted(runtime, item, admitted, wait, window)
        assert item.future is not None
        return await asyncio.wrap_future(item.future)

    def _enter(
        self,
        data: Any,
        future: Future[Any] | None,
        timeout: float | None,
        source: str | None,
        stamp: float | None,
    ) -> None:
        runtime, item, window = self._prepare(data, future, source, stamp)
        wait = runtime.flow.admit_timeout if timeout is None else timeout
        self._admitted(runtime, item, window.admit(item, wait), wait, window)

    def _prepare(
        self, data: Any, future: Future[Any] | None, source: str | None, stamp: float | None
    ) -> tuple[Runtime, Item, InFlightWindow]:
        runtime = self._running()
        runtime.check_alive()
        if runtime.pickles_inputs:
            _check_item_picklable(data)
        if source is not None and not isinstance(source, str):
            raise InvalidArgument(f"source must be a source name (str), got {source!r}")
        window, entry = runtime.window_for(source)
        item = Item(data, future, 0.0)
        if entry is not None:
            item.source = entry.name
            item.stamp = _stamp_of(entry, data, stamp)
        elif stamp is not None:
            raise InvalidArgument(
                "stamp= is for the sources of a Sync first step; this pipeline has none"
            )
        return runtime, item, window

    def _admitted(
        self,
        runtime: Runtime,
        item: Item,
        admitted: bool,
        wait: float | None,
        window: InFlightWindow,
    ) -> None:
        """Send an admitted item on, or explain why it was refused."""
        flow = runtime.flow
        max_age = runtime.sources[item.source].max_age if item.source else flow.max_age
        item.start_clock(time.perf_counter(), max_age)  # age and latency count from acceptance
        if admitted:
            runtime.accept(item)
            return
        runtime.check_alive()  # stopped or terminated while the item waited for room
        with self._rejected_lock:
            self._rejected += 1
            if item.source:
                runtime.source_rejected[item.source] += 1
        how = (
            f"no room came free within {wait}s" if window.on_full == "block" else "on_full='reject'"
        )
        which = f"source {item.source!r} of the pipeline" if item.source else "the pipeline"
        raise PipelineFull(
            f"{which} is full ({window.capacity} items in flight) and {how}; raise "
            "the capacity, pass a longer timeout, use on_full='drop_oldest', or slow the source"
        )

    @property
    def rejected(self) -> int:
        """Items refused for lack of room: never accepted, so never counted as drops."""
        return self._rejected

    # -- the input loop -------------------------------------------------------------------

    def _start_loop(
        self, generate: Callable[[], Any], period: float, source: str | None = None
    ) -> None:
        with self._lock:
            if source in self._loops:
                which = f"for source {source!r} " if source is not None else ""
                raise InvalidState(
                    f"the input loop {which}is already running; call stop_loop() first"
                )
            self._running().window_for(source)  # refuse an unknown source now, not per tick
            self._loops[source] = InputLoop(
                lambda: self._loop_push(generate, period, source), period
            )

    def _loop_push(self, generate: Callable[[], Any], period: float, source: str | None) -> None:
        # A full pipeline gets the on_full policy, but "block" waits at most one period:
        # the clock must not stall behind a slow stage.
        try:
            self.tell(generate(), timeout=period, source=source)
        except (PipelineUndefined, PipelineTerminated):
            pass

    def _stop_loop(self) -> None:
        with self._lock:
            loops, self._loops = self._loops, {}
        for loop in loops.values():
            loop.stop()
        if loops:
            self._missed_ticks_before = sum(loop.missed_ticks for loop in loops.values())

    @property
    def missed_ticks(self) -> int:
        """Ticks of the input loops skipped because a push ran past its due time."""
        loops = list(self._loops.values())
        return sum(loop.missed_ticks for loop in loops) if loops else self._missed_ticks_before

    # -- reading ---------------------------------------------------------------------

    def latest(
        self, timeout: float | None = 0.0, default: Any = None, *, output: str | None = None
    ) -> Any:
        """The newest output not read yet (older unread ones are skipped), or ``default``.

        ``timeout=0`` returns at once; otherwise wait up to ``timeout`` seconds (None: until
        an output comes or the pipeline stops, which returns ``default``). ``output`` names
        a side output (a ``Tap`` branch) instead of the pipeline's own.
        """
        timeout = check.seconds("timeout", timeout)
        latest, _ = self._output(self._running(), output)
        return latest.take(timeout, default)

    def results(self, timeout: float | None = None, *, output: str | None = None) -> Reader[Any]:
        """Every output from now on, in input order, for this reader.

        Each call is its own reader: it gets every output produced after the call (none
        from before), in bounded memory (``results_buffer``: when it falls behind, its
        oldest unread outputs are dropped and counted in ``statistics().results_dropped``).
        It waits up to ``timeout`` seconds for each next output and ends when none came in
        time or the pipeline stopped for good; it keeps reading across a rebuild.
        ``close()`` it (or use it as a context manager) when done. ``output`` names a side
        output (a ``Tap`` branch) to read instead of the pipeline's own outputs.
        """
        timeout = check.seconds("timeout", timeout)
        runtime = self._running()
        _, stream = self._output(runtime, output)
        return Reader(stream.subscribe(runtime.flow.results_buffer), timeout)

    def aresults(
        self, timeout: float | None = None, *, output: str | None = None
    ) -> AsyncIterator[Any]:
        """``results`` for asyncio: waits on the event loop without a thread; a cancelled
        read takes no output away."""
        timeout = check.seconds("timeout", timeout)
        runtime = self._running()
        _, stream = self._output(runtime, output)
        return AsyncReader(stream.subscribe(runtime.flow.results_buffer), timeout)

    def _output(self, runtime: Runtime, output: str | None) -> tuple[LatestResult, Broadcast]:
        if output is None:
            return self._outputs.latest, self._outputs.results
        if output not in runtime.tap_outputs:
            known = sorted(runtime.tap_outputs) or "none: add a ps.Tap(name=...) step"
            raise InvalidArgument(f"no side output named {output!r}; side outputs: {known}")
        return self._outputs.named(output)

    # -- errors and runtime control ---------------------------------------------------

    def on_error(self, callback: Callable[[StageError], object]) -> None:
        """Call ``callback(error)`` for every item a stage failed on.

        The ``StageError`` carries ``stage``, ``item_index``, ``data`` (the stage's input)
        and the original exception as ``__cause__``. Callbacks run on the coordinator's
        thread: keep them quick. Whatever a callback raises is logged and skipped.
        """
        if not callable(callback):
            raise InvalidArgument(f"callback must be callable, got {callback!r}")
        self.error_callbacks.append(callback)

    def dead_letters(self, timeout: float | None = None) -> Iterator[StageError]:
        """Every ``StageError`` from now on, for this reader (bounded like ``results``)."""
        timeout = check.seconds("timeout", timeout)
        runtime = self._running()
        return Reader(self._outputs.dead_letters.subscribe(runtime.flow.results_buffer), timeout)

    def stop_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> bool:
        """Stop one stage: it cleans up on its thread, and later items wait for it (within
        the capacity and ``on_full``). True once it stopped within ``timeout``; False if
        it is still finishing a stage call (it stops right after). Raises
        ``StageNotFound``, ``PipelineUndefined``, ``PipelineTerminated``.
        """
        return self._control().stop_stage(name, check.seconds("timeout", timeout))

    def start_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> bool:
        """Start a stopped stage on a new actor; the items that waited go first, in order.
        True once it runs within ``timeout``; False if it takes over later (see
        ``restart_stage``)."""
        return self._control().start_stage(name, check.seconds("timeout", timeout))

    def restart_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> bool:
        """Replace a stage's actor (and instance, from its class or factory) while items flow.

        No accepted item is lost, duplicated or reordered. Returns True once the new actor
        took over within ``timeout``; False if the old actor is still in a stage call: the
        hand-over then completes in the background when that call returns, and later
        control calls queue behind it. Raises ``StageNotFound``, ``StageBusy`` (too many
        hand-overs queued behind a call that does not return), ``InvalidStage`` (the
        factory raised), ``PipelineUndefined``, ``PipelineTerminated``.
        """
        return self._control().restart_stage(name, check.seconds("timeout", timeout))

    def replace_stage(
        self,
        name: str,
        stage: Any = None,
        timeout: float | None = CONTROL_TIMEOUT,
        *,
        factory: Callable[[], Any] | None = None,
    ) -> bool:
        """Put another stage in place of ``name``: an instance, a Stage class, or ``factory``.

        With a class or ``factory`` later restarts build fresh instances from it, and a
        rebuild in another mode keeps the replacement. Items before the swap are
        processed by the old stage, items after it by the new one. Returns and raises as
        ``restart_stage``.
        """
        timeout = check.seconds("timeout", timeout)
        return self._control().replace_stage(name, stage, timeout, factory=factory)

    def status(self) -> dict[str, StageStatus]:
        """Each stage's state (running, restarting, stopped, failed) and restart count."""
        return self._running().supervisor.status()

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline's counters and each stage's.

        After a stop it still answers, with the final figures of the last run.
        """
        runtime = self._runtime or self._stopping or self._last_runtime
        if runtime is None:
            raise PipelineUndefined(
                "the pipeline has not run yet: call serialize() or parallelize() first"
            )
        return runtime.statistics()


def _stamp_of(entry: SourceEntry, data: Any, stamp: Any) -> float:
    """An item's sensor stamp: given, else from the source's stamp function, else now."""
    if stamp is None:
        if entry.stamp_of is None:
            return time.monotonic()
        try:
            stamp = entry.stamp_of(data)
        except Exception as exc:
            raise InvalidItem(
                f"the stamp function of source {entry.name!r} raised {type(exc).__name__}: "
                f"{exc}; the item was not accepted"
            ) from exc
    return checked_stamp(entry.name, stamp)


def _checked_timeout(timeout: float | None) -> float | None:
    return None if timeout is None else check.seconds("timeout", timeout)


def _check_item_picklable(data: Any) -> None:
    """Refuse at submit an item the first (process) stage could never receive."""
    try:
        pickle.dumps(data)
    except Exception as exc:
        raise InvalidItem(
            f"the item cannot be pickled ({type(exc).__name__}: {exc}), and the first stage "
            "runs in a worker process; send plain data (numbers, strings, arrays, dicts)"
        ) from exc
