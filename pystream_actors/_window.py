"""The in-flight window: how many accepted items may be inside a pipeline at once."""

from __future__ import annotations

import threading


class InFlightWindow:
    """A counting gate shared by the handle (which admits) and the coordinator (which frees).

    Admission may wait (callers' threads only, never an actor's); freeing never blocks.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._cond = threading.Condition(threading.Lock())
        self._used = 0
        self._closed = False

    @property
    def used(self) -> int:
        """Items admitted and not yet freed."""
        return self._used

    def acquire(self, timeout: float | None) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds (``0`` = not at all, ``None`` = forever).

        Returns False if no slot came free in time or the window was closed.
        """
        with self._cond:
            if self._used >= self.capacity and timeout != 0.0 and not self._closed:
                self._cond.wait_for(lambda: self._used < self.capacity or self._closed, timeout)
            if self._closed or self._used >= self.capacity:
                return False
            self._used += 1
            return True

    def release(self, count: int = 1) -> None:
        """Free ``count`` slots and wake waiting submitters."""
        with self._cond:
            self._used -= count
            self._cond.notify(count)

    def close(self) -> None:
        """Refuse every later ``acquire`` and wake everyone waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
