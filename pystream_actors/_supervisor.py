"""Supervision and runtime control: replacing stage actors without losing an item.

Every restart, start or replacement spawns a successor and relinks refs through the
hand-over protocol (``_handover``). User control calls and automatic (failure) restarts
go through one lock, and an automatic restart re-checks after its back-off that nobody
stopped, restarted or replaced the stage meanwhile. Failure restarts run on the
supervisor's own thread, which starts when first needed and is joined at stop.
"""

from __future__ import annotations

import collections
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import pykka

from ._actors import ActorGroup
from ._combinators import Slot
from ._errors import (
    InvalidArgument,
    InvalidStage,
    PipelineTerminated,
    StageBusy,
    StageNotFound,
    describe,
)
from ._messages import FailureNotice, Pause, Relink, ReplaceWorker, WhenReady
from ._stage import StageCallable, StageSlot
from ._statistics import JunctionCounters, StageCounters
from ._worker_pool import spawn_stage

logger = logging.getLogger("pystream_actors")

StageState = Literal["running", "restarting", "stopped", "failed"]
CONTROL_TIMEOUT = 30.0  # seconds a runtime-control call waits for a hand-over by default
MAX_QUEUED_HANDOVERS = 4  # successors that may wait behind one stage call that has not returned


@dataclass(frozen=True)
class StageStatus:
    """Where one stage stands: its state and how often it was restarted."""

    name: str
    state: StageState
    restarts: int
    nodes: tuple[str, ...] = ()
    """The Ray node id each worker of an ``executor="ray"`` stage runs on ("" until placed)."""


@dataclass(eq=False)
class StageRecord:
    """The supervisor's book on one step of the graph (a stage, or a junction): its current
    actor, its place, and its history."""

    slot: Slot
    ref: pykka.ActorRef[Any]
    counters: StageCounters | JunctionCounters
    path: str = ""
    chain: list[StageRecord] = field(default_factory=list, repr=False)
    """The records of the chain this step is in (shared by them), in order."""
    slots: list[Slot] = field(default_factory=list, repr=False)
    """That chain's slot list (the pipeline's, or a branch's): a replacement is written
    back there, so a rebuild keeps it."""
    owner: StageRecord | None = field(default=None, repr=False)
    """The junction whose branch this chain is (None: the pipeline's own chain)."""
    state: StageState = "running"
    restart_times: collections.deque[float] = field(default_factory=collections.deque)
    takeovers: list[Future[BaseException | None]] = field(default_factory=list)
    """One per successor spawned: resolved once it took over and set its stage up."""

    @property
    def position(self) -> int:
        for index, record in enumerate(self.chain):
            if record is self:
                return index
        raise LookupError(self.path)

    @property
    def settles_home(self) -> bool:
        """True if items settled here go straight to the coordinator (the pipeline's own
        chain); inside a branch or a ``Sync`` source they go on to the junction."""
        return self.owner is None

    @property
    def fed_by_coordinator(self) -> bool:
        """True for the pipeline's own chain and a ``Sync``'s source chains."""
        return self.owner is None or self.owner.slot.kind == "sync"

    def neighbours(self, edge: pykka.ActorRef[Any]) -> tuple[Any, Any]:
        """(upstream, downstream) refs; ``edge`` is what ends the pipeline's own chain
        (the coordinator); a branch chain ends at its junction on both sides, a ``Sync``
        source chain starts at the coordinator and ends at the sync junction."""
        index = self.position
        end = self.owner.ref if self.owner is not None else edge
        start = edge if self.fed_by_coordinator else end
        upstream = self.chain[index - 1].ref if index > 0 else start
        downstream = self.chain[index + 1].ref if index + 1 < len(self.chain) else end
        return upstream, downstream


