"""The coordinator actor: admits items, dispatches them serially or freely, and collects."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import pykka

from ._actors import ActorGroup, PipelineActor
from ._errors import ItemDropped, PipelineTerminated, StageError
from ._handover import relink
from ._messages import (
    Abort,
    Cached,
    DeadLetter,
    Drain,
    DrainSources,
    FailureNotice,
    Item,
    Link,
    Notice,
    Relink,
    TapOutput,
    send_home,
)
from ._outputs import Outputs
from ._statistics import PipelineCounters, SourceCounters
from ._window import InFlightWindow

logger = logging.getLogger("pystream_actors")

SERIAL = "serial"
PARALLEL = "parallel"
STOPPED_REASON = "the pipeline was stopped before the item finished"


@dataclass(frozen=True)
class Outlets:
    """Where the coordinator delivers outcomes and news besides each item's future."""

    outputs: Outputs
    on_error: list[Callable[[StageError], object]]
    on_failure_notice: Callable[[FailureNotice], None]


class CoordinatorActor(PipelineActor):
    """Dispatches admitted items to the first stage and resolves each finished one.

    Serial mode is lock-step: the next item goes to the first stage only after the
    previous one was settled. Parallel mode sends items on as they come, so every stage
    works at once; the in-flight window bounds how many are inside. Every accepted item
    is in ``_in_flight`` until settled, so a stop or a crash can settle all of them.

    With a ``Sync`` first, each named source has its own window and its own entry (the
    head of its source chain), and a set that comes back settles every member.
    """

    def __init__(
        self,
        group: ActorGroup,
        mode: str,
        windows: dict[str, InFlightWindow],
        outlets: Outlets,
        counters: PipelineCounters,
        sources: dict[str, SourceCounters] | None = None,
    ) -> None:
        super().__init__(group, "CoordinatorActor")
        self._lock_step = mode == SERIAL
        self._windows = windows
        self._sources = sources or {}
        self._entries: dict[str, pykka.ActorRef[Any]] = {}
        self._sync: pykka.ActorRef[Any] | None = None
        self._sent: collections.Counter[str] = collections.Counter()  # per source chain
        self._outlets = outlets
        self._outputs = outlets.outputs
        self._counters = counters
        self._first: pykka.ActorRef[Any] | None = None
        self._next_seq = 0
        self._in_flight: dict[int, Item] = {}
        self._waiting: collections.deque[Item] = collections.deque()
        self._drained: list[Future[None]] = []
        self._terminated: str | None = None

    def receive(self, message: Any) -> Any:
        if type(message) is Item:
            if message.seq < 0:  # not numbered yet: a new item from the handle
                self._admit(message)
            elif message.members is not None:
                self._finish_set(message)
            elif message.parent is None:  # a branch's child that strayed here is no outcome
                self._finish(message)
        elif isinstance(message, Relink):
            self._relink(message)
        elif isinstance(message, Link):
            self._first = message.first
            self._entries = dict(message.entries or {})
            self._sync = message.sync
        elif isinstance(message, Cached):
            self._finish_cached(message.item)
        elif isinstance(message, Drain):
            self._drained.append(message.done)
            if self._sync is not None:
                send_home(self._sync, DrainSources(dict(self._sent)))
            self._resolve_drained_if_idle()
        elif isinstance(message, Abort):
            self._terminated = message.reason
            self._abort(message.reason)
        elif isinstance(message, TapOutput):
            self._outputs.publish_named(message.output, message.value)
        elif isinstance(message, DeadLetter):
            if isinstance(message.error, StageError):
                self._deliver_dead_letter(message.error)
        elif isinstance(message, Notice):
            self._outlets.on_failure_notice(message.action)
        else:
            logger.warning("coordinator ignored an unexpected message %r", message)
        return None

    def _relink(self, message: Relink) -> None:
        urn = message.predecessor.actor_urn
        for source, head in self._entries.items():
            if head.actor_urn == urn:
                self._entries[source] = relink(message)
                return
        self._first = relink(message)

    def _admit(self, item: Item) -> None:
        item.seq = self._next_seq
        self._next_seq += 1
        self._counters.record_accepted(item.submitted_at)
        if item.source:
            self._sources[item.source].accepted += 1
        if self._terminated is not None:
            self._fail_terminated(item, self._terminated)
            return
        self._in_flight[item.seq] = item
        if self._lock_step and len(self._in_flight) > 1:
            self._waiting.append(item)
        else:
            self._dispatch(item)

    def _dispatch(self, item: Item) -> None:
        item.sent_at = perf_counter()
        try:
            if item.source:
                self._entries[item.source].tell(item)
                self._sent[item.source] += 1
            else:
                self._first.tell(item)  # type: ignore[union-attr]  # linked before any item
        except pykka.ActorDeadError:
            item.drop("the first stage's actor had stopped")
            self._finish(item)

    def _finish(self, item: Item) -> None:
        if self._in_flight.pop(item.seq, None) is None:
            return  # already settled by an abort
        if item.claim is not None:
            item.try_claim()  # from here on the window cannot drop it
        now = perf_counter()
        error = item.error
        if item.source:
            self._count_source(item)
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
            self._outputs.publish(item.data)
            if item.future is not None:
                _settle(item.future, value=item.data)
        self._windows[item.source].finish(item)
        if self._waiting:
            self._dispatch(self._waiting.popleft())
        elif self._drained:
            self._resolve_drained_if_idle()

    def _count_source(self, item: Item) -> None:
        counters = self._sources[item.source]
        if item.error is not None:
            counters.failed += 1
        elif item.dropped is not None:
            counters.dropped += 1
        else:
            counters.completed += 1

    def _finish_set(self, joined: Item) -> None:
        """A ``Sync`` set came back: every member still pending gets the set's outcome;
        the output, a dead letter, a failure notice go out once per set."""
        members = [m for m in joined.members or () if self._in_flight.pop(m.seq, None)]
        if not members:
            return  # settled by an abort already
        now = perf_counter()
        error, dropped = joined.error, joined.dropped
        outcome = "failed" if error is not None else "dropped" if dropped is not None else "ok"
        for member in members:
            self._counters.record_done(member.submitted_at, now, outcome)
            member.error, member.dropped = error, dropped
            self._count_source(member)
            if error is not None:
                _settle(member.future, error=error)
            elif dropped is not None:
                _settle(member.future, error=ItemDropped(member.seq, dropped))
            else:
                _settle(member.future, value=joined.data)
            self._windows[member.source].finish(member)
        if error is not None:
            if isinstance(error, StageError):
                self._deliver_dead_letter(error)
            if joined.failure_action is not None:
                self._outlets.on_failure_notice(joined.failure_action)
        elif dropped is None:
            self._outputs.publish(joined.data)
        if self._drained:
            self._resolve_drained_if_idle()

    def _finish_cached(self, item: Item) -> None:
        """A context sample of ``latest`` is cached: it resolves, and is no output."""
        if self._in_flight.pop(item.seq, None) is None:
            return
        if item.claim is not None:
            item.try_claim()
        self._counters.record_done(item.submitted_at, perf_counter(), "ok")
        self._sources[item.source].completed += 1
        if item.future is not None:
            _settle(item.future, value=item.data)
        self._windows[item.source].finish(item)
        if self._drained:
            self._resolve_drained_if_idle()

    def _deliver_dead_letter(self, error: StageError) -> None:
        self._outputs.dead_letters.publish(error)
        for callback in self._outlets.on_error:
            try:
                callback(error)
            except BaseException:
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
        self._counters.record_done(item.submitted_at, perf_counter(), "dropped")
        if item.source:
            self._sources[item.source].dropped += 1
        _settle(item.future, error=PipelineTerminated(f"item #{item.seq}: {reason}"))
        self._windows[item.source].finish(item)

    def _resolve_drained_if_idle(self) -> None:
        if self._in_flight:
            return
        for done in self._drained:
            _settle(done, value=None)
        self._drained.clear()

    def crashed(self, exc: BaseException) -> None:
        self._abort(f"the pipeline's coordinator crashed ({type(exc).__name__})")

    def on_stop(self) -> None:
        super().on_stop()
        self._abort(STOPPED_REASON)


def _settle(
    future: Future[Any] | None, value: Any = None, error: BaseException | None = None
) -> None:
    """Resolve ``future`` unless the caller already cancelled it.

    Resolving runs the caller's done-callbacks on this thread: whatever they raise is
    logged, never allowed to stop the coordinator.
    """
    if future is None:
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except InvalidStateError:
        pass
    except BaseException:
        logger.exception("a done-callback of an item's future raised")
