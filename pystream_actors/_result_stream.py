"""Every output in input order, for readers of ``handle.results()``, in bounded memory."""

from __future__ import annotations

import collections
import threading
from typing import Any


class ResultStream:
    """A bounded buffer of outputs; when full the oldest unread output is dropped and counted.

    Buffering starts with the first reader (``subscribe``), so a pipeline nobody reads
    from this way holds no outputs at all. The coordinator writes and never waits.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"results_buffer must be at least 1, got {capacity}")
        self.capacity = capacity
        self.subscribed = False
        self.dropped = 0
        self._buffer: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    def subscribe(self) -> None:
        """Start buffering outputs from now on."""
        self.subscribed = True

    def put(self, value: Any) -> None:
        """Append one output (the coordinator's thread); drops the oldest when full."""
        with self._cond:
            if len(self._buffer) >= self.capacity:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(value)
            self._cond.notify()

    def get(self, timeout: float | None) -> tuple[bool, Any]:
        """(True, output) or (False, None) when none came within ``timeout`` or it closed."""
        with self._cond:
            if not self._buffer:
                self._cond.wait_for(lambda: bool(self._buffer) or self._closed, timeout)
            if self._buffer:
                return True, self._buffer.popleft()
            return False, None

    def close(self) -> None:
        """No more outputs will come: wake every reader."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
