"""The input loop behind ``start_loop``: a drift-free clock that feeds the pipeline."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("pystream_actors")


class InputLoop:
    """Calls ``push()`` at start + n x period; never sleeps past a stop request.

    When a push runs late the missed ticks are skipped and counted, so the clock keeps
    its phase instead of bursting to catch up.
    """

    def __init__(self, push: Callable[[], object], period: float) -> None:
        self._push = push
        self._period = period
        self._stop = threading.Event()
        self.ticks = 0
        self.missed_ticks = 0
        self._thread = threading.Thread(target=self._run, name="pystream-input-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            try:
                self._push()
            except BaseException:  # the input generator is user code: it never ends the loop
                logger.exception("input loop: pushing an item failed; the loop goes on")
            self.ticks += 1
            tick += 1
            now = time.monotonic()
            due = start + tick * self._period
            if now > due:
                late = int((now - due) / self._period)
                self.missed_ticks += late
                tick += late
                due = start + tick * self._period
            self._stop.wait(due - now if due > now else 0.0)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop and wait for its thread (a push in progress finishes first)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
