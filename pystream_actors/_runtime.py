"""One running incarnation of a pipeline: its actors, window and counters.

A pipeline gets a new runtime each time a mode is chosen. Stopping a runtime is
resumable: if it is interrupted (Ctrl-C), calling ``stop`` again finishes the job, and
it ends only when every thread it started has been joined or the timeout is up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka

from . import _arguments as check
from ._actors import ActorGroup
from ._combinators import Slot
from ._coordinator import SERIAL, STOPPED_REASON, CoordinatorActor, Outlets
from ._errors import (
    InvalidArgument,
    PipelineInitiationError,
    PipelineTerminated,
    StageError,
    describe,
)
from ._graph_builder import GraphBuilder, critical_path, on_a_tap, sync_of, tap_outputs
from ._messages import Abort, Drain, Flush, Item, Link, Retire, WhenReady
from ._outputs import Outputs
from ._stage import StageSlot
from ._statistics import (
    JunctionCounters,
    JunctionStatistics,
    PipelineCounters,
    PipelineStatistics,
    SourceCounters,
    SourceStatistics,
    StageStatistics,
)
from ._supervisor import StageRecord, Supervisor
from ._sync import StampOf
from ._window import ON_FULL_POLICIES, InFlightWindow, OnFull

logger = logging.getLogger("pystream_actors")

DEFAULT_SETUP_TIMEOUT = 60.0
_SETUP_HUNG_GRACE = 1.0  # seconds to join the other threads when a setup() hangs


@dataclass(frozen=True)
class FlowSettings:
    """How items enter and leave a running pipeline; checked whole before anything starts."""

    capacity: int
    """Most items inside the pipeline at once (accepted, not finished)."""
    on_full: OnFull = "block"
    admit_timeout: float | None = 10.0
    """How long ``"block"`` waits for room by default (None: for ever)."""
    max_age: float | None = None
    """Seconds after acceptance past which a stage drops the item instead of starting it."""
    results_buffer: int = 1024
    """Outputs kept per ``handle.results()`` reader; the oldest unread is dropped past it."""
    setup_timeout: float | None = DEFAULT_SETUP_TIMEOUT
    """Seconds every stage's ``setup()`` may take before the start fails (None: for ever)."""

    def __post_init__(self) -> None:
        check.whole_number("capacity", self.capacity, 1)
        check.one_of("on_full", self.on_full, ON_FULL_POLICIES)
        check.seconds("input_timeout", self.admit_timeout)
        if self.max_age is not None:
            check.positive_seconds("max_age", self.max_age)
        check.whole_number("results_buffer", self.results_buffer, 1)
        check.seconds("setup_timeout", self.setup_timeout)


@dataclass(frozen=True)
class SourceEntry:
    """How items of one named source enter: its window, stamp function and deadline."""

    name: str
    window: InFlightWindow
    stamp_of: StampOf | None
    max_age: float | None


