"""The thread-safe handle: the one door through which items enter a running pipeline."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, Literal

import pykka

from ._errors import InvalidItem, PipelineFull, PipelineTerminated, PipelineUndefined, StageError
from ._messages import Item
from ._runtime import Runtime
from ._statistics import PipelineStatistics
from ._supervisor import CONTROL_TIMEOUT, StageStatus, Supervisor

PipelineState = Literal["idle", "running", "terminated", "stopped"]


class PipelineHandle:
    """Submit items and read results; safe to share between threads and with asyncio.

    The handle stays the same object for the pipeline's whole life, also when the
    pipeline is rebuilt in another mode, so services can keep it.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._runtime: Runtime | None = None
        self._last_runtime: Runtime | None = None  # keeps final statistics after a stop
        self._rejected = 0
        self._lock = threading.Lock()
        self.error_callbacks: list[Callable[[StageError], object]] = []

    def _attach(self, runtime: Runtime | None) -> None:
        with self._lock:
            self._runtime = runtime
            if runtime is not None:
                self._last_runtime = runtime

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

    @property
    def state(self) -> PipelineState:
        """``"idle"`` (never started), ``"running"``, ``"terminated"`` (a stage's failure
        stopped it; cleanup still due) or ``"stopped"``."""
        runtime = self._runtime
        if runtime is not None:
            return "terminated" if runtime.terminated is not None else "running"
        return "stopped" if self._last_runtime is not None else "idle"

    @property
    def is_running(self) -> bool:
        """True while a mode is chosen and the pipeline has not been stopped."""
        return self._runtime is not None

    # -- submitting ----------------------------------------------------------------

    def submit(self, data: Any, timeout: float | None = None) -> Future[Any]:
        """Accept ``data`` and return a future for its output.

        When the pipeline is full the ``on_full`` policy decides: ``"block"`` waits up to
        ``timeout`` seconds (default: the pipeline's input timeout), then raises
        ``PipelineFull``; ``"reject"`` raises it at once; ``"drop_oldest"`` always accepts.
        The future raises ``StageError`` if a stage failed on the item and ``ItemDropped``
        if a policy dropped it.
        """
        future: Future[Any] = Future()
        self._enter(data, future, timeout)
        return future

    def ask(self, data: Any, timeout: float | None = None) -> Any:
        """Submit ``data`` and wait for its output; ``timeout`` covers both waits together."""
        if timeout is None:
            return self.submit(data).result()
        deadline = time.monotonic() + timeout
        future = self.submit(data, timeout)
        return future.result(max(0.0, deadline - time.monotonic()))

    def tell(self, data: Any, timeout: float | None = None) -> bool:
        """Submit ``data`` without a future; False if the pipeline refused it for lack of room."""
        try:
            self._enter(data, None, timeout)
        except PipelineFull:
            return False
        return True

    async def asubmit(self, data: Any, timeout: float | None = None) -> Any:
        """``submit`` for asyncio: waits for room and for the output without blocking the loop."""
        future: Future[Any] = Future()
        if not self._enter(data, future, 0.0, count_refusal=False):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._enter, data, future, timeout)
        return await asyncio.wrap_future(future)

    def _enter(
        self,
        data: Any,
        future: Future[Any] | None,
        timeout: float | None,
        count_refusal: bool = True,
    ) -> bool:
        runtime = self._running()
        runtime.check_alive()
        if runtime.pickles_inputs:
            _check_item_picklable(data)
        flow = runtime.flow
        item = Item(data, future, 0.0)
        wait = flow.admit_timeout if timeout is None else timeout
        admitted = runtime.window.admit(item, wait)
        item.stamp(time.perf_counter(), flow.max_age)  # age and latency count from acceptance
        if not admitted:
            if self._runtime is not runtime:
                raise PipelineTerminated("the pipeline was stopped while the item waited for room")
            if not count_refusal:
                return False
            with self._lock:
                self._rejected += 1
            how = (
                f"no room came free within {wait}s"
                if flow.on_full == "block"
                else "on_full='reject'"
            )
            raise PipelineFull(
                f"the pipeline is full ({flow.capacity} items in flight) and {how}; raise "
                "the capacity, pass a longer timeout, use on_full='drop_oldest', or slow the source"
            )
        try:
            runtime.submit(item)
        except pykka.ActorDeadError:
            runtime.window.finish(item)
            raise PipelineTerminated(
                "the pipeline was stopped; the item was not accepted"
            ) from None
        return True

    @property
    def rejected(self) -> int:
        """Items refused for lack of room: never accepted, so never counted as drops."""
        return self._rejected

    # -- reading ---------------------------------------------------------------------

    def latest(self, timeout: float | None = 0.0, default: Any = None) -> Any:
        """The newest output not read yet (older unread ones are skipped), or ``default``.

        ``timeout=0`` returns at once; otherwise wait up to ``timeout`` seconds.
        """
        return self._running().latest.take(timeout, default)

    def results(self, timeout: float | None = None) -> Iterator[Any]:
        """Every output from now on, in input order, for one reader.

        Waits up to ``timeout`` seconds for each next output and ends when none came in
        time or the pipeline stopped. The pipeline has one results buffer: several
        iterators share it, each output going to one of them. Outputs are buffered in bounded memory
        (``results_buffer``); when a reader falls behind, the oldest unread outputs are
        dropped and counted in ``statistics().results_dropped``.
        """
        stream = self._running().stream
        stream.subscribe()  # now, not at the first next(): outputs from here on count

        def read() -> Iterator[Any]:
            while True:
                ok, value = stream.get(timeout)
                if not ok:
                    return
                yield value

        return read()

    def aresults(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """``results`` for asyncio: waits in a worker thread, never on the event loop."""
        stream = self._running().stream
        stream.subscribe()

        async def read() -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            while True:
                ok, value = await loop.run_in_executor(None, stream.get, timeout)
                if not ok:
                    return
                yield value

        return read()

    # -- errors and runtime control ---------------------------------------------------

    def on_error(self, callback: Callable[[StageError], object]) -> None:
        """Call ``callback(error)`` for every item a stage failed on.

        The ``StageError`` carries ``stage``, ``item_index``, ``data`` (the stage's input)
        and the original exception as ``__cause__``. Callbacks run on the coordinator's
        thread: keep them quick.
        """
        self.error_callbacks.append(callback)

    def dead_letters(self, timeout: float | None = None) -> Iterator[StageError]:
        """Every ``StageError`` from now on, as an iterator (one shared, bounded buffer like
        ``results``)."""
        stream = self._running().dead_letters
        stream.subscribe()

        def read() -> Iterator[StageError]:
            while True:
                ok, error = stream.get(timeout)
                if not ok:
                    return
                yield error

        return read()

    def stop_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> None:
        """Stop one stage: it cleans up, and items wait for it (within capacity and on_full).

        Raises ``StageBusy`` if the stage is still handing over from an actor stuck in a
        stage call for longer than ``timeout``.
        """
        self._control().stop_stage(name, timeout)

    def start_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> None:
        """Start a stopped stage again; the items that waited go first, in order."""
        self._control().start_stage(name, timeout)

    def restart_stage(self, name: str, timeout: float | None = CONTROL_TIMEOUT) -> None:
        """Replace a stage's actor (and instance, from its class or factory) while items flow."""
        self._control().restart_stage(name, timeout)

    def replace_stage(
        self,
        name: str,
        stage: Any = None,
        timeout: float | None = CONTROL_TIMEOUT,
        *,
        factory: Callable[[], Any] | None = None,
    ) -> None:
        """Put another stage in place of ``name``: an instance, a Stage class, or ``factory``.

        With a class or ``factory`` later restarts build fresh instances from it.

        No accepted item is lost, duplicated or reordered: items before the swap are
        processed by the old stage, items after it by the new one.
        """
        self._control().replace_stage(name, stage, timeout, factory=factory)

    def status(self) -> dict[str, StageStatus]:
        """Each stage's state (running, restarting, stopped, failed) and restart count."""
        return self._running().supervisor.status()

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline's counters and each stage's.

        After a stop it still answers, with the final figures of the last run.
        """
        runtime = self._runtime or self._last_runtime
        if runtime is None:
            raise PipelineUndefined(
                "the pipeline has not run yet: call serialize() or parallelize() first"
            )
        return runtime.statistics()

    # -- stopping ----------------------------------------------------------------------

    def stop(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop the running pipeline: finish accepted items first when ``drain``.

        With ``drain=False`` pending futures fail with ``PipelineTerminated`` at once.
        Each stage's ``cleanup()`` runs. Returns True if every thread ended within
        ``timeout``. Stopping twice is harmless.
        """
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is None:
            return True
        return runtime.stop(drain=drain, timeout=timeout)


def _check_item_picklable(data: Any) -> None:
    """Refuse at submit an item the first (process) stage could never receive."""
    try:
        pickle.dumps(data)
    except Exception as exc:
        raise InvalidItem(
            f"the item cannot be pickled ({type(exc).__name__}: {exc}), and the first stage "
            "runs in a worker process; send plain data (numbers, strings, arrays, dicts)"
        ) from exc
