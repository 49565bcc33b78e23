"""Outputs in input order for ``handle.results()`` readers: one bounded buffer per reader.

Each reader subscribes and gets every output published from that moment on; a reader
that falls behind loses its oldest unread outputs (counted), never blocking the
coordinator. Readers wait on a condition (threads) or on an asyncio future woken from
the coordinator's thread (asyncio), so a cancelled asyncio read takes nothing away.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from ._wakeups import Wakeups

T = TypeVar("T")


class Subscription:
    """One reader's bounded buffer."""

    def __init__(self, capacity: int, hub: Broadcast) -> None:
        self.capacity = capacity
        self._hub = hub
        self._buffer: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._waiting = 0  # readers blocked in get(): only then is a notify needed
        self._async_waiters = Wakeups(self._cond)

    def put(self, value: Any) -> None:
        """Append one output (the coordinator's thread); drops the oldest when full."""
        with self._cond:
            if len(self._buffer) >= self.capacity:
                self._buffer.popleft()
                self._hub.dropped += 1
            self._buffer.append(value)
            if self._waiting:
                self._cond.notify()
            if self._async_waiters:
                self._async_waiters.wake_all()

    def get(self, timeout: float | None) -> tuple[bool, Any]:
        """(True, output) or (False, None) when none came within ``timeout`` or it closed."""
        with self._cond:
            if not self._buffer:
                self._waiting += 1
                try:
                    self._cond.wait_for(lambda: bool(self._buffer) or self._closed, timeout)
                finally:
                    self._waiting -= 1
            if self._buffer:
                return True, self._buffer.popleft()
            return False, None

    async def aget(self, timeout: float | None) -> tuple[bool, Any]:
        """``get`` for asyncio, without a thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._buffer:
                    return True, self._buffer.popleft()
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._closed or (remaining is not None and remaining <= 0):
                    return False, None
                waiter = self._async_waiters.register()
            await self._async_waiters.wait(waiter, remaining)

    def close(self) -> None:
        """No more outputs will come: wake the reader."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._async_waiters.wake_all()
        self._hub.unsubscribe(self)


class Broadcast:
    """Publishes each output to every current subscription; costs nothing without readers."""

    def __init__(self) -> None:
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0
        self.active = False
        """True while someone reads: the coordinator checks this before publishing."""

    def subscribe(self, capacity: int) -> Subscription:
        """A new reader's buffer, receiving every output published from now on."""
        subscription = Subscription(capacity, self)
        with self._lock:
            if self._closed:
                subscription._closed = True
            else:
                self._subscriptions.add(subscription)
                self.active = True
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)
            self.active = bool(self._subscriptions)

    def publish(self, value: Any) -> None:
        if not self.active:
            return
        with self._lock:
            subscriptions = list(self._subscriptions)
            self.active = bool(subscriptions)
        for subscription in subscriptions:
            subscription.put(value)

    def close(self) -> None:
        """The pipeline stopped for good: end every reader."""
        with self._lock:
            self._closed = True
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()


class Reader(Iterator[T], Generic[T]):
    """The iterator ``results()`` and ``dead_letters()`` return; ``close()`` unsubscribes."""

    def __init__(self, subscription: Subscription, timeout: float | None) -> None:
        self._subscription = subscription
        self._timeout = timeout

    def __next__(self) -> T:
        ok, value = self._subscription.get(self._timeout)
        if not ok:
            self.close()
            raise StopIteration
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop reading; outputs are no longer buffered for this reader."""
        self._subscription.close()

    def __enter__(self) -> Reader[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncReader(AsyncIterator[T], Generic[T]):
    """The async iterator ``aresults()`` returns; ``aclose()`` unsubscribes."""

    def __init__(self, subscription: Subscription, timeout: float | None) -> None:
        self._subscription = subscription
        self._timeout = timeout

    async def __anext__(self) -> T:
        ok, value = await self._subscription.aget(self._timeout)
        if not ok:
            self._subscription.close()
            raise StopAsyncIteration
        return value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop reading; outputs are no longer buffered for this reader."""
        self._subscription.close()
