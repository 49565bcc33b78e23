"""The messages that travel between the handle, the coordinator and the stage actors.

An ``Item`` is the envelope of one accepted input. It travels down the chain while it is
live; once its outcome is known (a stage failed on it, a policy dropped it, or the next
actor was gone) it goes straight back to the coordinator, so every accepted item comes
back exactly once, carrying its outcome. Live items come back in input order.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka

logger = logging.getLogger("pystream_actors")

DROPPED_ON_FULL = "on_full='drop_oldest': a newer item took its place"


class Item:
    """One accepted input on its way through the stages."""

    __slots__ = (
        "branch",
        "claim",
        "data",
        "dropped",
        "error",
        "expires_at",
        "failure_action",
        "future",
        "holds_slot",
        "hops",
        "jseq",
        "members",
        "parent",
        "pool_seq",
        "sent_at",
        "seq",
        "source",
        "stamp",
        "submitted_at",
    )

    def __init__(
        self,
        data: Any,
        future: Future[Any] | None,
        now: float,
    ) -> None:
        self.seq = -1  # numbered by the coordinator, in admission order
        self.data = data
        self.future = future
        self.submitted_at = self.sent_at = now
        self.expires_at = math.inf
        self.error: BaseException | None = None
        self.dropped: str | None = None
        self.holds_slot = False
        self.hops = 0  # stages that started the item (0: the first stage has not yet)
        self.pool_seq = -1  # numbered by a worker pool, to put outputs back in order
        self.claim: list[int] | ClaimGroup | None = None
        self.failure_action: FailureNotice | None = None
        self.parent: Item | None = None  # set on a child a junction forked for a branch
        self.branch = ""
        self.jseq = -1  # numbered by a junction, to join and release in order
        self.source = ""  # which input it came from ("" unless the first step is a Sync)
        self.stamp = 0.0  # its sensor time stamp (a Sync matches on it)
        self.members: tuple[Item, ...] | None = None  # a Sync's set: the items it joined

    def fork(self, branch: str, data: Any, expires_at: float, claim: Any, jseq: int) -> Item:
        """A child envelope for one branch of a junction; it shares the parent's number."""
        child = Item(data, None, self.submitted_at)
        child.seq = self.seq
        child.sent_at = self.sent_at
        child.expires_at = expires_at
        child.claim = claim
        child.parent = self
        child.branch = branch
        child.jseq = jseq
        return child

    def start_clock(self, now: float, max_age: float | None) -> None:
        """Start the item's clock at acceptance (after any wait for room)."""
        self.submitted_at = self.sent_at = now
        self.expires_at = math.inf if max_age is None else now + max_age

    @property
    def is_live(self) -> bool:
        """True while a stage should still work on this item."""
        return self.error is None and self.dropped is None

    def begin(self, now: float) -> bool:
        """A stage is about to start the item: False if it must be skipped.

        In a ``drop_oldest`` pipeline the window may drop any item no stage is working
        on; ``claim`` is the token that decides who wins (``list.pop`` is atomic), so a
        stage never works on an item the window dropped, nor the window drops one in work.
        An item past its deadline is dropped here.
        """
        claim = self.claim
        if type(claim) is ClaimGroup:
            return claim.begin_child(self, now)
        if not self.try_claim():
            return False
        if now > self.expires_at:
            self.drop(EXPIRED)
            return False
        self.hops += 1
        return True

    def try_claim(self) -> bool:
        """Take the item from the window's reach; False if the window dropped it first."""
        claim = self.claim
        if isinstance(claim, list):
            try:
                claim.pop()
            except IndexError:
                self.drop(DROPPED_ON_FULL)
                return False
        return self.is_live

    def release_claim(self) -> None:
        """The stage is done with the item: the window may drop it again while it waits."""
        claim = self.claim
        if isinstance(claim, list):
            claim.append(1)
        elif claim is not None:
            claim.end_child()

    @property
    def started(self) -> bool:
        """True once the first stage has started the item."""
        return self.hops > 0

    def drop(self, reason: str) -> None:
        """Mark the item dropped and free its payload at once."""
        if self.dropped is None and self.error is None:
            self.dropped = reason
            self.data = None


SIBLING_FAILED = "a required sibling branch failed first"
EXPIRED = "older than max_age when a stage was about to start it"


class ClaimGroup:
    """The claim of a parent forked into children, shared by the children.

    A stage working on a child holds the group; the window may drop the parent only while
    no child is at work, and a failed required branch cancels the siblings not yet started.
    A lock makes "check, then start" one step for the children and the window alike.
    """

    __slots__ = ("_lock", "active", "closed", "parent", "reason")

    def __init__(self, parent: Item) -> None:
        self._lock = threading.Lock()
        self.parent = parent
        self.active = 0
        self.closed = False  # the window dropped the parent, or the join is over
        self.reason = ""  # why children may no longer start

    def begin_child(self, child: Item, now: float) -> bool:
        """A branch stage is about to start ``child``: False (and the child dropped) if it
        must be skipped."""
        with self._lock:
            if not child.is_live:
                return False
            parent = self.parent
            if self.reason or parent.dropped is not None or parent.error is not None:
                child.drop(self.reason or parent.dropped or SIBLING_FAILED)
                return False
            if now > child.expires_at:
                child.drop(EXPIRED)
                return False
            child.hops += 1
            self.active += 1
            return True

    def end_child(self) -> None:
        with self._lock:
            self.active -= 1

    def take_idle(self) -> bool:
        """The window drops the parent: only while no child is at work (then they skip)."""
        with self._lock:
            if self.closed or self.active:
                return False
            self.closed = True
            self.reason = DROPPED_ON_FULL
            return True

    def cancel(self, reason: str) -> None:
        """Children not yet started skip the item from now on."""
        with self._lock:
            self.reason = self.reason or reason

    def drop_unstarted(self, child: Item, reason: str) -> bool:
        """Drop ``child`` if no stage has started it (a branch over its capacity)."""
        with self._lock:
            if child.hops or not child.is_live:
                return False
            child.drop(reason)
            return True

    def close(self) -> None:
        """The join is over: the window can no longer take the parent through the group."""
        with self._lock:
            self.closed = True