class Runtime:
    """Starts the coordinator and one actor per stage, and stops them all again."""

    def __init__(
        self,
        slots: list[Slot],
        mode: str,
        flow: FlowSettings,
        outputs: Outputs,
        on_error: list[Callable[[StageError], object]],
        timed: bool = True,
    ) -> None:
        self.mode = mode
        self.flow = flow
        self.outputs = outputs
        self.window = InFlightWindow(flow.capacity, flow.on_full, len(slots))
        self.sources = self._source_entries(slots, mode, flow)
        self.source_counters = {name: SourceCounters() for name in self.sources}
        self.source_rejected: dict[str, int] = dict.fromkeys(self.sources, 0)
        windows = {"": self.window, **{n: e.window for n, e in self.sources.items()}}
        self.counters = PipelineCounters(timed)
        self.terminated: str | None = None
        first = slots[0] if slots else None
        self.pickles_inputs = isinstance(first, StageSlot) and first.scaling.executor == "process"
        self.slots = slots
        self.tap_outputs = tap_outputs(slots)
        self.group = ActorGroup(self.terminate)
        self._admission = threading.Lock()
        self._closed = False
        self._drained: Future[None] | None = None
        self._stopped = False
        self._setup_hung = False
        outlets = Outlets(outputs, on_error, self._on_failure_notice)
        self.coordinator = self.group.spawn(
            CoordinatorActor, mode, windows, outlets, self.counters, self.source_counters
        )
        self.supervisor = Supervisor([], self.coordinator, self.terminate, self.group)
        try:
            builder = GraphBuilder(
                self.group, self.coordinator, self.supervisor, timed, self._sync_limits(slots)
            )
            first_ref = builder.build(slots)
            self._await_setup(self.records, flow.setup_timeout)
            self.coordinator.tell(Link(first_ref, builder.entries or None, builder.sync))
        except BaseException:
            # A setup still running ends on its own (its stop is queued behind it): join
            # the others, which end at once, without waiting for it.
            self.stop(drain=False, timeout=_SETUP_HUNG_GRACE if self._setup_hung else None)
            raise

    @staticmethod
    def _source_entries(slots: list[Slot], mode: str, flow: FlowSettings) -> dict[str, SourceEntry]:
        """One window per source of a ``Sync`` first step: a silent source never blocks
        another's admission (a shared window would, under ``"block"``)."""
        sync = sync_of(slots)
        if sync is None:
            return {}
        if mode == SERIAL:
            raise InvalidArgument(
                "a pipeline that starts with a Sync cannot run serialize(): in lock-step a "
                "sample waiting for its partner would block the partner behind it; use "
                "parallelize()"
            )
        entries = {}
        for name, chain in sync.branches.items():
            options = chain.options
            capacity = options.capacity or flow.capacity
            if capacity < 2:
                raise InvalidArgument(
                    f"source {name!r} of the Sync needs capacity >= 2 (one sample may wait "
                    "for a partner while the next one enters), got capacity=1"
                )
            window = InFlightWindow(capacity, options.on_full or flow.on_full, len(chain.slots))
            max_age = flow.max_age
            if options.max_age is not None:
                max_age = min(max_age or options.max_age, options.max_age)
            entries[name] = SourceEntry(name, window, sync.stamp_of.get(name), max_age)
        return entries

    def _sync_limits(self, slots: list[Slot]) -> dict[str, int]:
        """Samples of each source that may wait for a partner: ``buffer``, and always less
        than the source's window, so waiting samples never fill it."""
        sync = sync_of(slots)
        if sync is None:
            return {}
        return {
            name: max(1, min(sync.buffer, entry.window.capacity - 1))
            for name, entry in self.sources.items()
        }

    def window_for(self, source: str | None) -> tuple[InFlightWindow, SourceEntry | None]:
        """The window an item of ``source`` enters by (and its source's entry)."""
        if not self.sources:
            if source is not None:
                raise InvalidArgument(
                    f"source={source!r} given, but this pipeline has no named sources (they "
                    "are the sources of a Sync first step); leave source out"
                )
            return self.window, None
        if source is None:
            raise InvalidArgument(
                f"this pipeline starts with a Sync: pass source=, one of {list(self.sources)}"
            )
        entry = self.sources.get(source)
        if entry is None:
            raise InvalidArgument(
                f"no source named {source!r}; the Sync's sources are {list(self.sources)}"
            )
        return entry.window, entry

    @property
    def records(self) -> list[StageRecord]:
        return self.supervisor.records

    def _await_setup(self, records: list[StageRecord], timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        waits: list[Future[BaseException | None]] = []
        for record in records:
            done: Future[BaseException | None] = Future()
            record.ref.tell(WhenReady(done))
            waits.append(done)
        for record, done in zip(records, waits):
            try:
                error = done.result(_remaining(deadline))
            except TimeoutError:
                record.state = "failed"
                self._setup_hung = True
                raise PipelineInitiationError(
                    f"stage {record.slot.name!r} did not finish setup() within {timeout}s; "
                    "pass a longer setup_timeout to serialize()/parallelize(), or make setup() "
                    "return sooner"
                ) from None
            if error is not None:
                record.state = "failed"
                raise PipelineInitiationError(
                    f"stage {record.slot.name!r} failed in setup(): {describe(error)}"
                ) from error

    # -- items --------------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise ``PipelineTerminated`` if the pipeline was terminated or is stopping."""
        if self.terminated is not None:
            raise PipelineTerminated(self.terminated)
        if self._closed:
            raise PipelineTerminated("the pipeline is stopping; the item was not accepted")

    def accept(self, item: Item) -> None:
        """Hand an admitted item to the coordinator (the caller holds a window slot).

        The admission lock orders this against ``stop``: once the pipeline is closed no
        item can slip into the coordinator's mailbox behind its last message.
        """
        with self._admission:
            if not self._closed:
                self.coordinator.tell(item)
                return
        self.window_for(item.source or None)[0].finish(item)
        raise PipelineTerminated("the pipeline was stopped; the item was not accepted")

    @property
    def closed(self) -> bool:
        """True once stopping began: no item is accepted any more."""
        return self._closed

    def _on_failure_notice(self, notice: Any) -> None:
        self.supervisor.notify(notice)

    def terminate(self, reason: str) -> None:
        """Fail everything pending with ``reason`` and refuse new items (the "stop" policy,
        or an actor that died)."""
        if self.terminated is not None:
            return
        self.terminated = reason
        logger.error("pipeline terminated: %s", reason)
        self.window.close()
        for entry in self.sources.values():
            entry.window.close()
        try:
            self.coordinator.tell(Abort(reason))
        except (pykka.ActorDeadError, AttributeError):  # dead, or not started yet
            pass

    def statistics(self) -> PipelineStatistics:
        """An immutable snapshot of the pipeline, each of its stages and junctions."""
        with self.supervisor.records_lock:
            records = list(self.records)
        stages: list[StageStatistics] = []
        junctions: list[JunctionStatistics] = []
        for record in records:
            counters, slot = record.counters, record.slot
            if isinstance(counters, JunctionCounters):
                junctions.append(counters.snapshot(record.path))
            elif isinstance(slot, StageSlot):
                assert not isinstance(counters, JunctionCounters)
                snapshot = counters.snapshot(
                    queue_depth=_queue_depth(record.ref),
                    child=_child_statistics(slot.stage),
                    since=self.counters.first_accept,
                )
                stages.append(dataclasses.replace(snapshot, path=record.path))
        main = [r for r in records if r.owner is None]
        by_name = {stage.name: stage for stage in stages}
        busiest = max(  # the main path's limit: a tap never holds it up
            (by_name[r.slot.name] for r in records if r.slot.name in by_name and not on_a_tap(r)),
            key=lambda s: (s.utilization, s.service_time.mean),
            default=None,
        )
        windows = [self.window, *(entry.window for entry in self.sources.values())]
        return dataclasses.replace(
            self.counters.snapshot(
                self.mode,
                sum(window.used for window in windows),
                tuple(stages),
                sum(window.dropped for window in windows),
                self.outputs.results.dropped,
            ),
            junctions=tuple(junctions),
            sources=self._source_statistics(junctions),
            bottleneck=busiest.name if busiest is not None and busiest.processed else None,
            critical_path=critical_path(
                records,
                main[0].chain if main else [],
                {j.name: j.waited_on for j in junctions},
                {s.name: s.service_time.mean for s in stages},
            ),
        )

    def _source_statistics(
        self, junctions: list[JunctionStatistics]
    ) -> tuple[SourceStatistics, ...]:
        sync = next((j for j in junctions if j.kind == "sync"), None)
        sources = []
        for name, entry in self.sources.items():
            counts = self.source_counters[name]
            done = counts.completed + counts.failed + counts.dropped
            sources.append(
                SourceStatistics(
                    name=name,
                    accepted=counts.accepted,
                    completed=counts.completed,
                    failed=counts.failed,
                    dropped=counts.dropped,
                    rejected=self.source_rejected[name],
                    in_flight=max(0, counts.accepted - done),
                    capacity=entry.window.capacity,
                    unmatched=sync.unmatched.get(name, 0) if sync else 0,
                    late=sync.late.get(name, 0) if sync else 0,
                    evicted=sync.evicted.get(name, 0) if sync else 0,
                )
            )
        return tuple(sources)

    # -- stopping -----------------------------------------------------------------------

    def stop(self, drain: bool, timeout: float | None = None) -> bool:
        """Stop every actor and join its thread; True if all of them ended in time.

        ``drain`` first lets accepted items finish (up to ``timeout``); items held by a
        stopped stage are dropped with a reason naming it; what is still pending then
        fails with ``PipelineTerminated``. Each stage's ``cleanup()`` runs on its own
        thread. Calling it again after an interruption carries on where it stopped.
        """
        if self._stopped:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._admission:
            self._closed = True
        self.window.close()
        for entry in self.sources.values():
            entry.window.close()
        if drain:
            self._drain(deadline, timeout)
        self.supervisor.close(_remaining(deadline))
        try:
            self.coordinator.ask(Abort(STOPPED_REASON), timeout=_remaining(deadline))
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        for record in self.records:
            try:
                record.ref.tell(Retire())
            except pykka.ActorDeadError:
                pass
        self.group.stop_all()
        left = self.group.join(deadline)
        for thread in left:
            logger.warning(
                "%s did not stop within %ss; it is left running and ends when its call returns",
                thread.name,
                timeout,
            )
        self._stopped = not left
        return not left

    def _drain(self, deadline: float | None, timeout: float | None) -> None:
        if self.terminated is not None or not self.coordinator.is_alive():
            return
        if self._drained is None:
            for record in self.supervisor.stopped_stages():
                try:
                    record.ref.tell(
                        Flush(f"stage {record.slot.name!r} was stopped when the pipeline stopped")
                    )
                except pykka.ActorDeadError:
                    pass
            self._drained = Future()
            try:
                self.coordinator.tell(Drain(self._drained))
            except pykka.ActorDeadError:
                return
        try:
            self._drained.result(_remaining(deadline))
        except TimeoutError:
            logger.warning("pipeline did not drain within %ss; failing what is left", timeout)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _child_statistics(stage: Any) -> PipelineStatistics | None:
    child = getattr(stage, "child_statistics", None)
    return child() if callable(child) else None


def _queue_depth(ref: pykka.ActorRef[Any]) -> int:
    """Messages waiting in an actor's mailbox (our actors' inbox is a ``SimpleQueue``)."""
    qsize = getattr(ref.actor_inbox, "qsize", None)
    return int(qsize()) if callable(qsize) else 0
