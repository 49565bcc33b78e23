"""Regression tests: the pipeline's life has one owner, from start to interpreter exit.

Each test names the defect of issue 10 it pins (``#n``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pystream_actors as ps

ROOT = Path(__file__).resolve().parent.parent


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the repository importable."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def test_exit_with_only_the_handle_kept_runs_stage_cleanup() -> None:
    """#5: a service that keeps only get_handle(name) still gets stage cleanup() at exit."""
    done = run_script(
        """
        import gc
        import pystream_actors as ps

        class Closes(ps.Stage):
            def __call__(self, x):
                return x
            def cleanup(self):
                print("cleanup ran", flush=True)

        def start():
            pipeline = ps.Pipeline(name="svc")
            pipeline.add(Closes(), "Closes")
            pipeline.parallelize()

        start()
        gc.collect()
        print(ps.get_handle("svc").ask(5, timeout=30), flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "cleanup", "ran"]


def test_exit_with_a_process_stage_busy_in_a_long_call_is_prompt() -> None:
    """#5, #23: only a handle kept, a process stage 60 s into a call: the interpreter still
    exits within the exit grace (about 5 s), with status 0."""
    started = time.monotonic()
    done = run_script(
        """
        import pystream_actors as ps
        from tests import process_stages

        if __name__ == "__main__":
            def start():
                pipeline = ps.Pipeline(name="svc")
                pipeline.add(process_stages.sleep_seconds, "Sleep", executor="process")
                pipeline.parallelize()
            start()
            ps.get_handle("svc").tell(60)
            print("leaving", flush=True)
        """,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout
    assert time.monotonic() - started < 40  # 60 s without the fix; ~6 s with it


def test_mode_switch_keeps_setup_and_cleanup_on_the_stage_thread() -> None:
    """#6: parallelize() then serialize(): an sqlite connection opened in setup() works on
    the new thread, because setup() and cleanup() pair on the thread that calls the stage."""
    threads: list[str] = []

    class Store(ps.Stage):
        def setup(self) -> None:
            self.db = sqlite3.connect(":memory:")
            threads.append(f"setup {threading.current_thread().ident}")

        def __call__(self, x: int) -> int:
            threads.append(f"call {threading.current_thread().ident}")
            return int(self.db.execute("select ?", (x,)).fetchone()[0])

        def cleanup(self) -> None:
            self.db.close()
            threads.append(f"cleanup {threading.current_thread().ident}")

    pipeline = ps.Pipeline()
    pipeline.add(Store(), "Store")
    pipeline.parallelize()
    assert pipeline.handle.ask(1, timeout=30) == 1
    pipeline.serialize()
    assert pipeline.handle.ask(2, timeout=30) == 2
    pipeline.parallelize()
    assert pipeline.handle.ask(3, timeout=30) == 3
    pipeline.cleanup()
    assert [t.split()[0] for t in threads] == ["setup", "call", "cleanup"] * 3
    for run in range(3):  # each run's setup, call and cleanup on one thread
        assert len({t.split()[1] for t in threads[run * 3 : run * 3 + 3]}) == 1


def test_handle_stop_stops_the_input_loop_and_the_name() -> None:
    """#11: handle.stop() ends the input loop (the generator is not called again) and
    withdraws the name, like cleanup()."""
    calls = threading.Semaphore(0)
    count = [0]

    def camera() -> int:
        count[0] += 1
        calls.release()
        return count[0]

    pipeline = ps.Pipeline(camera, name="camera")
    pipeline.add(lambda x: x, "Show")
    pipeline.parallelize()
    pipeline.start_loop(period=0.001)
    assert calls.acquire(timeout=30)
    assert ps.get_handle("camera") is pipeline.handle
    assert pipeline.handle.stop()
    assert not [t for t in threading.enumerate() if t.name == "pystream-input-loop"]
    with pytest.raises(ps.PipelineNotFound):
        ps.get_handle("camera")
    assert pipeline.handle.state == "stopped"


def test_a_cancelled_asubmit_waiting_for_room_is_never_processed() -> None:
    """#12: cancelling asubmit while it waits for room withdraws the item; no executor
    thread is used to wait."""
    seen: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    def gate(x: int) -> int:
        seen.append(x)
        if x == 0:
            entered.set()
            assert release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gate, "Gate")

    async def scenario() -> None:
        first = asyncio.ensure_future(pipeline.handle.asubmit(0))
        assert await asyncio.to_thread(entered.wait, 30)
        waiting = asyncio.ensure_future(pipeline.handle.asubmit(1, timeout=30))
        runtime = pipeline.handle._runtime
        assert runtime is not None
        assert await until(lambda: bool(runtime.window._async_waiters))  # waits for room
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert await first == 0
        assert await pipeline.handle.asubmit(2, timeout=30) == 2

    with pipeline.parallelize(capacity=1):
        asyncio.run(scenario())
        assert pipeline.statistics().accepted == 2
    assert seen == [0, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("asyncio_")]


async def until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    """Let the event loop run until ``condition`` holds (True) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def test_results_are_from_now_on_for_each_reader() -> None:
    """#14: a new reader gets only outputs produced after it subscribed; two readers each
    get every later output."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Echo")
    with pipeline.parallelize():
        first = pipeline.handle.results(timeout=30)
        for i in range(3):
            pipeline.handle.ask(i, timeout=30)
        second = pipeline.handle.results(timeout=30)
        for i in range(3, 5):
            pipeline.handle.ask(i, timeout=30)
        assert [next(second) for _ in range(2)] == [3, 4]
        assert [next(first) for _ in range(5)] == [0, 1, 2, 3, 4]
        first.close()
        second.close()


def test_a_bad_argument_to_parallelize_leaves_the_running_pipeline_untouched() -> None:
    """#19: parallelize(capacity=0) on a running pipeline raises InvalidArgument naming the
    parameter, and the pipeline keeps running as it was."""
    cleaned: list[str] = []

    class Kept(ps.Stage):
        def __call__(self, x: int) -> int:
            return x

        def cleanup(self) -> None:
            cleaned.append("cleanup")

    pipeline = ps.Pipeline()
    pipeline.add(Kept(), "Kept")
    pipeline.parallelize()
    with pytest.raises(ps.InvalidArgument, match="capacity"):
        pipeline.parallelize(capacity=0)
    with pytest.raises(ps.InvalidArgument, match="on_full"):
        pipeline.serialize(on_full="sometimes")  # type: ignore[arg-type]
    assert pipeline.handle.state == "running"
    assert pipeline.mode == "parallel"
    assert pipeline.handle.ask(1, timeout=30) == 1
    assert cleaned == []
    pipeline.cleanup()
    assert cleaned == ["cleanup"]


def test_a_cancelled_aresults_read_loses_no_output_and_asyncio_run_returns() -> None:
    """#22: cancelling an aresults() read takes no output away; asyncio.run() returns even
    though the pipeline is not cleaned up inside it."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Echo")

    async def scenario() -> list[int]:
        reader = pipeline.handle.aresults(timeout=30)
        read = asyncio.ensure_future(reader.__anext__())
        subscription = reader._subscription  # type: ignore[attr-defined]
        assert await until(lambda: bool(subscription._async_waiters))  # the read waits
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        pipeline.handle.tell(1)
        pipeline.handle.tell(2)
        return [await reader.__anext__(), await reader.__anext__()]

    pipeline.parallelize()
    runner = threading.Thread(target=lambda: outputs.extend(asyncio.run(scenario())))
    outputs: list[int] = []
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    assert outputs == [1, 2]
    pipeline.cleanup()


