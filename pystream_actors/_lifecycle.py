"""Running pipelines, tracked by their handles, and their stop at interpreter exit.

A service may keep only a handle (``get_handle(name)``) and drop its ``Pipeline``; the
pipeline must still stop cleanly at exit: stage ``cleanup()`` on each stage's thread,
within a bounded time, and no worker process left to block the interpreter's own exit.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util  # noqa: F401 - its exit hook must be registered before ours
import threading
import time
from typing import TYPE_CHECKING

from ._process_stage import kill_worker_processes

if TYPE_CHECKING:
    from ._handle import PipelineHandle

logger = logging.getLogger("pystream_actors")

EXIT_TIMEOUT = 5.0
"""Seconds all running pipelines together get to stop when the interpreter exits."""

_live: set[PipelineHandle] = set()
_lock = threading.Lock()


def track(handle: PipelineHandle) -> None:
    """``handle`` runs a pipeline: keep it (strongly) until it stops."""
    with _lock:
        _live.add(handle)


def untrack(handle: PipelineHandle) -> None:
    with _lock:
        _live.discard(handle)


def running_handles() -> list[PipelineHandle]:
    """The handles of every pipeline still running in this process."""
    with _lock:
        return list(_live)


def stop_all_running(timeout: float = EXIT_TIMEOUT) -> None:
    """Stop every running pipeline (no drain), all within ``timeout`` seconds together."""
    deadline = time.monotonic() + timeout
    for handle in running_handles():
        try:
            handle.stop(drain=False, timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            logger.exception("stopping a pipeline failed")


def _at_exit() -> None:
    stop_all_running()
    kill_worker_processes()  # a process stage still in a call must not hold up exit


# Exit hooks run last-registered first: ours runs before multiprocessing's, which would
# otherwise wait without limit for a worker process still busy in a stage call.
atexit.register(_at_exit)
