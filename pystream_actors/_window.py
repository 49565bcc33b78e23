"""The in-flight window: how many accepted items may be inside a pipeline at once.

The handle admits through it (on the caller's thread, or awaiting in asyncio, the only
places that may wait) and the coordinator frees a slot when an item finishes. What
happens when it is full is the pipeline's ``on_full`` policy:

- ``"block"``: wait up to the timeout for a free slot, then refuse;
- ``"reject"``: refuse at once;
- ``"drop_oldest"``: accept at once and make room: first by releasing an item whose
  outcome is already known (it failed, or a deadline dropped it: it is on its way to be
  settled and holds no work), else by dropping the oldest item the first stage has not
  started, else the oldest one waiting between stages. An item a stage is working on
  right now, or one every stage has finished, is never dropped: when no other is left,
  the newest is still accepted and waits, so at most ``capacity + 1`` items whose outcome
  is still open are inside, provided ``capacity`` is at least the number of items the
  stages can work on at once (one per stage actor or worker).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Literal

from ._messages import DROPPED_ON_FULL, Item
from ._wakeups import Wakeups

OnFull = Literal["block", "reject", "drop_oldest"]
ON_FULL_POLICIES: tuple[OnFull, ...] = ("block", "reject", "drop_oldest")


class InFlightWindow:
    """A counting gate shared by the handle and the coordinator."""

    def __init__(self, capacity: int, on_full: OnFull = "block", stages: int = 1) -> None:
        self.capacity = capacity
        self.on_full = on_full
        self._stages = stages  # an item every stage has worked on is never dropped
        self._cond = threading.Condition(threading.Lock())
        self._used = 0
        self._closed = False
        self._inside: collections.deque[Item] = collections.deque()  # drop_oldest only
        self._waiting = 0  # submitters blocked in admit(): only then is a notify needed
        self._async_waiters = Wakeups(self._cond)
        self.dropped = 0

    @property
    def used(self) -> int:
        """Items admitted and not yet finished (or released with a known outcome)."""
        return self._used

    @property
    def closed(self) -> bool:
        return self._closed

    def admit(self, item: Item, timeout: float | None) -> bool:
        """Take a slot for ``item`` by the policy; False if refused or the window is closed.

        ``timeout`` only matters for ``"block"``: 0 = do not wait, None = wait for ever.
        """
        with self._cond:
            if self._used >= self.capacity and not self._closed:
                if self.on_full == "drop_oldest":
                    self._make_room()
                elif self.on_full == "block" and timeout != 0.0:
                    self._waiting += 1
                    try:
                        self._cond.wait_for(
                            lambda: self._used < self.capacity or self._closed, timeout
                        )
                    finally:
                        self._waiting -= 1
            return self._take_slot(item)

    async def admit_async(self, item: Item, timeout: float | None) -> bool:
        """``admit`` for asyncio: waits without a thread; cancelling it admits nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._used < self.capacity or self._closed or self.on_full != "block":
                    if self._used >= self.capacity and self.on_full == "drop_oldest":
                        self._make_room()
                    return self._take_slot(item)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                waiter = self._async_waiters.register()
            await self._async_waiters.wait(waiter, remaining)

    def _take_slot(self, item: Item) -> bool:
        if self._closed or (self._used >= self.capacity and self.on_full != "drop_oldest"):
            return False
        self._used += 1
        item.holds_slot = True
        if self.on_full == "drop_oldest":
            item.claim = [1]
            self._inside.append(item)
        return True

    def _make_room(self) -> None:
        """Release a settled item, else drop the oldest nobody works on (unstarted first)."""
        for victim in self._inside:
            if not victim.is_live:  # failed or deadline-dropped: only its settling is left
                self._release(victim)
                return
        for only_unstarted in (True, False):
            for victim in self._inside:
                if victim.started and only_unstarted:
                    continue
                if victim.hops >= self._stages:
                    continue  # finished: only the coordinator has yet to see it
                if not _take_claim(victim):
                    continue  # a stage is working on it right now
                if not victim.is_live:  # a stage settled it just before we took the claim
                    self._release(victim)
                    return
                victim.drop(DROPPED_ON_FULL)
                self._release(victim)
                self.dropped += 1
                return

    def _release(self, item: Item) -> None:
        self._inside.remove(item)
        self._free(item)

    def finish(self, item: Item) -> None:
        """``item`` left the pipeline: free its slot (once) and wake a waiting submitter."""
        with self._cond:
            if not item.holds_slot:
                return
            if item.claim is not None:
                if self._inside and self._inside[0] is item:
                    self._inside.popleft()
                else:
                    self._inside.remove(item)
            self._free(item)

    def _free(self, item: Item) -> None:
        if item.holds_slot:
            item.holds_slot = False
            self._used -= 1
            if self._waiting:
                self._cond.notify()
            if self._async_waiters:
                self._async_waiters.wake_all()

    def close(self) -> None:
        """Refuse every later ``admit`` and wake everyone waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._async_waiters.wake_all()


def _take_claim(item: Item) -> bool:
    """Take the item's token if no stage holds it (``list.pop`` is atomic); a parent forked
    at a junction only while none of its children is at work."""
    claim = item.claim
    if isinstance(claim, list):
        try:
            claim.pop()
        except IndexError:
            return False
        return True
    return claim is not None and claim.take_idle()