def test_cleanup_wakes_a_thread_waiting_in_latest() -> None:
    """#22: a thread in latest(timeout=None) is woken by cleanup() and gets the default."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Echo")
    pipeline.parallelize()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(pipeline.handle.latest(None, "none")))
    reader.start()
    pipeline.cleanup()
    reader.join(30)
    assert not reader.is_alive()
    assert got == ["none"]


def test_ctrl_c_during_cleanup_then_cleanup_again_finishes_the_job() -> None:
    """#23: Ctrl-C while cleanup() waits leaves the pipeline "stopping" (not "stopped"); a
    second cleanup() finishes: stage cleanup runs and no thread is left."""
    done = run_script(
        """
        import os, signal, threading
        import pystream_actors as ps

        # Ctrl-C as at a terminal: a run of this suite as a background job (make pytest &)
        # leaves SIGINT ignored in its children, and Python then never raises KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

        release = threading.Event()
        entered = threading.Event()

        class SlowClose(ps.Stage):
            def __call__(self, x):
                return x
            def cleanup(self):
                entered.set()
                release.wait(30)
                print("cleanup ran", flush=True)

        pipeline = ps.Pipeline()
        pipeline.add(SlowClose(), "Slow")
        pipeline.parallelize()

        def interrupt():
            entered.wait(30)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        try:
            pipeline.cleanup()
        except KeyboardInterrupt:
            print("interrupted", pipeline.handle.state, flush=True)
        release.set()
        pipeline.cleanup()
        print("finally", pipeline.handle.state, flush=True)
        left = [t.name for t in threading.enumerate() if t.name.startswith("StageActor")]
        print("left", left, flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "interrupted stopping"
    assert "cleanup ran" in lines
    assert lines[-2:] == ["finally stopped", "left []"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_worker_processes_never_outlive_an_exit() -> None:
    """#5: after the interpreter exits, no worker process of its pipelines is left."""
    done = run_script(
        """
        import pystream_actors as ps
        from tests import process_stages

        if __name__ == "__main__":
            pipeline = ps.Pipeline()
            pipeline.add(process_stages.tag_with_pid, "Tag", executor="process", workers=2)
            pipeline.parallelize()
            print(pipeline.handle.ask(1, timeout=60)[1], flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_cancel_that_lands_with_the_wake_up_still_withdraws_the_item() -> None:
    """#12: cancelling asubmit in the same loop step as room comes free withdraws the item
    (asyncio.wait_for on 3.11 could swallow that cancel and admit it)."""
    from pystream_actors._messages import Item
    from pystream_actors._window import InFlightWindow

    async def scenario() -> int:
        window = InFlightWindow(1, "block")
        first = Item(0, None, 0.0)
        assert window.admit(first, 0.0)
        second = Item(1, None, 0.0)
        waiting = asyncio.ensure_future(window.admit_async(second, 30))
        assert await until(lambda: bool(window._async_waiters))
        window.finish(first)  # wakes the waiter...
        waiting.cancel()  # ...and the caller gives up in the same step
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return window.used

    assert asyncio.run(scenario()) == 0
