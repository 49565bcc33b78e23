"""PyStream's functional helpers: compose callables into one stage."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

__all__ = ["func_parallel_thread", "func_serial"]

_shared_pool: ThreadPoolExecutor | None = None
_shared_pool_lock = threading.Lock()


def func_serial(funcs: Sequence[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """One callable that runs ``funcs`` in order, each getting the previous one's output."""
    chain = list(funcs)

    def run_in_order(data: Any) -> Any:
        for func in chain:
            data = func(data)
        return data

    return run_in_order


def _default_pool() -> ThreadPoolExecutor:
    """The shared pool, created on first use (not at import) and shut down at exit."""
    global _shared_pool
    with _shared_pool_lock:
        if _shared_pool is None:
            _shared_pool = ThreadPoolExecutor(thread_name_prefix="pystream-functional")
            atexit.register(_shared_pool.shutdown, wait=False, cancel_futures=True)
        return _shared_pool


def func_parallel_thread(
    funcs: Sequence[Callable[[Any], Any]], executor: Executor | None = None
) -> Callable[[Any], Any]:
    """One callable that runs every func on the same input at once and returns the input.

    The funcs are expected to modify the input in place; their return values are ignored,
    but an exception raised by any of them is raised to the caller.
    """
    jobs = list(funcs)

    def run_together(data: Any) -> Any:
        pool = executor if executor is not None else _default_pool()
        futures = [pool.submit(func, data) for func in jobs]
        for future in futures:
            future.result()
        return data

    return run_together
