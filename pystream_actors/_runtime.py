"""One running incarnation of a pipeline: its actors, window and counters.

A pipeline gets a new runtime each time a mode is chosen; stopping a runtime stops and
joins every thread it started, so rebuilding never leaks an actor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pykka

from ._coordinator import CoordinatorActor
from ._errors import PipelineInitiationError, PipelineTerminated
from ._latest import LatestResult
from ._messages import Abort, Drain, Item, Link, Ready, Retire, Submit
from ._result_stream import ResultStream
from ._stage import StageSlot
from ._stage_actor import StageActor
from ._statistics import PipelineCounters, PipelineStatistics, StageCounters
from ._window import InFlightWindow, OnFull

logger = logging.getLogger("pystream_actors")


@dataclass(frozen=True)
class FlowSettings:
    """How items enter and leave a running pipeline."""

    capacity: int
    """Most items inside the pipeline at once (accepted, not finished)."""
    on_full: OnFull = "block"
    admit_timeout: float | None = 10.0
    """How long ``"block"`` waits for room by default (None: for ever)."""
    max_age: float | None = None
    """Seconds after acceptance past which a stage drops the item instead of starting it."""
    results_buffer: int = 1024
    """Outputs kept for ``handle.results()`` readers; the oldest unread is dropped past it."""

    def __post_init__(self) -> None:
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError(f"max_age must be a positive number of seconds, got {self.max_age!r}")


class Runtime:
    """Starts the coordinator and one actor per stage, and stops them all again."""

    def __init__(self, slots: list[StageSlot], mode: str, flow: FlowSettings) -> None:
        self.mode = mode
        self.slots = slots
        self.flow = flow
        self.window = InFlightWindow(flow.capacity, flow.on_full)
        self.latest = LatestResult()
        self.stream = ResultStream(flow.results_buffer)
        self.counters = PipelineCounters()
        self.stage_counters = [StageCounters(slot.name) for slot in slots]
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.coordinator = CoordinatorActor.start(
            mode, self.window, self.latest, self.stream, self.counters
        )
        self.stage_refs: list[pykka.ActorRef[Any]] = []
        try:
            downstream: pykka.ActorRef[Any] = self.coordinator
            for slot, counters in zip(reversed(slots), reversed(self.stage_counters)):
                downstream = StageActor.start(slot, downstream, counters)
                self.stage_refs.insert(0, downstream)
            self._await_ready()
            self.coordinator.ask(Link(self.stage_refs[0]))
        except BaseException:
            self.stop(drain=False)
            raise

    def _await_ready(self) -> None:
        refs = [self.coordinator, *self.stage_refs]
        replies = [ref.ask(Ready(), block=False) for ref in refs]
        failures = []
        for ref, reply in zip(refs, replies):
            thread, error = reply.get()
            self._threads.append(thread)
            if error is not None:
                failures.append((self._name_of(ref), error))
        if failures:
            name, error = failures[0]
            raise PipelineInitiationError(
                f"stage {name!r} failed in setup(): {type(error).__name__}: {error}"
            ) from error

    def _name_of(self, ref: pykka.ActorRef[Any]) -> str:
        for slot, stage_ref in zip(self.slots, self.stage_refs):
            if stage_ref is ref:
                return slot.name
        return "coordinator"

    def check_alive(self) -> None:
        """Raise ``PipelineTerminated`` naming the first stage whose actor has stopped."""
        for slot, ref in zip(self.slots, self.stage_refs):
            if not ref.is_alive():
                raise PipelineTerminated(
                    f"stage {slot.name!r} has stopped; rebuild the pipeline with "
                    "serialize() or parallelize() to use it again"
                )

    def submit(self, item: Item) -> None:
        """Hand an admitted item to the coordinator (the caller holds a window slot)."""
        self.coordinator.tell(Submit(item))

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline and each of its stages."""
        stages = tuple(
            counters.snapshot(queue_depth=_queue_depth(ref), child=_child_statistics(slot.stage))
            for slot, ref, counters in zip(self.slots, self.stage_refs, self.stage_counters)
        )
        return self.counters.snapshot(
            self.mode, self.window.used, stages, self.window.dropped, self.stream.dropped
        )

    def stop(self, drain: bool, timeout: float | None = None, cleanup_stages: bool = True) -> bool:
        """Stop every actor and join its thread; True if all of them ended in time.

        ``drain`` first lets accepted items finish (up to ``timeout``); what is still
        pending then fails with ``PipelineTerminated``. ``cleanup_stages`` runs each
        stage's ``cleanup()`` on its own thread before the actor stops.
        """
        if self._stopped:
            return True
        self._stopped = True
        try:
            return self._stop(drain, timeout, cleanup_stages)
        finally:
            self.stream.close()

    def _stop(self, drain: bool, timeout: float | None, cleanup_stages: bool) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.window.close()
        if drain and self.coordinator.is_alive():
            drained: Future[None] = Future()
            self.coordinator.tell(Drain(drained))
            try:
                drained.result(_remaining(deadline))
            except FutureTimeout:
                logger.warning("pipeline did not drain within %ss; failing what is left", timeout)
        reason = "the pipeline was stopped before the item finished"
        try:
            self.coordinator.ask(Abort(reason), timeout=_remaining(deadline))
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        for ref in self.stage_refs:
            try:
                if cleanup_stages:
                    ref.tell(Retire())
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        try:
            self.coordinator.stop(block=False)
        except pykka.ActorDeadError:
            pass
        all_ended = True
        for thread in self._threads:
            thread.join(_remaining(deadline))
            if thread.is_alive():
                all_ended = False
                logger.warning(
                    "%s did not stop within %ss; it is left running", thread.name, timeout
                )
        return all_ended


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _child_statistics(stage: Any) -> PipelineStatistics | None:
    child = getattr(stage, "child_statistics", None)
    return child() if callable(child) else None


def _queue_depth(ref: pykka.ActorRef[Any]) -> int:
    """Items waiting in an actor's mailbox (pykka's threading inbox is a ``queue.Queue``)."""
    inbox = ref.actor_inbox
    return inbox.qsize() if isinstance(inbox, queue.Queue) else 0
