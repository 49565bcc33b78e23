"""The messages that travel between the handle, the coordinator and the stage actors.

An ``Item`` is the envelope of one accepted input. It travels the whole chain, even
after a stage failed on it or a policy dropped it, so that every accepted item comes back
to the coordinator exactly once and in order, carrying its outcome.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka


class Item:
    """One accepted input on its way through the stages."""

    __slots__ = ("seq", "data", "future", "submitted_at", "sent_at", "error", "dropped")

    def __init__(self, seq: int, data: Any, future: Future[Any] | None, now: float) -> None:
        self.seq = seq
        self.data = data
        self.future = future
        self.submitted_at = now
        self.sent_at = now
        self.error: BaseException | None = None
        self.dropped: str | None = None

    @property
    def is_live(self) -> bool:
        """True while a stage should still work on this item."""
        return self.error is None and self.dropped is None

    def drop(self, reason: str) -> None:
        """Mark the item dropped and free its payload at once."""
        if self.dropped is None and self.error is None:
            self.dropped = reason
            self.data = None


@dataclass(frozen=True)
class Submit:
    """Handle -> coordinator: admit this item."""

    item: Item


@dataclass(frozen=True)
class Ready:
    """Builder -> any actor (ask): reply ``(thread, setup_error_or_None)``."""


@dataclass(frozen=True)
class Retire:
    """Builder -> stage actor: run the stage's ``cleanup()``; a stop follows."""


@dataclass(frozen=True)
class Link:
    """Builder -> coordinator (ask): the first stage's ref, where admitted items go."""

    first: pykka.ActorRef[Any]


@dataclass(frozen=True)
class Drain:
    """Handle -> coordinator: resolve ``done`` once nothing is in flight."""

    done: Future[None]


@dataclass(frozen=True)
class Abort:
    """Handle -> coordinator (ask): fail every pending item now, with ``reason``."""

    reason: str
