"""The actor that runs one stage and forwards each item to its downstream actor."""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

import pykka

from ._actors import ActorGroup
from ._errors import StageError
from ._handover import Endpoint
from ._messages import FailureNotice, Item, send_or_return
from ._process_stage import WorkerDied
from ._stage import StageSlot
from ._statistics import StageCounters

logger = logging.getLogger("pystream_actors")


class StageActor(Endpoint):
    """Runs one stage on its own thread; knows its stage, its downstream and its home.

    A live item goes downstream; an item whose outcome is known (failed, dropped) goes
    straight home to the coordinator, so it never waits behind a busy later stage. A
    worker of a pool sends everything back to its pool, which keeps the order. Whatever
    the stage raises (any ``BaseException``) fails that item only.
    """

    def __init__(
        self,
        group: ActorGroup,
        slot: StageSlot,
        downstream: pykka.ActorRef[Any],
        home: pykka.ActorRef[Any],
        counters: StageCounters,
        waiting: bool = False,
        worker_index: int = -1,
        pool_urn: str = "",
        settled_go_home: bool = True,
    ) -> None:
        suffix = f"-{worker_index}" if worker_index >= 0 else ""
        super().__init__(
            group,
            f"StageActor-{slot.name}{suffix}",
            slot.name,
            downstream,
            home,
            waiting,
            settled_go_home and worker_index < 0,  # a worker gives everything to its pool
        )
        self._slot = slot
        self._call = slot.stage
        self._policy = slot.policy
        self._counters = counters
        self._worker_index = worker_index
        self._pool_urn = pool_urn
        self._simple = not self._policy.retries
        """No retries and no setup error: one call per item, nothing else to decide."""
        self._cleanup_due = False  # this actor set its stage up and has not cleaned it up

    def start_work(self) -> None:
        try:
            self._slot.ensure_setup()
            self.setup_error = None
            self._cleanup_due = True
        except BaseException as exc:  # reported through WhenReady; items then fail with it
            self.setup_error = exc
            logger.error("stage %r: setup() raised", self.stage_name, exc_info=exc)
        self._simple = self.setup_error is None and not self._policy.retries

    def stop_work(self, final: bool) -> None:
        self._cleanup_due = False
        try:
            self._slot.cleanup()
        except BaseException as exc:
            logger.error("stage %r: cleanup() raised", self.stage_name, exc_info=exc)

    def on_stop(self) -> None:
        """An actor stopped before it was told to clean up (a stop that came while its
        hand-over waited behind a busy upstream) still pairs its setup, here, on its thread."""
        super().on_stop()
        if self._cleanup_due:
            self.stop_work(final=True)

    def work(self, item: Item) -> None:
        """The hot path of every stage: written flat, it runs once per item and stage."""
        started = perf_counter()
        if item.claim is None and started <= item.expires_at:  # no window may drop it
            item.hops += 1
            if self._simple:
                try:
                    item.data = self._call(item.data)
                    ok = True
                except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the item only
                    ok = self._fail(item, exc)
            else:
                ok = self._run(item)
        elif item.begin(started):  # drop_oldest: take the item from the window's reach
            ok = self._run(item)
            item.release_claim()
        else:  # dropped by the window, or past its deadline
            if started > item.expires_at:
                self._counters.dropped += 1
            self.send_settled(item)
            return
        ended = perf_counter()
        self._counters.record(started, ended, started - item.sent_at, ok)
        item.sent_at = ended
        if ok:
            try:
                self.downstream.tell(item)
            except pykka.ActorDeadError:
                send_or_return(self.downstream, self.home, item, self.stage_name)
        else:
            self.send_settled(item)

    def _run(self, item: Item) -> bool:
        """Run the stage on the item (with retries); on failure apply the policy."""
        if self.setup_error is not None:
            return self._fail(item, self.setup_error)
        retries_left = self._policy.retries
        while True:
            try:
                item.data = self._call(item.data)
                return True
            except BaseException as exc:  # SystemExit, KeyboardInterrupt... fail the item only
                if not retries_left or isinstance(exc, WorkerDied):
                    return self._fail(item, exc)
                retries_left -= 1
                logger.debug("stage %r: retrying item #%d", self.stage_name, item.seq)

    def _fail(self, item: Item, exc: BaseException) -> bool:
        item.error = StageError(self.stage_name, item.seq, exc, item.data)
        item.data = None
        logger.warning("stage %r failed on item #%d", self.stage_name, item.seq, exc_info=exc)
        action = self._policy.on_error
        if action == "skip" and isinstance(exc, WorkerDied):
            action = "restart"  # a dead worker process cannot serve the next item
        if action != "skip":
            item.failure_action = FailureNotice(
                self.stage_name, action, self.actor_urn, self._worker_index, self._pool_urn
            )
            self.hold()  # a broken stage takes no more items until it is replaced
        return False
