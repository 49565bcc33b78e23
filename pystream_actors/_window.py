"""The in-flight window: how many accepted items may be inside a pipeline at once.

The handle admits through it (on the caller's thread, the only place that may wait) and
the coordinator frees a slot when an item finishes. What happens when it is full is the
pipeline's ``on_full`` policy:

- ``"block"``: wait up to the timeout for a free slot, then refuse;
- ``"reject"``: refuse at once;
- ``"drop_oldest"``: accept at once and drop the oldest item the first stage has not
  started; if every item has been started, the oldest one waiting between stages. An
  item a stage is working on right now, or one every stage has finished, is never
  dropped: when no other is left, the newest is still accepted and waits, so the window
  holds at most ``capacity + 1`` items.
"""

from __future__ import annotations

import collections
import threading
from typing import Literal

from ._messages import DROPPED_ON_FULL, Item

OnFull = Literal["block", "reject", "drop_oldest"]
ON_FULL_POLICIES: tuple[OnFull, ...] = ("block", "reject", "drop_oldest")


class InFlightWindow:
    """A counting gate shared by the handle and the coordinator."""

    def __init__(self, capacity: int, on_full: OnFull = "block", stages: int = 1) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a whole number of items >= 1, got {capacity!r}")
        if on_full not in ON_FULL_POLICIES:
            raise ValueError(f"on_full must be one of {ON_FULL_POLICIES}, got {on_full!r}")
        self.capacity = capacity
        self.on_full = on_full
        self._stages = stages  # an item every stage has worked on is never dropped
        self._cond = threading.Condition(threading.Lock())
        self._used = 0
        self._closed = False
        self._inside: collections.deque[Item] = collections.deque()  # drop_oldest only
        self._waiting = 0  # submitters blocked in admit(): only then is a notify needed
        self.dropped = 0

    @property
    def used(self) -> int:
        """Items admitted and not yet finished."""
        return self._used

    def admit(self, item: Item, timeout: float | None) -> bool:
        """Take a slot for ``item`` by the policy; False if refused or the window is closed.

        ``timeout`` only matters for ``"block"``: 0 = do not wait, None = wait for ever.
        """
        with self._cond:
            if self._used >= self.capacity and not self._closed:
                if self.on_full == "drop_oldest":
                    self._drop_one()
                elif self.on_full == "block" and timeout != 0.0:
                    self._waiting += 1
                    try:
                        self._cond.wait_for(
                            lambda: self._used < self.capacity or self._closed, timeout
                        )
                    finally:
                        self._waiting -= 1
            if self._closed or (self._used >= self.capacity and self.on_full != "drop_oldest"):
                return False
            self._used += 1
            item.holds_slot = True
            if self.on_full == "drop_oldest":
                item.claim = [1]
                self._inside.append(item)
            return True

    def _drop_one(self) -> None:
        """Drop the oldest item nobody works on, preferring ones not started at all."""
        for only_unstarted in (True, False):
            for victim in self._inside:
                if (victim.started and only_unstarted) or not victim.is_live:
                    continue
                if victim.hops >= self._stages:
                    continue  # finished: only the coordinator has yet to see it
                if not _take_claim(victim):
                    continue  # a stage is working on it right now
                victim.drop(DROPPED_ON_FULL)
                self._inside.remove(victim)
                self._free(victim)
                self.dropped += 1
                return

    def finish(self, item: Item) -> None:
        """``item`` left the pipeline: free its slot (once) and wake a waiting submitter."""
        with self._cond:
            self._free(item)
            if self._inside and self._inside[0] is item:
                self._inside.popleft()
            elif item.claim is not None and item.dropped != DROPPED_ON_FULL:
                self._inside.remove(item)  # dropped ones were removed when dropped

    def _free(self, item: Item) -> None:
        if item.holds_slot:
            item.holds_slot = False
            self._used -= 1
            if self._waiting:
                self._cond.notify()

    def close(self) -> None:
        """Refuse every later ``admit`` and wake everyone waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _take_claim(item: Item) -> bool:
    """Take the item's token if no stage holds it (``list.pop`` is atomic)."""
    assert item.claim is not None
    try:
        item.claim.pop()
    except IndexError:
        return False
    return True
