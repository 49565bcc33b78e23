"""Asyncio coroutines woken from other threads: how the window and the result readers let
asyncio code wait without a thread, and without losing a cancel."""

from __future__ import annotations

import asyncio
import threading

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class Wakeups:
    """Coroutines waiting for a change that another thread makes.

    The owner calls ``register`` and ``wake_all`` while holding its own lock, so a wake-up
    cannot fall between a coroutine's check and its registration.
    """

    def __init__(self, lock: threading.Condition | threading.Lock) -> None:
        self._lock = lock
        self._waiters: list[Waiter] = []

    def __len__(self) -> int:
        return len(self._waiters)

    def register(self) -> Waiter:
        """A waiter for the running event loop (the caller holds the owner's lock)."""
        loop = asyncio.get_running_loop()
        waiter = (loop, loop.create_future())
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: Waiter, timeout: float | None) -> None:
        """Until woken or ``timeout``; a cancel propagates (the caller re-checks after)."""
        try:
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that lands
            # as the waiter is woken, and a cancelled caller must stay cancelled
            await asyncio.wait((waiter[1],), timeout=timeout)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def wake_all(self) -> None:
        """Wake every waiter, on its own loop (the caller holds the owner's lock)."""
        waiters, self._waiters = self._waiters, []
        for loop, woken in waiters:
            try:
                loop.call_soon_threadsafe(_set_if_pending, woken)
            except RuntimeError:  # that event loop is closed: nobody waits there any more
                pass


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
