"""What every actor of ours shares: the group that joins its thread, and crash containment.

pykka stops *every actor in the process* when a ``BaseException`` escapes an actor, and
an exception escaping ``on_start`` kills the thread while the actor still looks alive.
So user code is always called inside ``except BaseException`` where it is called, and as
a last resort ``PipelineActor`` turns anything that still escapes into an ordinary
exception: pykka then stops this actor only and calls ``on_failure``, where the actor
settles whatever it holds (``crashed``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

from ._errors import PipelineTerminated, describe
from ._messages import Item

logger = logging.getLogger("pystream_actors")

A = TypeVar("A", bound="PipelineActor")


class ActorCrash(Exception):
    """A ``BaseException`` that escaped one of our actors, wrapped so pykka stops only it."""


class ActorGroup:
    """Every actor one running pipeline started, so that stopping it joins every thread.

    Actors register their thread on start; stopped actors and ended threads are pruned
    whenever a new actor starts, so a long run of restarts keeps the lists short.
    """

    def __init__(self, on_crash: Callable[[str], None]) -> None:
        self.on_crash = on_crash
        """Called (on the dying actor's thread) when an actor dies outside the protocol."""
        self._lock = threading.Lock()
        self._refs: list[pykka.ActorRef[Any]] = []
        self._owned: set[str] = set()  # urns of actors another actor stops (a pool's workers)
        self._threads: list[threading.Thread] = []
        self.stopping = False
        """Set when the pipeline stops: actors stopping now are not crashing."""

    def spawn(
        self, actor_class: type[A], *args: Any, owned: bool = False, **kwargs: Any
    ) -> pykka.ActorRef[A]:
        """Start ``actor_class(self, *args, **kwargs)`` and keep its ref.

        ``owned``: another actor stops this one (a pool its workers, after their cleanup);
        ``stop_all`` leaves it to its owner but ``join`` still waits for it. Refused once the
        group is stopping, so no actor can slip past ``stop_all``.
        """
        with self._lock:
            if self.stopping:
                raise PipelineTerminated("the pipeline is stopping; no actor can be started")
            self._refs = [r for r in self._refs if r.is_alive()]
            self._threads = [t for t in self._threads if t.is_alive()]
            ref = actor_class.start(self, *args, **kwargs)
            self._refs.append(ref)
            if owned:
                self._owned.add(ref.actor_urn)
            self._owned.intersection_update(r.actor_urn for r in self._refs)
        return ref

    def thread_started(self, thread: threading.Thread) -> None:
        """Called by each actor on its own thread, first thing."""
        with self._lock:
            self._threads.append(thread)

    def owns_current_thread(self) -> bool:
        """True when called from one of this group's actor threads."""
        with self._lock:
            return threading.current_thread() in self._threads

    def stop_all(self) -> None:
        """Ask every actor to stop (behind what is already queued for it)."""
        with self._lock:
            self.stopping = True
            refs = [r for r in self._refs if r.actor_urn not in self._owned]
        for ref in refs:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass

    def join(self, deadline: float | None) -> list[threading.Thread]:
        """Wait for every actor to stop and its thread to end; the threads still running."""
        with self._lock:
            refs = list(self._refs)
        for ref in refs:
            ref.actor_stopped.wait(_remaining(deadline))
        with self._lock:
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(_remaining(deadline))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return [t for t in self._threads if t is not current]


class PipelineActor(pykka.ThreadingActor):
    """Base of our actors: a daemon thread, a name, its group, and crash containment."""

    use_daemon_thread = True  # a forgotten pipeline must not keep the process alive

    @staticmethod
    def _create_actor_inbox() -> Any:
        """A C-implemented ``SimpleQueue`` instead of pykka's ``queue.Queue``: the same
        unbounded FIFO (put, get, empty) at a fraction of the cost per message. pykka
        documents this hook for actor implementations."""
        return queue.SimpleQueue()

    def __init__(self, group: ActorGroup, thread_name: str) -> None:
        super().__init__()
        self._group = group
        self._thread_name = thread_name
        self._done = False  # stopped on purpose (handed over or retired)

    def _handle_receive(self, message: Any) -> Any:
        # pykka first checks for its own stop and proxy messages; an item is none of them,
        # and it is the message every actor of ours handles most
        if type(message) is Item:
            return self.on_receive(message)
        return super()._handle_receive(message)

    def on_start(self) -> None:
        thread = threading.current_thread()
        thread.name = self._thread_name
        self._group.thread_started(thread)
        try:
            self.started()
        except BaseException as exc:  # on_start must never let anything escape
            self._crash(exc)
            raise ActorCrash(f"{self._thread_name} failed to start") from exc

    def on_receive(self, message: Any) -> Any:
        try:
            return self.receive(message)
        except Exception:
            raise  # pykka: into the asker's future, or (a tell) stop this actor -> on_failure
        except BaseException as exc:
            raise ActorCrash(f"{type(exc).__name__} escaped {self._thread_name}") from exc

    def on_failure(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._crash(exc if exc is not None else ActorCrash("unknown failure"))

    def on_stop(self) -> None:
        if not self._done and not self._group.stopping:
            self._crash(ActorCrash(f"{self._thread_name} was stopped from outside the pipeline"))

    def _crash(self, exc: BaseException) -> None:
        logger.error("%s crashed", self._thread_name, exc_info=exc)
        try:
            self.crashed(exc)
        except BaseException:
            logger.exception("%s: settling after a crash failed", self._thread_name)
        cause = exc.__cause__ if isinstance(exc, ActorCrash) and exc.__cause__ else exc
        self._group.on_crash(f"{self._thread_name} died: {describe(cause)}")

    def finish(self) -> None:
        """Stop this actor on purpose, behind whatever is queued for it."""
        self._done = True
        self.stop()

    # -- hooks ------------------------------------------------------------------------

    def started(self) -> None:
        """Runs on the actor's thread before its first message."""

    def receive(self, message: Any) -> Any:
        """Handle one message (``on_receive`` with crash containment around it)."""
        raise NotImplementedError

    def crashed(self, exc: BaseException) -> None:
        """The actor is dying outside the protocol: settle everything it holds."""

    def drain_inbox(self) -> list[Any]:
        """The messages still queued for this dying actor (pykka drops queued tells)."""
        messages = []
        inbox = self.actor_inbox
        while not inbox.empty():
            envelope = inbox.get()
            messages.append(envelope.message)
        return messages


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
