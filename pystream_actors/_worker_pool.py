"""A stage run by several worker actors behind its one name, outputs back in input order.

To the rest of the pipeline the pool is the stage's actor: it takes items from upstream,
gives each to the least-busy worker, takes the results back and forwards them in input
order (or as they finish with ``ordered=False``). It speaks the same hand-over protocol
as a single stage actor, so the supervisor can stop, restart or replace a pooled stage,
and it restarts single workers on the supervisor's request.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import pykka

from ._messages import (
    Handover,
    Item,
    Pause,
    Ready,
    Relink,
    ReplaceWorker,
    Resume,
    Retire,
    tell_quietly,
)
from ._stage import StageSlot
from ._stage_actor import StageActor
from ._statistics import PoolCounters, StageCounters

logger = logging.getLogger("pystream_actors")
_WORKER_STOP_TIMEOUT = 30.0


class WorkerPoolActor(pykka.ThreadingActor):
    """Fans items out to N stage actors and merges their outputs in order."""

    use_daemon_thread = True

    def __init__(
        self,
        slot: StageSlot,
        downstream: pykka.ActorRef[Any],
        counters: PoolCounters,
        held: bool = False,
    ) -> None:
        super().__init__()
        self._slot = slot
        self._name = slot.name
        self._ordered = slot.scaling.ordered
        self._downstream = downstream
        self._counters = counters
        self._workers: list[pykka.ActorRef[Any]] = []
        self._threads: list[threading.Thread] = []
        self._load: list[int] = []
        self._in_work: dict[int, tuple[Item, int]] = {}  # pool_seq -> (item, worker)
        self._finished: dict[int, Item] = {}  # out-of-order outputs waiting their turn
        self._next_in = 0
        self._next_out = 0
        self._held: list[Item] | None = [] if held else None
        self._successor: pykka.ActorRef[Any] | None = None
        self._setup_error: BaseException | None = None

    def on_start(self) -> None:
        threading.current_thread().name = f"StageActor-{self._name}-pool"
        if self._held is None:
            self._start_workers()

    def _start_workers(self) -> None:
        try:
            self._slot.ensure_setup()  # a shared thread-safe instance is set up once, here
        except Exception as exc:
            self._setup_error = exc
            logger.error("stage %r: setup() raised", self._name, exc_info=exc)
        count = self._slot.scaling.workers
        for index in range(count):
            ref = StageActor.start(
                self._slot.worker_slot(),
                self.actor_ref,
                self._counters.workers[index],
                worker_index=index,
            )
            self._workers.append(ref)
            self._load.append(0)
        for ref in self._workers:
            thread, error = _ready(ref)
            self._threads.append(thread)
            self._setup_error = self._setup_error or error

    def on_receive(self, message: Any) -> Any:
        if type(message) is Item:
            entry = self._in_work.get(message.pool_seq)
            if entry is not None and entry[0] is message:
                self._returned(message)
            elif self._held is not None:
                self._held.append(message)
            else:
                self._dispatch(message)
        elif isinstance(message, Ready):
            return threading.current_thread(), self._setup_error
        elif isinstance(message, Relink):
            self._downstream = message.successor
            tell_quietly(message.predecessor, Handover(message.successor))
        elif isinstance(message, Handover):
            self._successor = message.successor
            self._hand_over_when_idle()
        elif isinstance(message, Resume):
            self._resume(message.held)
        elif isinstance(message, Pause):
            self._held = self._held if self._held is not None else []
            self._retire_workers()
        elif isinstance(message, Retire):
            self._retire_workers()
        elif isinstance(message, ReplaceWorker):
            self._replace_worker(message.index, message.actor_urn)
        else:
            logger.warning("pool %r ignored an unexpected message %r", self._name, message)
        return None

    def _dispatch(self, item: Item) -> None:
        worker = min(range(len(self._workers)), key=self._load.__getitem__)
        item.pool_seq = self._next_in
        self._next_in += 1
        self._in_work[item.pool_seq] = (item, worker)
        self._load[worker] += 1
        tell_quietly(self._workers[worker], item)

    def _returned(self, item: Item) -> None:
        _, worker = self._in_work.pop(item.pool_seq)
        self._load[worker] -= 1
        if not self._ordered:
            tell_quietly(self._downstream, item)
        else:
            self._finished[item.pool_seq] = item
            while self._next_out in self._finished:
                tell_quietly(self._downstream, self._finished.pop(self._next_out))
                self._next_out += 1
        if self._successor is not None:
            self._hand_over_when_idle()

    def _hand_over_when_idle(self) -> None:
        """Finish once every item given to a worker came back and went downstream."""
        if self._in_work or self._successor is None:
            return
        held, self._held = tuple(self._held or ()), None
        self._retire_workers()
        tell_quietly(self._successor, Resume(held))
        self._successor = None
        self.stop()

    def _resume(self, inherited: tuple[Item, ...]) -> None:
        own, self._held = self._held or [], None
        self._start_workers()
        for item in (*inherited, *own):
            self._dispatch(item)

    def _replace_worker(self, index: int, actor_urn: str) -> None:
        old = self._workers[index]
        if old.actor_urn != actor_urn:
            return  # already replaced
        new = StageActor.start(
            self._slot.worker_slot(),
            self.actor_ref,
            self._counters.workers[index],
            held=True,
            worker_index=index,
        )
        thread, _ = _ready(new)
        self._threads.append(thread)
        self._workers[index] = new
        tell_quietly(old, Handover(new))

    def _retire_workers(self) -> None:
        for ref in self._workers:
            tell_quietly(ref, Retire())
        try:
            self._slot.cleanup()  # the shared instance, if the pool set it up
        except Exception as exc:
            logger.error("stage %r: cleanup() raised", self._name, exc_info=exc)

    def on_stop(self) -> None:
        for ref in self._workers:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        for thread in self._threads:
            thread.join(_WORKER_STOP_TIMEOUT)
            if thread.is_alive():
                logger.warning("%s did not stop in time; it is left running", thread.name)


def counters_for(slot: StageSlot, timed: bool = True) -> StageCounters:
    """Fresh counters for a stage: one set, or one per worker for a pooled stage."""
    if slot.scaling.pooled:
        return PoolCounters(slot.name, slot.scaling.workers, timed)
    return StageCounters(slot.name, timed)


def spawn_stage(
    slot: StageSlot, downstream: pykka.ActorRef[Any], counters: StageCounters, held: bool = False
) -> pykka.ActorRef[Any]:
    """Start the actor that runs ``slot``: a single stage actor or a worker pool."""
    if slot.scaling.pooled:
        assert isinstance(counters, PoolCounters)
        return WorkerPoolActor.start(slot, downstream, counters, held)
    return StageActor.start(slot, downstream, counters, held)


def _ready(ref: pykka.ActorRef[Any]) -> tuple[threading.Thread, BaseException | None]:
    """A new worker's thread and setup error (it answers at once: it is idle)."""
    return cast("tuple[threading.Thread, BaseException | None]", ref.ask(Ready()))
