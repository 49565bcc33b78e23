"""The hand-over protocol, in one place: how one stage actor takes over from another.

A stopped pykka actor can never start again, so every restart, start or replacement of a
stage spawns a new actor and re-links refs. Order is kept with FIFO mailboxes only:

1. the supervisor spawns the successor ``N`` *waiting*: it defers every message, in order;
2. it tells the stage's upstream ``Relink(old, N)``: the upstream sends to ``N`` from now
   on and tells ``old`` ``Handover(N)``, which lands behind everything sent to ``old``;
3. ``old`` finishes (or holds) what came before, cleans up, sends ``Resume(held items)``
   to ``N`` and stops; ``N`` sets up, processes the inherited items, then replays what it
   deferred, exactly as if it had received it while running.

Because a waiting actor defers ``Relink``, ``Handover`` and ``Pause`` too, a control call
may follow another while an old actor is still stuck in a stage call: every step is
carried out in order once that call returns, and no item is stranded. A ``Retire`` that
only cleans up (the runtime stops the actor next) is deferred as well: a ``Resume`` may
still come first, and the setup it makes is then cleaned up on the same thread.

``Endpoint`` is the protocol for anything that stands in the chain as one stage: a
``StageActor`` or a ``WorkerPoolActor``. The coordinator speaks the upstream half
(``relink``).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, InvalidStateError
from typing import Any

import pykka

from ._actors import ActorGroup, PipelineActor
from ._messages import (
    Flush,
    Handover,
    Item,
    Pause,
    Relink,
    ReplaceWorker,
    Resume,
    Retire,
    WhenReady,
    send_home,
    send_or_return,
)

logger = logging.getLogger("pystream_actors")

_DEFERRED_WHILE_WAITING = (Relink, Handover, Pause, Flush, WhenReady, ReplaceWorker)


def relink(message: Relink) -> pykka.ActorRef[Any]:
    """The upstream's half of a hand-over: tell the old actor to hand over to the new one."""
    try:
        message.predecessor.tell(Handover(message.successor))
    except pykka.ActorDeadError:
        # The old actor died (it settled what it held); the new one must not wait for ever.
        try:
            message.successor.tell(Resume(()))
        except pykka.ActorDeadError:
            pass
    return message.successor


def settle_ready(done: Future[BaseException | None], error: BaseException | None) -> None:
    """Answer a ``WhenReady`` (once)."""
    try:
        done.set_result(error)
    except InvalidStateError:
        pass


