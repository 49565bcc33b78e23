"""The thread-safe handle: the one door through which items enter a running pipeline."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import pykka

from ._errors import PipelineFull, PipelineTerminated, PipelineUndefined
from ._messages import Item
from ._runtime import Runtime
from ._statistics import PipelineStatistics


class PipelineHandle:
    """Submit items and read results; safe to share between threads.

    The handle stays the same object for the pipeline's whole life, also when the
    pipeline is rebuilt in another mode, so services can keep it.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._runtime: Runtime | None = None
        self._admit_timeout: float | None = None
        self._rejected = 0
        self._lock = threading.Lock()

    def _attach(self, runtime: Runtime | None, admit_timeout: float | None = None) -> None:
        with self._lock:
            self._runtime = runtime
            self._admit_timeout = admit_timeout

    def _running(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            raise PipelineUndefined(
                "the pipeline is not running: call serialize() or parallelize() first"
            )
        return runtime

    @property
    def is_running(self) -> bool:
        """True while a mode is chosen and the pipeline has not been stopped."""
        return self._runtime is not None

    def submit(self, data: Any, timeout: float | None = None) -> Future[Any]:
        """Accept ``data`` and return a future for its output.

        Waits up to ``timeout`` seconds (default: the pipeline's input timeout) for room
        in the in-flight window, then raises ``PipelineFull``. The future raises
        ``StageError`` if a stage failed on the item, ``ItemDropped`` if it was dropped.
        """
        future: Future[Any] = Future()
        self._enter(data, future, timeout)
        return future

    def ask(self, data: Any, timeout: float | None = None) -> Any:
        """Submit ``data`` and wait up to ``timeout`` seconds for its output."""
        return self.submit(data, timeout).result(timeout)

    def tell(self, data: Any, timeout: float | None = None) -> bool:
        """Submit ``data`` without a future; False if the pipeline had no room in time."""
        try:
            self._enter(data, None, timeout)
        except PipelineFull:
            return False
        return True

    def _enter(self, data: Any, future: Future[Any] | None, timeout: float | None) -> None:
        runtime = self._running()
        runtime.check_alive()
        wait = self._admit_timeout if timeout is None else timeout
        if not runtime.window.acquire(wait):
            if self._runtime is not runtime:
                raise PipelineTerminated("the pipeline was stopped while the item waited for room")
            with self._lock:
                self._rejected += 1
            raise PipelineFull(
                f"the pipeline is full ({runtime.window.capacity} items in flight) and "
                f"no room came free within {wait}s; raise the capacity, pass a longer "
                "timeout, or slow the source"
            )
        try:
            runtime.submit(Item(-1, data, future, time.perf_counter()))
        except pykka.ActorDeadError:
            runtime.window.release()
            raise PipelineTerminated(
                "the pipeline was stopped; the item was not accepted"
            ) from None

    @property
    def rejected(self) -> int:
        """Items refused because the pipeline had no room (never accepted, never counted as drops)."""
        return self._rejected

    def latest(self, timeout: float | None = 0.0, default: Any = None) -> Any:
        """The newest output not read yet (older unread ones are skipped), or ``default``.

        ``timeout=0`` returns at once; otherwise wait up to ``timeout`` seconds.
        """
        return self._running().latest.take(timeout, default)

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline's counters and each stage's."""
        return self._running().statistics()

    def stop(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop the running pipeline: finish accepted items first when ``drain``.

        With ``drain=False`` pending futures fail with ``PipelineTerminated`` at once.
        Returns True if every thread ended within ``timeout``. Stopping twice is harmless.
        """
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is None:
            return True
        return runtime.stop(drain=drain, timeout=timeout)
