"""The coordinator actor: admits items, dispatches them serially or freely, and collects."""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any

import pykka

from ._errors import ItemDropped, PipelineTerminated
from ._latest import LatestResult
from ._messages import Abort, Drain, Item, Link, Ready, Submit
from ._result_stream import ResultStream
from ._statistics import PipelineCounters
from ._window import InFlightWindow

logger = logging.getLogger("pystream_actors")

SERIAL = "serial"
PARALLEL = "parallel"


class CoordinatorActor(pykka.ThreadingActor):
    """Dispatches admitted items to the first stage and resolves each finished one.

    Serial mode is lock-step: the next item goes to the first stage only after the
    previous one left the last stage. Parallel mode sends items on as they come, so every
    stage works at once; the in-flight window bounds how many are inside.
    """

    use_daemon_thread = True

    def __init__(
        self,
        mode: str,
        window: InFlightWindow,
        latest: LatestResult,
        stream: ResultStream,
        counters: PipelineCounters,
    ) -> None:
        super().__init__()
        self._lock_step = mode == SERIAL
        self._window = window
        self._latest = latest
        self._stream = stream
        self._counters = counters
        self._first: pykka.ActorRef[Any] | None = None
        self._next_seq = 0
        self._in_flight: dict[int, Item] = {}
        self._waiting: collections.deque[Item] = collections.deque()
        self._drained: list[Future[None]] = []

    def on_receive(self, message: Any) -> Any:
        if type(message) is Item:
            self._finish(message)
        elif type(message) is Submit:
            self._admit(message.item)
        elif isinstance(message, Link):
            self._first = message.first
        elif isinstance(message, Drain):
            self._drained.append(message.done)
            self._resolve_drained_if_idle()
        elif isinstance(message, Abort):
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
        self._in_flight[item.seq] = item
        if self._lock_step and len(self._in_flight) > 1:
            self._waiting.append(item)
        else:
            self._dispatch(item)

    def _dispatch(self, item: Item) -> None:
        assert self._first is not None, "coordinator used before Link"
        item.sent_at = time.perf_counter()
        try:
            self._first.tell(item)
        except pykka.ActorDeadError:
            item.drop("the first stage was stopped")
            self._finish(item)

    def _finish(self, item: Item) -> None:
        if self._in_flight.pop(item.seq, None) is None:
            return  # already failed by an abort
        now = time.perf_counter()
        future = item.future
        if item.error is not None:
            self._counters.record_done(item.submitted_at, now, "failed")
            _settle(future, error=item.error)
        elif item.dropped is not None:
            self._counters.record_done(item.submitted_at, now, "dropped")
            _settle(future, error=ItemDropped(item.seq, item.dropped))
        else:
            self._counters.record_done(item.submitted_at, now, "ok")
            self._latest.put(item.data)
            if self._stream.subscribed:
                self._stream.put(item.data)
            _settle(future, value=item.data)
        self._window.finish(item)
        if self._waiting:
            self._dispatch(self._waiting.popleft())
        elif self._drained:
            self._resolve_drained_if_idle()

    def _abort(self, reason: str) -> None:
        pending = list(self._in_flight.values())
        self._in_flight.clear()
        self._waiting.clear()
        for item in pending:
            item.drop(reason)  # stage actors skip it if it is still queued
            self._counters.record_done(item.submitted_at, time.perf_counter(), "dropped")
            _settle(item.future, error=PipelineTerminated(f"item #{item.seq}: {reason}"))
            self._window.finish(item)
        self._resolve_drained_if_idle()

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
