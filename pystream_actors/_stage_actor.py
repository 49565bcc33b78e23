"""The actor that runs one stage and forwards each item to its downstream actor."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pykka

from ._errors import StageError
from ._messages import (
    FailureNotice,
    Handover,
    Item,
    Pause,
    Ready,
    Relink,
    Resume,
    Retire,
    tell_quietly,
)
from ._stage import StageSlot
from ._statistics import StageCounters

logger = logging.getLogger("pystream_actors")


class StageActor(pykka.ThreadingActor):
    """Runs one stage on its own thread; knows its stage and its downstream ref only.

    Every item is forwarded, whatever happened to it: a stage error or a drop travels on
    in the envelope, so the coordinator sees each accepted item once and in order. No
    exception ever escapes ``on_receive`` (pykka would stop the actor silently).

    A stage actor may *hold* items instead of processing them: while it waits to take
    over from a predecessor (``held=True`` until ``Resume``), after ``Pause``, and after a
    failure under the ``"restart"`` policy. Held items are handed to the successor in
    order, so replacing an actor never loses, duplicates or reorders an item.
    """

    use_daemon_thread = True  # a forgotten pipeline must not keep the process alive

    def __init__(
        self,
        slot: StageSlot,
        downstream: pykka.ActorRef[Any],
        counters: StageCounters,
        held: bool = False,
        worker_index: int = -1,
    ) -> None:
        super().__init__()
        self._worker_index = worker_index
        self._slot = slot
        self._call = slot.stage
        self._name = slot.name
        self._policy = slot.policy
        self._downstream = downstream
        self._counters = counters
        self._held: list[Item] | None = [] if held else None
        self._setup_error: BaseException | None = None

    def on_start(self) -> None:
        suffix = f"-{self._worker_index}" if self._worker_index >= 0 else ""
        threading.current_thread().name = f"StageActor-{self._name}{suffix}"
        if self._held is None:
            self._set_up()

    def _set_up(self) -> None:
        try:
            self._slot.ensure_setup()
            self._setup_error = None
        except Exception as exc:  # reported through Ready; items then fail with it
            self._setup_error = exc
            logger.error("stage %r: setup() raised", self._name, exc_info=exc)

    def on_receive(self, message: Any) -> Any:
        if type(message) is Item:
            if self._held is None:
                self._process(message)
            else:
                self._held.append(message)
        elif isinstance(message, Ready):
            return threading.current_thread(), self._setup_error
        elif isinstance(message, Relink):
            self._downstream = message.successor
            tell_quietly(message.predecessor, Handover(message.successor))
        elif isinstance(message, Handover):
            self._hand_over(message.successor)
        elif isinstance(message, Resume):
            self._resume(message.held)
        elif isinstance(message, Pause):
            self._hold()
            self._clean_up()
        elif isinstance(message, Retire):
            self._clean_up()
        else:
            logger.warning("stage %r ignored an unexpected message %r", self._name, message)
        return None

    def _process(self, item: Item) -> None:
        if item.is_live:
            started = time.perf_counter()
            if item.begin(started):
                ok = self._run(item)
                item.release_claim()
                ended = time.perf_counter()
                self._counters.record(started, ended, started - item.sent_at, ok)
                item.sent_at = ended
            elif started > item.expires_at:
                self._counters.dropped += 1
        tell_quietly(self._downstream, item)

    def _run(self, item: Item) -> bool:
        """Run the stage on the item (with retries); on failure apply the policy."""
        if self._setup_error is not None:
            return self._fail(item, self._setup_error)
        retries_left = self._policy.retries
        while True:
            try:
                item.data = self._call(item.data)
                return True
            except Exception as exc:
                if not retries_left:
                    return self._fail(item, exc)
                retries_left -= 1
                logger.debug("stage %r: retrying item #%d after %r", self._name, item.seq, exc)

    def _fail(self, item: Item, exc: BaseException) -> bool:
        item.error = StageError(self._name, item.seq, exc, item.data)
        item.data = None
        logger.warning("stage %r failed on item #%d", self._name, item.seq, exc_info=exc)
        action = self._policy.on_error
        if action != "skip":
            item.failure_action = FailureNotice(
                self._name, action, self.actor_urn, self._worker_index
            )
            self._hold()  # a broken stage takes no more items until it is replaced
        return False

    def _hold(self) -> None:
        if self._held is None:
            self._held = []

    def _hand_over(self, successor: pykka.ActorRef[Any]) -> None:
        """Every item sent before the relink is processed or held: pass the rest on and stop."""
        held, self._held = tuple(self._held or ()), None
        self._clean_up()
        tell_quietly(successor, Resume(held))
        self.stop()

    def _resume(self, inherited: tuple[Item, ...]) -> None:
        """Take over: set up, then the predecessor's held items, then our own, in order."""
        own, self._held = self._held or [], None
        self._set_up()
        for item in (*inherited, *own):
            if self._held is not None:  # failed again under "restart": hold the rest
                self._held.append(item)
            else:
                self._process(item)

    def _clean_up(self) -> None:
        """Run the stage's ``cleanup()`` on its own thread, once per setup."""
        try:
            self._slot.cleanup()
        except Exception as exc:
            logger.error("stage %r: cleanup() raised", self._name, exc_info=exc)
