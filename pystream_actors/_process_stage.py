"""Running a stage in its own worker process, to take pure-Python work off the GIL.

Each ``ProcessStage`` owns one worker process (started with the ``spawn`` method, so no
actor thread is forked) holding its own copy of the user's stage, and talks to it over a
private pipe: the stage actor's thread sends an item and waits for the answer. Ordering,
failures and statistics stay with the actor; the pipe keeps the round trip short (no
executor threads in between).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ._errors import InvalidStage

_STOP_TIMEOUT = 10.0  # seconds a worker process gets to clean up before it is killed


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


class WorkerError(Exception):
    """An exception raised inside a worker process that could not be sent back as is."""


class WorkerDied(RuntimeError):
    """The worker process ended without answering (crashed, killed, or failed to start)."""


def _serve(connection: Connection, payload: bytes, is_factory: bool) -> None:
    """The worker process: build and set up the stage, then answer calls until told to stop."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        stage = pickle.loads(payload)
        stage = stage() if is_factory else stage
        setup = getattr(stage, "setup", None)
        if callable(setup):
            setup()
    except BaseException as exc:  # reported to the parent, which raises it from setup()
        _answer(connection, False, exc)
        return
    _answer(connection, True, os.getpid())
    while True:
        try:
            command, data = connection.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if command == "stop":
            return
        try:
            if command == "call":
                _answer(connection, True, stage(data))
            else:  # "cleanup"
                cleanup = getattr(stage, "cleanup", None)
                _answer(connection, True, cleanup() if callable(cleanup) else None)
        except BaseException as exc:  # SystemExit in a stage fails the item, not the worker
            _answer(connection, False, exc)


def _answer(connection: Connection, ok: bool, value: Any) -> None:
    try:
        connection.send((ok, value))
    except Exception as exc:  # the result or the exception itself would not pickle
        if ok:
            detail = (
                f"the stage's output ({type(value).__name__}) cannot be pickled to come back "
                f"from the worker process: {_describe(exc)}; return plain data"
            )
        else:
            detail = f"{_describe(value)} (not picklable: {_describe(exc)})"
        connection.send((False, WorkerError(detail)))


def _describe(exc: BaseException) -> str:
    """``Type: message`` even when the exception's ``__str__`` raises."""
    try:
        return "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:
        return type(exc).__name__


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


_worker_stages: weakref.WeakSet[ProcessStage] = weakref.WeakSet()


def kill_worker_processes() -> None:
    """Kill every worker process still running (at interpreter exit, after the stop)."""
    for stage in list(_worker_stages):
        stage.kill()


class ProcessStage:
    """A stage that forwards each item to its own worker process and waits for the result."""

    def __init__(self, name: str, payload: bytes, is_factory: bool) -> None:
        _worker_stages.add(self)
        self.name = name
        self._payload = payload
        self._is_factory = is_factory
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
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
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve,
            args=(theirs, self._payload, self._is_factory),
            name=f"pystream-{self.name}",
            daemon=False,  # a stage may start processes of its own; cleanup() ends this one
        )
        process.start()
        theirs.close()
        self._process, self._connection = process, ours
        try:
            self.pid = self._request(None)
        except WorkerDied as exc:
            self._end(kill=True)
            raise RuntimeError(
                f"the worker process of stage {self.name!r} died while starting. Worker "
                "processes are spawned and import your main script: start the pipeline under "
                "`if __name__ == '__main__':`, and keep the stage importable by name"
            ) from exc
        except BaseException:
            self._end(kill=True)
            raise

    def __call__(self, data: Any) -> Any:
        return self._request(("call", data))

    def _request(self, message: tuple[str, Any] | None) -> Any:
        """Send ``message`` (None: just read the start-up answer) and return the reply."""
        connection = self._connection
        if connection is None:
            raise WorkerDied(f"the worker process of stage {self.name!r} is not running")
        try:
            if message is not None:
                connection.send(message)
            ok, value = connection.recv()
        except (EOFError, OSError) as exc:
            raise WorkerDied(f"the worker process of stage {self.name!r} died") from exc
        if not ok:
            raise value
        return value

    def cleanup(self) -> None:
        """Run the stage's cleanup in its process, then end the process."""
        if self._connection is None:
            return
        try:
            self._request(("cleanup", None))
        except WorkerDied:
            pass  # nothing left to clean up in a process that is gone
        finally:
            self._end(kill=False)

    def kill(self) -> None:
        """End the worker process now; a call waiting on it fails with ``WorkerDied``."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def _end(self, kill: bool) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            with contextlib.suppress(Exception):
                if not kill:
                    connection.send(("stop", None))
            connection.close()
        if process is not None:
            process.join(0 if kill else _STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(_STOP_TIMEOUT)
