"""A stage run by several worker actors behind its one name, outputs back in input order.

To the rest of the pipeline the pool is the stage's actor: it takes items from upstream,
gives each to the least-busy worker, takes the results back and forwards them in input
order (or as they finish with ``ordered=False``). It speaks the same hand-over protocol
as a single stage actor (``Endpoint``), so the supervisor can stop, restart or replace a
pooled stage, and it replaces single workers when the supervisor asks.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

import pykka

from ._actors import ActorGroup
from ._errors import PipelineTerminated, StageError
from ._handover import Endpoint, relink, settle_ready
from ._messages import (
    FailureNotice,
    Flush,
    Item,
    Relink,
    ReplaceWorker,
    Retire,
    WhenReady,
    send_or_return,
)
from ._stage import StageSlot
from ._stage_actor import StageActor
from ._statistics import PoolCounters, StageCounters

logger = logging.getLogger("pystream_actors")


class WorkerPoolActor(Endpoint):
    """Fans items out to N stage actors and merges their outputs in order."""

    def __init__(
        self,
        group: ActorGroup,
        slot: StageSlot,
        downstream: pykka.ActorRef[Any],
        home: pykka.ActorRef[Any],
        counters: PoolCounters,
        waiting: bool = False,
        settled_go_home: bool = True,
    ) -> None:
        super().__init__(
            group,
            f"StageActor-{slot.name}-pool",
            slot.name,
            downstream,
            home,
            waiting,
            settled_go_home,
        )
        self._slot = slot
        self._ordered = slot.scaling.ordered
        self._counters = counters
        self._workers: list[pykka.ActorRef[Any]] = []
        self._load: list[int] = []
        self._in_work: dict[int, tuple[Item, int]] = {}  # pool_seq -> (item, worker)
        self._finished: dict[int, Item | None] = {}  # out of order; None: went home failed
        self._next_in = 0
        self._next_out = 0
        self._ready: list[Future[BaseException | None]] = []
        self._workers_broken = False
        self._failed_workers: dict[int, str] = {}  # index -> urn, until replaced

    # -- Endpoint hooks ---------------------------------------------------------------

    def start_work(self) -> None:
        try:
            self._slot.ensure_setup()  # a shared thread-safe instance is set up once, here
            slots = self._slot.worker_slots()
            for index, worker_slot in enumerate(slots):
                self._workers.append(self._spawn_worker(worker_slot, index, waiting=False))
                self._load.append(0)
        except BaseException as exc:
            # A spawn is refused once the pipeline stops (a late Resume): the error is this
            # pool's setup error, so the pool lives on to clean up what it set up, here.
            self.setup_error = exc
            self._workers_broken = True  # any worker made before the error gets no items
            level = logging.DEBUG if isinstance(exc, PipelineTerminated) else logging.ERROR
            logger.log(
                level, "stage %r: its workers could not be made", self.stage_name, exc_info=exc
            )

    def _spawn_worker(self, slot: StageSlot, index: int, waiting: bool) -> pykka.ActorRef[Any]:
        ref = self._group.spawn(
            StageActor,
            slot,
            self.actor_ref,
            self.home,
            self._counters.workers[index],
            owned=True,
            waiting=waiting,
            worker_index=index,
            pool_urn=self.actor_urn,
        )
        ready: Future[BaseException | None] = Future()
        ref.tell(WhenReady(ready))
        self._ready = [f for f in self._ready if not f.done()] + [ready]
        return ref

    def stop_work(self, final: bool) -> None:
        for ref in self._workers:
            try:
                ref.tell(Retire(then_stop=final))
            except pykka.ActorDeadError:
                pass
        try:
            self._slot.cleanup()  # the shared instance, if the pool set it up
        except BaseException as exc:
            logger.error("stage %r: cleanup() raised", self.stage_name, exc_info=exc)

    def on_stop(self) -> None:
        super().on_stop()
        for ref in self._workers:  # after their cleanup (a no-op if it already ran)
            try:
                ref.tell(Retire(then_stop=True))
            except pykka.ActorDeadError:
                pass

    def busy(self) -> bool:
        return bool(self._in_work)

    def receive(self, message: Any) -> Any:
        if type(message) is Item:
            entry = self._in_work.get(message.pool_seq)
            if entry is not None and entry[0] is message:
                self._returned(message)
                return None
        elif isinstance(message, WhenReady) and not self.waiting:
            self._answer_when_workers_ready(message.done)
            return None
        return super().receive(message)

    def other_message(self, message: Any) -> Any:
        if isinstance(message, ReplaceWorker):
            self._replace_worker(message.index, message.actor_urn)
            return None
        return super().other_message(message)

    # -- items --------------------------------------------------------------------------

    def work(self, item: Item) -> None:
        if not self._workers or self._workers_broken:  # no usable workers: fail it here
            self._fail_unstaffed(item)
            return
        worker = min(range(len(self._workers)), key=self._load.__getitem__)
        item.pool_seq = self._next_in
        self._next_in += 1
        self._in_work[item.pool_seq] = (item, worker)
        self._load[worker] += 1
        try:
            self._workers[worker].tell(item)
        except pykka.ActorDeadError:
            item.drop(f"a worker of stage {self.stage_name!r} had stopped")
            self._returned(item)

    def _returned(self, item: Item) -> None:
        _, worker = self._in_work.pop(item.pool_seq)
        self._load[worker] -= 1
        notice = item.failure_action
        if notice is not None and notice.worker >= 0:  # that worker now holds what it gets
            self._failed_workers[notice.worker] = notice.actor_urn
        if not item.is_live:
            self.send_settled(item)  # its outcome is known: it need not wait for order
            if self._ordered:
                self._finished[item.pool_seq] = None
        elif not self._ordered:
            send_or_return(self.downstream, self.home, item, self.stage_name)
        else:
            self._finished[item.pool_seq] = item
        while self._next_out in self._finished:
            ready = self._finished.pop(self._next_out)
            self._next_out += 1
            if ready is not None:
                send_or_return(self.downstream, self.home, ready, self.stage_name)
        self.hand_over_when_idle()

    def _fail_unstaffed(self, item: Item) -> None:
        error = self.setup_error or RuntimeError("the stage has no workers")
        item.error = StageError(self.stage_name, item.seq, error, item.data)
        item.data = None
        self._counters.failed += 1
        action = self._slot.policy.on_error
        if action != "skip":
            item.failure_action = FailureNotice(self.stage_name, action, self.actor_urn)
            self.hold()
        self.send_settled(item)

    # -- workers ------------------------------------------------------------------------

    def _answer_when_workers_ready(self, done: Future[BaseException | None]) -> None:
        pending = [f for f in self._ready if not f.done()]
        if not pending:
            settle_ready(done, self._first_error())
            return
        remaining = [len(pending)]

        def one_ready(_: Future[BaseException | None]) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                settle_ready(done, self._first_error())

        for future in pending:
            future.add_done_callback(one_ready)

    def _first_error(self) -> BaseException | None:
        if self.setup_error is not None:
            return self.setup_error
        for future in self._ready:
            if future.done() and future.result() is not None:
                return future.result()
        return None

    def flush(self, reason: str) -> None:
        # A worker that failed holds what it got until replaced; a stopped pool is not
        # replaced at drain, so its failed workers give their items back, dropped.
        super().flush(reason)
        for index in self._failed_workers:
            try:
                self._workers[index].tell(Flush(reason))
            except pykka.ActorDeadError:
                pass

    def hand_over_when_idle(self) -> None:
        # Workers that failed hold what they got until replaced; the supervisor replaces
        # them only for the current, running pool. A pool handing over replaces them now,
        # so their items are processed here, in order, and the pool becomes idle.
        if self._successor is not None:
            for index, urn in list(self._failed_workers.items()):
                if self._load[index]:  # it holds items: they must be processed first
                    self._replace_worker(index, urn)
        super().hand_over_when_idle()

    def _replace_worker(self, index: int, actor_urn: str) -> None:
        if index >= len(self._workers) or self._workers[index].actor_urn != actor_urn:
            return  # already replaced, or this pool was rebuilt since the failure
        self._failed_workers.pop(index, None)
        old = self._workers[index]
        try:
            slot = self._slot.worker_slot()
            new = self._spawn_worker(slot, index, waiting=True)
        except BaseException as exc:  # the factory failed, or the pipeline is stopping
            logger.error("stage %r: a worker could not be replaced", self.stage_name, exc_info=exc)
            self.setup_error = exc
            self._workers_broken = True
            try:  # what the old worker holds comes back to the pool, dropped
                old.tell(Flush(f"a worker of stage {self.stage_name!r} could not be replaced"))
            except pykka.ActorDeadError:
                pass
            return
        self._workers[index] = new
        relink(Relink(old, new))

    def crashed(self, exc: BaseException) -> None:
        reason = f"the pool of stage {self.stage_name!r} crashed ({type(exc).__name__})"
        for item in self._finished.values():
            if item is not None:
                item.drop(reason)
                self.send_settled(item)
        self._finished.clear()
        for ref in self._workers:
            try:
                ref.tell(Retire(then_stop=True))
            except pykka.ActorDeadError:
                pass
        super().crashed(exc)


def counters_for(slot: StageSlot, timed: bool = True) -> StageCounters:
    """Fresh counters for a stage: one set, or one per worker for a pooled stage."""
    if slot.scaling.executor == "ray":
        from ._ray_stage import RayCounters

        return RayCounters(slot.name, slot.scaling.workers, timed)
    if slot.scaling.pooled:
        return PoolCounters(slot.name, slot.scaling.workers, timed)
    return StageCounters(slot.name, timed)


def spawn_stage(
    group: ActorGroup,
    slot: StageSlot,
    downstream: pykka.ActorRef[Any],
    home: pykka.ActorRef[Any],
    counters: StageCounters,
    waiting: bool = False,
    settled_go_home: bool = True,
) -> pykka.ActorRef[Any]:
    """Start the actor that runs ``slot``: a single stage actor or a worker pool.

    ``settled_go_home=False`` for a stage inside a branch: settled items go on to the
    junction, never straight home."""
    if slot.scaling.executor == "ray":  # Ray actors behind one actor of ours
        from ._ray_stage import RayCounters, RayStageActor

        assert isinstance(counters, RayCounters)
        return group.spawn(
            RayStageActor, slot, downstream, home, counters, waiting, settled_go_home
        )
    if slot.scaling.pooled:
        assert isinstance(counters, PoolCounters)
        return group.spawn(
            WorkerPoolActor, slot, downstream, home, counters, waiting, settled_go_home
        )
    return group.spawn(
        StageActor, slot, downstream, home, counters, waiting, settled_go_home=settled_go_home
    )
