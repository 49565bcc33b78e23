"""The coordinator actor: admits items, dispatches them serially or freely, and collects."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

import pykka

from ._errors import ItemDropped, PipelineTerminated, StageError
from ._latest import LatestResult
from ._messages import (
    Abort,
    Drain,
    FailureNotice,
    Handover,
    Item,
    Link,
    Ready,
    Relink,
    tell_quietly,
)
from ._result_stream import ResultStream
from ._statistics import PipelineCounters
from ._window import InFlightWindow

logger = logging.getLogger("pystream_actors")

SERIAL = "serial"
PARALLEL = "parallel"


@dataclass(frozen=True)
class Outlets:
    """Where the coordinator delivers outcomes besides each item's future."""

    latest: LatestResult
    results: ResultStream
    dead_letters: ResultStream
    on_error: list[Callable[[StageError], object]]
    on_failure_notice: Callable[[FailureNotice], None]


class CoordinatorActor(pykka.ThreadingActor):
    """Dispatches admitted items to the first stage and resolves each finished one.

    Serial mode is lock-step: the next item goes to the first stage only after the
    previous one left the last stage. Parallel mode sends items on as they come, so every
    stage works at once; the in-flight window bounds how many are inside.
    """

    use_daemon_thread = True

    def __init__(
        self, mode: str, window: InFlightWindow, outlets: Outlets, counters: PipelineCounters
    ) -> None:
        super().__init__()
        self._lock_step = mode == SERIAL
        self._window = window
        self._outlets = outlets
        self._counters = counters
        self._first: pykka.ActorRef[Any] | None = None
        self._next_seq = 0
        self._in_flight: dict[int, Item] = {}
        self._waiting: collections.deque[Item] = collections.deque()
        self._drained: list[Future[None]] = []
        self._terminated: str | None = None

    def on_start(self) -> None:
        threading.current_thread().name = "CoordinatorActor"

    def on_receive(self, message: Any) -> Any:
        if type(message) is Item:
            if message.seq < 0:  # not numbered yet: a new item from the handle
                self._admit(message)
            else:
                self._finish(message)
        elif isinstance(message, Relink):
            self._first = message.successor
            tell_quietly(message.predecessor, Handover(message.successor))
        elif isinstance(message, Link):
            self._first = message.first
        elif isinstance(message, Drain):
            self._drained.append(message.done)
            self._resolve_drained_if_idle()
        elif isinstance(message, Abort):
            self._terminated = message.reason
            self._abort(message.reason)
        elif isinstance(message, Ready):
            return threading.current_thread(), None
        else:
            logger.warning("coordinator ignored an unexpected message %r", message)
        return None

    def _admit(self, item: Item) -> None:
        item.seq = self._next_seq
        self._next_seq += 1
        self._counters.record_accepted(item.submitted_at)
        if self._terminated is not None:
            self._fail_terminated(item, self._terminated)
            return
        self._in_flight[item.seq] = item
        if self._lock_step and len(self._in_flight) > 1:
            self._waiting.append(item)
        else:
            self._dispatch(item)

    def _dispatch(self, item: Item) -> None:
        assert self._first is not None, "coordinator used before Link"
        item.sent_at = time.perf_counter()
        if not tell_quietly(self._first, item):
            item.drop("the first stage was stopped")
            self._finish(item)

    def _finish(self, item: Item) -> None:
        if self._in_flight.pop(item.seq, None) is None:
            return  # already failed by an abort
        item.try_claim()  # from here on the window cannot drop it
        now = time.perf_counter()
        error = item.error
        if error is not None:
            self._counters.record_done(item.submitted_at, now, "failed")
            _settle(item.future, error=error)
            if isinstance(error, StageError):
                self._deliver_dead_letter(error)
            if item.failure_action is not None:
                self._outlets.on_failure_notice(item.failure_action)
        elif item.dropped is not None:
            self._counters.record_done(item.submitted_at, now, "dropped")
            _settle(item.future, error=ItemDropped(item.seq, item.dropped))
        else:
            self._counters.record_done(item.submitted_at, now, "ok")
            self._outlets.latest.put(item.data)
            if self._outlets.results.subscribed:
                self._outlets.results.put(item.data)
            _settle(item.future, value=item.data)
        self._window.finish(item)
        if self._waiting:
            self._dispatch(self._waiting.popleft())
        elif self._drained:
            self._resolve_drained_if_idle()

    def _deliver_dead_letter(self, error: StageError) -> None:
        if self._outlets.dead_letters.subscribed:
            self._outlets.dead_letters.put(error)
        for callback in self._outlets.on_error:
            try:
                callback(error)
            except Exception:
                logger.exception("an on_error callback raised; it is skipped for this item")

    def _abort(self, reason: str) -> None:
        pending = list(self._in_flight.values())
        self._in_flight.clear()
        self._waiting.clear()
        for item in pending:
            item.drop(reason)  # stage actors skip it if it is still queued
            self._fail_terminated(item, reason)
        self._resolve_drained_if_idle()

    def _fail_terminated(self, item: Item, reason: str) -> None:
        self._counters.record_done(item.submitted_at, time.perf_counter(), "dropped")
        _settle(item.future, error=PipelineTerminated(f"item #{item.seq}: {reason}"))
        self._window.finish(item)

    def _resolve_drained_if_idle(self) -> None:
        if self._in_flight:
            return
        for done in self._drained:
            _settle(done, value=None)
        self._drained.clear()

    def on_stop(self) -> None:
        self._abort("the pipeline was stopped before the item finished")


def _settle(
    future: Future[Any] | None, value: Any = None, error: BaseException | None = None
) -> None:
    """Resolve ``future`` unless the caller already cancelled it."""
    if future is None:
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except InvalidStateError:
        pass
