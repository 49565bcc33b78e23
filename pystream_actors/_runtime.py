"""One running incarnation of a pipeline: its actors, window, outlets and counters.

A pipeline gets a new runtime each time a mode is chosen; stopping a runtime stops and
joins every thread it started, so rebuilding never leaks an actor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pykka

from ._coordinator import CoordinatorActor, Outlets
from ._errors import PipelineInitiationError, PipelineTerminated, StageError
from ._latest import LatestResult
from ._messages import Abort, Drain, Item, Link, Ready, Retire
from ._result_stream import ResultStream
from ._stage import StageSlot
from ._statistics import PipelineCounters, PipelineStatistics
from ._supervisor import StageRecord, Supervisor
from ._window import InFlightWindow, OnFull
from ._worker_pool import counters_for, spawn_stage

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

    def __init__(
        self,
        slots: list[StageSlot],
        mode: str,
        flow: FlowSettings,
        on_error: list[Callable[[StageError], object]] | None = None,
        timed: bool = True,
    ) -> None:
        self.mode = mode
        self.flow = flow
        self.window = InFlightWindow(flow.capacity, flow.on_full, len(slots))
        self.latest = LatestResult()
        self.stream = ResultStream(flow.results_buffer)
        self.dead_letters = ResultStream(flow.results_buffer)
        self.counters = PipelineCounters(timed)
        self.terminated: str | None = None
        self.pickles_inputs = bool(slots) and slots[0].scaling.executor == "process"
        self._stopped = False
        outlets = Outlets(
            self.latest,
            self.stream,
            self.dead_letters,
            on_error if on_error is not None else [],  # the handle's own list: later adds count
            self._on_failure_notice,
        )
        self.coordinator = CoordinatorActor.start(mode, self.window, outlets, self.counters)
        self._coordinator_thread: threading.Thread | None = None
        records: list[StageRecord] = []  # filled last stage first; the supervisor shares it
        self.supervisor = Supervisor(records, self.coordinator, self.terminate)
        try:
            downstream: pykka.ActorRef[Any] = self.coordinator
            for slot in reversed(slots):
                counters = counters_for(slot, timed)
                downstream = spawn_stage(slot, downstream, counters)
                records.insert(0, StageRecord(slot, downstream, None, counters))
            self._await_ready(records)
            self.coordinator.ask(Link(records[0].ref))
        except BaseException:
            self.stop(drain=False)
            raise

    @property
    def records(self) -> list[StageRecord]:
        return self.supervisor.records

    def _await_ready(self, records: list[StageRecord]) -> None:
        self._coordinator_thread, _ = self.coordinator.ask(Ready())
        replies = [record.ref.ask(Ready(), block=False) for record in records]
        failures = []
        for record, reply in zip(records, replies):
            record.thread, error = reply.get()
            if error is not None:
                record.state = "failed"
                failures.append((record.slot.name, error))
        if failures:
            name, error = failures[0]
            raise PipelineInitiationError(
                f"stage {name!r} failed in setup(): {type(error).__name__}: {error}"
            ) from error

    def check_alive(self) -> None:
        """Raise ``PipelineTerminated`` if the pipeline was terminated or a stage actor died."""
        if self.terminated is not None:
            raise PipelineTerminated(self.terminated)
        for record in self.records:
            if record.state == "running" and not record.ref.is_alive():
                raise PipelineTerminated(
                    f"stage {record.slot.name!r} has stopped; rebuild the pipeline with "
                    "serialize() or parallelize() to use it again"
                )

    def submit(self, item: Item) -> None:
        """Hand an admitted item to the coordinator (the caller holds a window slot)."""
        self.coordinator.tell(item)

    def _on_failure_notice(self, notice: Any) -> None:
        self.supervisor.notify(notice)

    def terminate(self, reason: str) -> None:
        """Fail everything pending with ``reason`` and refuse new items (the "stop" policy)."""
        if self.terminated is not None:
            return
        self.terminated = reason
        logger.error("pipeline terminated: %s", reason)
        self.window.close()
        try:
            self.coordinator.tell(Abort(reason))
        except pykka.ActorDeadError:
            pass

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline and each of its stages."""
        stages = tuple(
            record.counters.snapshot(
                queue_depth=_queue_depth(record.ref),
                child=_child_statistics(record.slot.stage),
                since=self.counters.first_accept,
            )
            for record in self.records
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
            self.dead_letters.close()

    def _stop(self, drain: bool, timeout: float | None, cleanup_stages: bool) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.window.close()
        if drain and self.terminated is None and self.coordinator.is_alive():
            drained: Future[None] = Future()
            self.coordinator.tell(Drain(drained))
            try:
                drained.result(_remaining(deadline))
            except FutureTimeout:
                logger.warning("pipeline did not drain within %ss; failing what is left", timeout)
        self.supervisor.close(_remaining(deadline))
        reason = "the pipeline was stopped before the item finished"
        try:
            self.coordinator.ask(Abort(reason), timeout=_remaining(deadline))
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        for record in self.records:
            try:
                if cleanup_stages:
                    record.ref.tell(Retire())
                record.ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        try:
            self.coordinator.stop(block=False)
        except pykka.ActorDeadError:
            pass
        threads = [self._coordinator_thread, *(r.thread for r in self.records)]
        threads += self.supervisor.retired_threads
        all_ended = True
        for thread in threads:
            if thread is None:
                continue
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
