"""A wake-up call for an actor at a given time: pykka has no timers.

One small thread per ``Sync`` that has a ``max_wait``. It sleeps until the earliest
time asked for, tells the actor ``Tick()``, and sleeps again until asked; it costs
nothing while no deadline is pending and stops with its actor.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

from ._messages import Tick


class Ticker:
    """Tells ``ref`` a ``Tick`` at (or just after) each time passed to ``wake_at``."""

    def __init__(self, ref: pykka.ActorRef[Any], name: str) -> None:
        self._ref = ref
        self._cond = threading.Condition(threading.Lock())
        self._due: float | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"pystream-ticker-{name}", daemon=True
        )
        self._thread.start()

    def wake_at(self, due: float) -> None:
        """Tick at ``due`` (``time.perf_counter()`` time) unless an earlier tick is due."""
        with self._cond:
            if self._due is None or due < self._due:
                self._due = due
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._due is None:
                    self._cond.wait()
                    continue
                delay = self._due - time.perf_counter()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                self._due = None
                try:
                    self._ref.tell(Tick())
                except pykka.ActorDeadError:
                    return

    def close(self) -> None:
        """Stop the thread and wait for it (it never runs user code, so it ends at once)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