def send_or_return(
    downstream: pykka.ActorRef[Any], home: pykka.ActorRef[Any], item: Item, sender: str
) -> None:
    """Send ``item`` downstream; if that actor has stopped, return the item home, dropped.

    No accepted item may vanish: an undeliverable one goes back to the coordinator, which
    settles it. If the coordinator has stopped too, its own stop already settled it.
    """
    try:
        downstream.tell(item)
    except pykka.ActorDeadError:
        item.drop(f"the actor after stage {sender!r} had stopped when the item was sent on")
        send_home(home, item)


def send_home(home: pykka.ActorRef[Any], message: Any) -> None:
    """Tell the coordinator; nothing to do if it has stopped (it settled everything then)."""
    try:
        home.tell(message)
    except pykka.ActorDeadError:
        logger.debug("%r not delivered: the coordinator has stopped", message)


@dataclass(frozen=True)
class FailureNotice:
    """Carried by a failed item to the coordinator: the stage asks to be restarted or stopped."""

    stage: str
    action: str  # "restart" or "stop"
    actor_urn: str
    worker: int = -1  # which worker of a pooled stage, -1 for a single-actor stage
    pool_urn: str = ""  # the pool the worker belongs to: replacements go to that pool only


@dataclass(frozen=True)
class ReplaceWorker:
    """Supervisor -> worker pool: restart worker ``index`` if it is still ``actor_urn``."""

    index: int
    actor_urn: str


@dataclass(frozen=True)
class Relink:
    """Supervisor -> the upstream of a stage: send to ``successor`` from now on, and tell
    ``predecessor`` to hand over (its queue holds everything sent before this message)."""

    predecessor: pykka.ActorRef[Any]
    successor: pykka.ActorRef[Any]


@dataclass(frozen=True)
class Handover:
    """Upstream -> retiring stage actor: finish, give held items to ``successor``, stop."""

    successor: pykka.ActorRef[Any]


@dataclass(frozen=True)
class Resume:
    """Retiring stage actor -> its successor: set up, then process ``held`` before anything else."""

    held: tuple[Item, ...]


@dataclass(frozen=True)
class Pause:
    """Supervisor -> stage actor: clean up the stage and hold every later item until handover."""


@dataclass(frozen=True)
class Flush:
    """Runtime -> a stopped (paused) stage actor at drain: drop what it holds and every later
    item, with ``reason``, so that the drain can finish."""

    reason: str


@dataclass(frozen=True)
class WhenReady:
    """Supervisor or runtime -> stage actor or pool: resolve ``done`` with the setup error
    (or None) once every message before this one is handled (a waiting successor: once it
    has taken over and set its stage up)."""

    done: Future[BaseException | None]


@dataclass(frozen=True)
class Retire:
    """Runtime or pool -> stage actor: run the stage's ``cleanup()``; with ``then_stop`` the
    actor stops itself right after (a pool's worker), else the runtime stops it."""

    then_stop: bool = False


@dataclass(frozen=True)
class LinkBranches:
    """Builder -> junction: the head actor of each branch, by branch key."""

    heads: dict[str, pykka.ActorRef[Any]]


@dataclass(frozen=True)
class Notice:
    """Junction -> coordinator: a stage inside a branch asks to be restarted or stopped."""

    action: FailureNotice


@dataclass(frozen=True)
class DeadLetter:
    """Junction -> coordinator: a failure that is not its item's outcome (an optional
    branch, a tap) still goes to the dead letters and ``on_error`` callbacks."""

    error: BaseException


@dataclass(frozen=True)
class TapOutput:
    """Tap junction -> coordinator: one output of tap branch ``output``."""

    output: str
    value: Any


@dataclass(frozen=True)
class Link:
    """Builder -> coordinator: the first stage's ref, where admitted items go; with a
    ``Sync`` first, ``entries`` holds each source chain's head, by source."""

    first: pykka.ActorRef[Any]
    entries: dict[str, pykka.ActorRef[Any]] | None = None
    sync: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class DrainSources:
    """Coordinator -> sync junction at drain: how many items went into each source chain.
    Once all of them came out, nothing nearer can come: the samples still waiting settle."""

    sent: dict[str, int]


@dataclass(frozen=True)
class Cached:
    """Sync junction -> coordinator: a context sample of ``policy="latest"`` is cached; its
    future resolves with its source chain's output (no pipeline output), its slot frees."""

    item: Item


@dataclass(frozen=True)
class Tick:
    """Ticker -> sync junction: a ``max_wait`` deadline may have passed."""


@dataclass(frozen=True)
class Drain:
    """Handle -> coordinator: resolve ``done`` once nothing is in flight."""

    done: Future[None]


@dataclass(frozen=True)
class Abort:
    """Handle -> coordinator (ask): fail every pending item now, with ``reason``."""

    reason: str