class Endpoint(PipelineActor):
    """One stage's place in the chain and the hand-over protocol around its work.

    States: *waiting* (a successor before ``Resume``: everything is deferred), *running*,
    *holding* (after ``Pause`` or a failure that asks for a restart: items are kept for the
    successor), *flushing* (a stopped stage at drain: items are dropped with a reason).
    Subclasses do the work: ``start_work`` / ``stop_work`` (set up / clean up on this
    thread), ``work`` (one live item), ``busy`` (items still out at workers).
    """

    def __init__(
        self,
        group: ActorGroup,
        thread_name: str,
        stage_name: str,
        downstream: pykka.ActorRef[Any],
        home: pykka.ActorRef[Any],
        waiting: bool,
        settled_go_home: bool = True,
    ) -> None:
        super().__init__(group, thread_name)
        self.stage_name = stage_name
        self.downstream = downstream
        self.home = home  # the coordinator: where settled and undeliverable items go
        self.settled_go_home = settled_go_home
        """False inside a branch or a pool: every item, settled or not, must go back
        through the junction or pool that gave it out."""
        self.setup_error: BaseException | None = None
        self._deferred: list[Any] | None = [] if waiting else None
        self.held: list[Item] | None = None
        self._flush_reason: str | None = None
        self._successor: pykka.ActorRef[Any] | None = None
        self._plain = not waiting
        """Neither waiting, holding nor flushing: a live item goes straight to ``work``."""

    # -- subclass hooks -----------------------------------------------------------------

    def start_work(self) -> None:
        """Set the stage up on this thread (errors go to ``setup_error``, never raised)."""

    def stop_work(self, final: bool) -> None:
        """Clean the stage up on this thread; ``final``: this actor is about to stop."""

    def work(self, item: Item) -> None:
        """Process one live item and send it on."""
        raise NotImplementedError

    def busy(self) -> bool:
        """True while items given out (to workers) have not come back."""
        return False

    def send_settled(self, item: Item) -> None:
        """An item whose outcome is known goes home to the coordinator at once; inside a
        branch or a pool it goes on, back to the junction or pool that gave it out."""
        if self.settled_go_home:
            send_home(self.home, item)
        else:
            send_or_return(self.downstream, self.home, item, self.stage_name)

    def other_message(self, message: Any) -> Any:
        """A message the protocol does not know."""
        logger.warning("%s ignored an unexpected message %r", self.stage_name, message)
        return None

    # -- the protocol -------------------------------------------------------------------

    def started(self) -> None:
        if self._deferred is None:
            self.start_work()

    @property
    def waiting(self) -> bool:
        return self._deferred is not None

    def receive(self, message: Any) -> Any:
        if type(message) is Item:
            if self._plain and message.error is None and message.dropped is None:
                self.work(message)  # the hot path
            else:
                self.take(message)
        elif self._deferred is not None and isinstance(message, _DEFERRED_WHILE_WAITING):
            self._deferred.append(message)
        elif isinstance(message, Relink):
            self.downstream = relink(message)
        elif isinstance(message, Handover):
            self._successor = message.successor
            self.hand_over_when_idle()
        elif isinstance(message, Resume):
            self._resume(message.held)
        elif isinstance(message, Pause):
            self.hold()
            self.stop_work(final=False)
        elif isinstance(message, Flush):
            self.flush(message.reason)
        elif isinstance(message, WhenReady):
            settle_ready(message.done, self.setup_error)
        elif isinstance(message, Retire):
            self._retire(message)
        else:
            return self.other_message(message)
        return None

    def _retire(self, message: Retire) -> None:
        """Clean up for good; with ``then_stop``, stop right after.

        A waiting successor has nothing set up yet. Told to stop, it stops and never sets
        up (``_resume``). Told only to clean up (the runtime stops it a moment later), it
        may still get its Resume first, and then it sets up on this thread: so it keeps the
        Retire for after its take-over, as it defers every other control message, and the
        cleanup pairs with that setup here, on this thread. Otherwise the slot would stay
        set up, and the next actor to run it would skip setup() and clean it up on its own
        thread."""
        if self._deferred is None:
            self.stop_work(final=True)
        elif not message.then_stop:
            self._deferred.append(message)
        if message.then_stop:
            self.finish()

    def take(self, item: Item) -> None:
        """Route one item by the state: defer, hold, drop, or work on it."""
        if self._deferred is not None:
            self._deferred.append(item)
        elif not item.is_live:
            self.send_settled(item)
        elif self._flush_reason is not None:
            item.drop(self._flush_reason)
            self.send_settled(item)
        elif self.held is not None:
            self.held.append(item)
        else:
            self.work(item)

    def hold(self) -> None:
        """Keep every later item for the successor (after Pause, or a failure to restart)."""
        if self.held is None:
            self.held = []
        self._plain = False

    def hand_over_when_idle(self) -> None:
        """Once nothing is out at workers: clean up, give the successor what we hold, stop."""
        successor = self._successor
        if successor is None or self.busy():
            return
        held, self.held = tuple(self.held or ()), None
        self.stop_work(final=True)
        try:
            successor.tell(Resume(held))
        except pykka.ActorDeadError:
            for item in held:
                item.drop(f"the successor of stage {self.stage_name!r} had stopped")
                self.send_settled(item)
        self._successor = None
        self.finish()

    def _resume(self, inherited: tuple[Item, ...]) -> None:
        """Take over: set up, then the predecessor's items, then what we deferred, in order."""
        if self._deferred is None:  # already running: only the items are news
            for item in inherited:
                self.take(item)
            return
        if self._done:  # retired while waiting: never set up, so nothing to pair
            for item in inherited:
                item.drop(f"stage {self.stage_name!r} was retired before it took over")
                self.send_settled(item)
            return
        deferred, self._deferred = self._deferred, None
        self._plain = self.held is None and self._flush_reason is None
        self.start_work()
        for item in inherited:
            self.take(item)
        for message in deferred:
            self.receive(message)

    def flush(self, reason: str) -> None:
        """Drop what we hold and every later item, with ``reason`` (a drain past a stop)."""
        self._flush_reason = reason
        self._plain = False
        held, self.held = self.held or [], []
        for item in held:
            item.drop(reason)
            self.send_settled(item)

    def crashed(self, exc: BaseException) -> None:
        """Dying outside the protocol: every item we hold or still have queued goes home."""
        reason = f"the actor of stage {self.stage_name!r} crashed ({type(exc).__name__})"
        pending: list[Any] = [*(self.held or ()), *(self._deferred or ()), *self.drain_inbox()]
        if self._successor is not None:
            pending.append(Handover(self._successor))
        self.held = self._deferred = self._successor = None
        self._plain = False
        for message in pending:
            if type(message) is Item:
                message.drop(reason)
                self.send_settled(message)
            elif isinstance(message, Resume):
                for item in message.held:
                    item.drop(reason)
                    self.send_settled(item)
            elif isinstance(message, WhenReady):
                settle_ready(message.done, exc)
            elif isinstance(message, Handover):  # the successor must not wait for us for ever
                try:
                    message.successor.tell(Resume(()))
                except pykka.ActorDeadError:
                    pass
