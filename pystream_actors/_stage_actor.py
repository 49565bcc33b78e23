"""The actor that runs one stage and forwards each item to its downstream actor."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pykka

from ._errors import StageError
from ._messages import Item, Ready, Retire
from ._stage import StageSlot
from ._statistics import StageCounters

logger = logging.getLogger("pystream_actors")


class StageActor(pykka.ThreadingActor):
    """Runs one stage on its own thread; knows its stage and its downstream ref only.

    Every item is forwarded, whatever happened to it: a stage error or a drop travels on
    in the envelope, so the coordinator sees each accepted item once and in order. No
    exception ever escapes ``on_receive`` (pykka would stop the actor silently).
    """

    use_daemon_thread = True  # a forgotten pipeline must not keep the process alive

    def __init__(
        self, slot: StageSlot, downstream: pykka.ActorRef[Any], counters: StageCounters
    ) -> None:
        super().__init__()
        self._slot = slot
        self._call = slot.stage
        self._name = slot.name
        self._downstream = downstream
        self._counters = counters
        self._setup_error: BaseException | None = None

    def on_start(self) -> None:
        try:
            self._slot.ensure_setup()
        except Exception as exc:  # reported to the builder through Ready
            self._setup_error = exc

    def on_receive(self, message: Any) -> Any:
        if type(message) is Item:
            self._process(message)
            return None
        if isinstance(message, Ready):
            return threading.current_thread(), self._setup_error
        if isinstance(message, Retire):
            self._retire()
            return None
        logger.warning("stage %r ignored an unexpected message %r", self._name, message)
        return None

    def _process(self, item: Item) -> None:
        if item.is_live:
            started = time.perf_counter()
            if item.begin(started):
                try:
                    item.data = self._call(item.data)
                    ok = True
                except Exception as exc:
                    item.error = StageError(self._name, item.seq, exc)
                    item.data = None
                    ok = False
                    logger.warning(
                        "stage %r failed on item #%d", self._name, item.seq, exc_info=exc
                    )
                ended = time.perf_counter()
                self._counters.record(started, ended, started - item.sent_at, ok)
                item.sent_at = ended
            elif started > item.expires_at:
                self._counters.dropped += 1
        try:
            self._downstream.tell(item)
        except pykka.ActorDeadError:
            # The pipeline is being torn down; the coordinator fails pending items itself.
            logger.debug("stage %r: downstream gone, item #%d not forwarded", self._name, item.seq)

    def _retire(self) -> None:
        """Run the stage's ``cleanup()`` on its own thread; the actor stops right after."""
        try:
            self._slot.cleanup()
        except Exception as exc:
            logger.error("stage %r: cleanup() raised", self._name, exc_info=exc)