class Supervisor:
    """Restarts failed stages by their policy and carries out runtime control calls."""

    def __init__(
        self,
        records: list[StageRecord],
        coordinator: pykka.ActorRef[Any],
        terminate: Callable[[str], None],
        group: ActorGroup,
    ) -> None:
        self.records = records  # every step in graph order; a Route may add and retire some
        self.records_lock = threading.Lock()
        self._coordinator = coordinator
        self._terminate = terminate
        self._group = group
        self._control = threading.RLock()
        self._state_lock = threading.Lock()
        self._notices: queue.SimpleQueue[FailureNotice | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closing = threading.Event()

    # -- failure notices (from the coordinator's thread: never block) -----------------

    def notify(self, notice: FailureNotice) -> None:
        """A stage failed under "restart" or "stop": act on it on the supervisor thread."""
        with self._thread_lock:  # ordered with close(): a thread is started or never made
            if self._closing.is_set():
                return
            if self._thread is None:
                thread = threading.Thread(
                    target=self._serve, name="pystream-supervisor", daemon=True
                )
                thread.start()
                self._thread = thread
        self._notices.put(notice)

    def _serve(self) -> None:
        while True:
            notice = self._notices.get()
            if notice is None or self._closing.is_set():
                return
            try:
                self._on_failure(notice)
            except BaseException as exc:
                self._terminate(f"stage {notice.stage!r} could not be restarted: {describe(exc)}")

    def _on_failure(self, notice: FailureNotice) -> None:
        with self._control:
            record = self._record(notice.stage)
            if not _is_current(record, notice) or record.state == "stopped":
                return  # replaced or stopped by a control call meanwhile
            policy = _stage_slot(record).policy
            if notice.action == "stop":
                record.state = "failed"
                self._terminate(f"stage {notice.stage!r} failed and its policy is on_error='stop'")
                return
            now = time.monotonic()
            recent = record.restart_times
            while recent and now - recent[0] > policy.restart_window:
                recent.popleft()
            if len(recent) >= policy.max_restarts:
                record.state = "failed"
                self._terminate(
                    f"stage {notice.stage!r} failed after {len(recent)} restarts within "
                    f"{policy.restart_window}s (max_restarts={policy.max_restarts}); stopping"
                )
                return
            record.state = "restarting"
            backoff = policy.backoff(len(recent))
        if self._closing.wait(backoff):
            return
        with self._control:
            if self._closing.is_set() or not _is_current(record, notice):
                return
            if record.state != "restarting":
                return  # stopped (or started again) by a control call during the back-off
            record.restart_times.append(time.monotonic())
            _stage_counters(record).restarts += 1
            if notice.worker >= 0:  # one worker of a pool: that pool replaces it
                record.ref.tell(ReplaceWorker(notice.worker, notice.actor_urn))
                record.state = "running"
                return
            self._replace(record, _stage_slot(record).renewed(), timeout=0.0)

    # -- runtime control (from callers' threads) ----------------------------------

    def stop_stage(self, name: str, timeout: float | None) -> bool:
        """Stop a stage: it cleans up and holds every later item until started again."""
        with self._control:
            self._check_open()
            record = self._record(name)
            if record.state == "stopped":
                return True
            record.ref.tell(Pause())
            record.state = "stopped"
            paused: Future[BaseException | None] = Future()
            record.ref.tell(WhenReady(paused))
        return _wait(paused, timeout)

    def start_stage(self, name: str, timeout: float | None) -> bool:
        """Start a stopped (or failed) stage on a new actor; the items it held go first."""
        with self._control:
            self._check_open()
            record = self._record(name)
            if record.state == "running":
                return True
            if record.state == "restarting":  # already starting: wait for that hand-over
                pending = [f for f in record.takeovers if not f.done()]
                return _wait(pending[-1], timeout) if pending else True
            slot = _stage_slot(record)
            return self._replace(
                record, slot if record.state == "stopped" else _renewed(slot), timeout
            )

    def restart_stage(self, name: str, timeout: float | None) -> bool:
        """Replace a stage's actor (and instance, if a class or factory was given)."""
        with self._control:
            self._check_open()
            record = self._record(name)
            slot = _renewed(_stage_slot(record))
            return self._replace(record, slot, timeout, counts_as_restart=True)

    def replace_stage(
        self,
        name: str,
        stage: StageCallable | type | None,
        timeout: float | None,
        factory: Callable[[], StageCallable] | None = None,
    ) -> bool:
        """Swap in another stage (instance, Stage class, or ``factory``) under the same name."""
        with self._control:
            self._check_open()
            record = self._record(name)
            slot = _stage_slot(record).replaced_by(stage, factory)
            return self._replace(record, slot, timeout)

    def status(self) -> dict[str, StageStatus]:
        """Each stage's state and restart count, in pipeline order."""
        with self.records_lock:
            records = list(self.records)
        return {
            r.slot.name: StageStatus(
                r.slot.name, r.state, r.counters.restarts, tuple(getattr(r.counters, "nodes", ()))
            )
            for r in records
            if isinstance(r.counters, StageCounters)
        }

    def stopped_stages(self) -> list[StageRecord]:
        """The stages a user stopped: a drain must flush what they hold."""
        with self.records_lock:
            return [r for r in self.records if r.state == "stopped"]

    def _replace(
        self,
        record: StageRecord,
        slot: StageSlot,
        timeout: float | None,
        counts_as_restart: bool = False,
    ) -> bool:
        """Hand ``record``'s stage over to a new actor running ``slot``; True once it took over."""
        record.takeovers = [f for f in record.takeovers if not f.done()]
        if len(record.takeovers) >= MAX_QUEUED_HANDOVERS:
            _wait(record.takeovers[0], timeout)  # the call may return in time
            record.takeovers = [f for f in record.takeovers if not f.done()]
        if len(record.takeovers) >= MAX_QUEUED_HANDOVERS:
            raise StageBusy(
                f"stage {slot.name!r} already has {len(record.takeovers)} hand-overs queued "
                "that have not taken over (an old actor may be stuck in a stage call); retry "
                "once they have, or pass a longer timeout"
            )
        old = record.ref
        upstream, downstream = record.neighbours(self._coordinator)
        counters = _stage_counters(record)
        new = spawn_stage(
            self._group,
            slot,
            downstream,
            self._coordinator,
            counters,
            waiting=True,
            settled_go_home=record.settles_home,
        )
        if counts_as_restart:
            counters.restarts += 1
        took_over: Future[BaseException | None] = Future()
        new.tell(WhenReady(took_over))
        with self._state_lock:
            record.ref, record.slot, record.state = new, slot, "restarting"
            record.takeovers.append(took_over)
        record.slots[record.position] = slot
        took_over.add_done_callback(functools.partial(self._took_over, record, new))
        try:
            upstream.tell(Relink(old, new))
        except pykka.ActorDeadError:
            raise PipelineTerminated(
                f"the actor before stage {slot.name!r} has stopped; the pipeline is stopping"
            ) from None
        return _wait(took_over, timeout)

    def _took_over(
        self,
        record: StageRecord,
        ref: pykka.ActorRef[Any],
        took_over: Future[BaseException | None],
    ) -> None:
        """A successor took over (on its thread): the stage runs again, or failed to set up."""
        with self._state_lock:
            if record.ref is ref and record.state == "restarting":
                record.state = "failed" if took_over.result() is not None else "running"

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise PipelineTerminated("the pipeline is stopping; its stages cannot be changed")

    def _record(self, name: str) -> StageRecord:
        with self.records_lock:
            records = list(self.records)
        for record in records:
            if record.slot.name == name:
                if not isinstance(record.slot, StageSlot):
                    raise InvalidArgument(
                        f"{name!r} is a {record.slot.kind} junction, not a stage: control the "
                        "stages inside its branches by their names"
                    )
                return record
        names = [r.slot.name for r in records if isinstance(r.slot, StageSlot)]
        raise StageNotFound(f"no stage named {name!r}; stages are {names}")

    def close(self, timeout: float | None) -> None:
        """Stop acting on failures and join the supervisor thread."""
        with self._thread_lock:
            self._closing.set()
            thread = self._thread
        self._notices.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _is_current(record: StageRecord, notice: FailureNotice) -> bool:
    """True if the actor that failed is still the one (or in the pool) running the stage."""
    urn = notice.pool_urn if notice.worker >= 0 else notice.actor_urn
    return record.ref.actor_urn == urn


def _stage_slot(record: StageRecord) -> StageSlot:
    slot = record.slot
    assert isinstance(slot, StageSlot)  # _record() refuses junctions
    return slot


def _stage_counters(record: StageRecord) -> StageCounters:
    counters = record.counters
    assert isinstance(counters, StageCounters)  # a stage's record
    return counters


def _renewed(slot: StageSlot) -> StageSlot:
    try:
        return slot.renewed()
    except Exception as exc:
        raise InvalidStage(f"stage {slot.name!r}: its factory raised {describe(exc)}") from exc


def _wait(future: Future[BaseException | None], timeout: float | None) -> bool:
    """True if ``future`` resolved within ``timeout`` (the step then went through)."""
    try:
        future.result(timeout)
    except TimeoutError:
        return False
    return True
