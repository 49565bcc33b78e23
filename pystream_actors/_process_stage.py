"""Running a stage in its own worker process, to take pure-Python work off the GIL.

Each ``ProcessStage`` owns one worker process (started with the ``spawn`` method, so no
actor thread is forked) holding its own copy of the user's stage. The stage actor's
thread hands items over and waits; ordering, failures and statistics stay with the actor.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ._errors import InvalidStage

_installed: Any = None  # the stage inside a worker process


def check_picklable(what: str, value: object) -> bytes:
    """Pickle ``value`` or raise ``InvalidStage`` saying how to make it picklable."""
    try:
        return pickle.dumps(value)
    except Exception as exc:
        raise InvalidStage(
            f"{what} cannot be sent to a worker process ({type(exc).__name__}: {exc}); "
            "define it at module level (not a lambda or closure) and keep unpicklable "
            "resources (sockets, cameras, locks) out of its attributes until setup()"
        ) from exc


def _install(payload: bytes, is_factory: bool) -> None:
    """Worker process start-up: die with the parent, build the stage, set it up."""
    global _installed
    _die_with_parent()
    stage = pickle.loads(payload)
    _installed = stage() if is_factory else stage
    setup = getattr(_installed, "setup", None)
    if callable(setup):
        setup()


def _die_with_parent() -> None:
    """On Linux, ask the kernel to end this process when the pipeline's process dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the parent is already gone
            os._exit(0)


def _call_installed(data: Any) -> Any:
    return _installed(data)


def _cleanup_installed() -> None:
    cleanup = getattr(_installed, "cleanup", None)
    if callable(cleanup):
        cleanup()


def _ping() -> int:
    return os.getpid()


class ProcessStage:
    """A stage that forwards each item to its own worker process and waits for the result."""

    def __init__(self, name: str, payload: bytes, is_factory: bool) -> None:
        self.name = name
        self._payload = payload
        self._is_factory = is_factory
        self._executor: ProcessPoolExecutor | None = None
        self.pid: int | None = None

    @classmethod
    def factory_for(cls, name: str, stage: object, factory: object) -> Callable[[], ProcessStage]:
        """A factory of process stages, after checking the stage can cross to a process."""
        source = factory if factory is not None else stage
        payload = check_picklable(f"stage {name!r}", source)
        is_factory = factory is not None
        return lambda: cls(name, payload, is_factory)

    def setup(self) -> None:
        """Start the worker process and wait until the stage is set up inside it."""
        self._executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_install,
            initargs=(self._payload, self._is_factory),
        )
        try:
            self.pid = self._executor.submit(_ping).result()
        except BrokenProcessPool as exc:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            raise RuntimeError(
                f"the worker process of stage {self.name!r} died while starting. Worker "
                "processes are spawned and import your main script: start the pipeline under "
                "`if __name__ == '__main__':`, and keep the stage importable by name"
            ) from exc

    def __call__(self, data: Any) -> Any:
        if self._executor is None:
            raise RuntimeError(f"process stage {self.name!r} used before setup()")
        return self._executor.submit(_call_installed, data).result()

    def cleanup(self) -> None:
        """Run the stage's cleanup in its process, then end the process."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            executor.submit(_cleanup_installed).result()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
