"""Scaling a stage: ordered worker replicas on threads, and stages in worker processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future
from typing import Any

import pytest

import pystream_actors as ps
from tests import process_stages


class Tagged(ps.Stage):
    """Each instance tags items with its own id; it waits a little to spread the work."""

    def __init__(self) -> None:
        self.never = threading.Event()

    def __call__(self, item: int) -> tuple[int, int]:
        self.never.wait(0.001)
        return item, id(self)

    def cleanup(self) -> None:
        pass


def results(futures: list[Future[Any]]) -> list[Any]:
    return [f.result(timeout=60) for f in futures]


def test_workers_keep_input_order_and_each_has_its_own_instance() -> None:
    """workers=4: outputs leave in input order; four instances did the work."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Decode")
    pipeline.add(Tagged, "Detect", workers=4)
    pipeline.add(lambda x: x, "Write")
    with pipeline.parallelize(capacity=32):
        outputs = results([pipeline.handle.submit(i) for i in range(400)])
        stats = pipeline.statistics()
    assert [number for number, _ in outputs] == list(range(400))
    assert len({instance for _, instance in outputs}) == 4
    assert stats.stage("Detect").processed == 400


def test_unordered_workers_deliver_everything() -> None:
    """ordered=False lets outputs out as they finish; none is lost or doubled."""

    def jitter(item: int) -> int:
        threading.Event().wait(random.random() / 500)
        return item

    pipeline = ps.Pipeline()
    pipeline.add(jitter, "Jitter", workers=3, ordered=False)
    with pipeline.parallelize(capacity=30):
        stream = pipeline.handle.results(timeout=30)
        futures = [pipeline.handle.submit(i) for i in range(300)]
        assert results(futures) == list(range(300))  # each future still gets its own item
        streamed = [next(stream) for _ in range(300)]
    assert sorted(streamed) == list(range(300))


def test_a_shared_stateful_instance_needs_consent() -> None:
    """One Stage instance for several threads is refused unless declared thread-safe."""
    pipeline = ps.Pipeline()
    with pytest.raises(ps.InvalidStage, match="thread_safe=True"):
        pipeline.add(Tagged(), "Detect", workers=2)
    pipeline.add(Tagged(), "Shared", workers=2, thread_safe=True)
    pipeline.add(lambda x: x, "Plain", workers=2)  # plain functions keep no state
    assert pipeline.stage_names == ["Shared", "Plain"]


def test_worker_failures_restart_that_worker_and_keep_order() -> None:
    """A random 10% of items fail under "restart" in a 3-worker stage: the rest stay in order."""
    failing = set(random.Random(5).sample(range(300), 30))

    class Picky(ps.Stage):
        def __call__(self, item: int) -> int:
            if item in failing:
                raise ValueError(item)
            return item

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(
        Picky, "Picky", workers=3, on_error="restart", restart_backoff=(0.0, 0.0), max_restarts=1000
    )
    with pipeline.parallelize(capacity=24):
        futures = [pipeline.handle.submit(i, timeout=60) for i in range(300)]
        ok, failed = [], []
        for i, future in enumerate(futures):
            try:
                ok.append(future.result(timeout=60))
            except ps.StageError:
                failed.append(i)
        assert pipeline.handle.ask(1000, timeout=30) == 1000  # after the last restart
        stats = pipeline.statistics().stage("Picky")
    assert failed == sorted(failing)
    assert ok == [i for i in range(300) if i not in failing]
    assert stats.failed == 30 and stats.processed == 271
    assert stats.restarts == 30


def test_runtime_control_of_a_pooled_stage_loses_nothing() -> None:
    """restart_stage / replace_stage / stop+start on a pooled stage keep every item in order."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "A")
    pipeline.add(lambda x: x, "Pool", workers=3)
    done = threading.Event()
    errors: list[BaseException] = []

    def operate() -> None:
        try:
            while not done.is_set():
                pipeline.handle.restart_stage("Pool")
                pipeline.handle.replace_stage("Pool", lambda x: x)
                pipeline.handle.stop_stage("Pool")
                pipeline.handle.start_stage("Pool")
        except BaseException as error:
            errors.append(error)

    with pipeline.parallelize(capacity=32):
        operator = threading.Thread(target=operate)
        operator.start()
        try:
            outputs = results([pipeline.handle.submit(i, timeout=60) for i in range(2000)])
        finally:
            done.set()
            operator.join(60)
    assert not errors
    assert outputs == list(range(2000))


def test_process_stage_runs_in_other_processes_in_order() -> None:
    """executor="process", workers=2: two worker processes, outputs in input order."""
    pipeline = ps.Pipeline()
    pipeline.add(process_stages.tag_with_pid, "Tag", executor="process", workers=2)
    with pipeline.parallelize(capacity=8):
        outputs = results([pipeline.handle.submit(i) for i in range(200)])
    assert [number for number, _ in outputs] == list(range(200))
    pids = {pid for _, pid in outputs}
    assert len(pids) == 2 and os.getpid() not in pids
    for pid in pids:  # the worker processes ended with the pipeline
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_process_stage_keeps_state_set_up_in_its_process() -> None:
    """A Stage class in a process is built and set up there, and keeps its state."""
    pipeline = ps.Pipeline()
    pipeline.add(process_stages.CountingStage, "Count", executor="process")
    with pipeline.parallelize():
        outputs = results([pipeline.handle.submit(i) for i in range(5)])
    assert [calls for _, calls, _ in outputs] == [1001, 1002, 1003, 1004, 1005]


def test_process_stage_errors_are_stage_errors() -> None:
    """An exception in the worker process reaches the item's future as a StageError."""
    pipeline = ps.Pipeline()
    pipeline.add(process_stages.fail_on_three, "Picky", executor="process")
    with pipeline.parallelize():
        futures = [pipeline.handle.submit(i) for i in range(6)]
        with pytest.raises(ps.StageError, match="Picky") as info:
            futures[3].result(timeout=60)
        assert isinstance(info.value.__cause__, ArithmeticError)
        assert [f.result(timeout=60) for i, f in enumerate(futures) if i != 3] == [0, 1, 2, 4, 5]


def test_unpicklable_stage_or_item_is_refused_clearly() -> None:
    """A lambda cannot go to a process: refused at add(); so is an unpicklable item at submit."""
    pipeline = ps.Pipeline()
    with pytest.raises(ps.InvalidStage, match="module level"):
        pipeline.add(lambda x: x, "Lambda", executor="process")
    pipeline.add(process_stages.tag_with_pid, "Tag", executor="process")
    with pipeline.parallelize():
        with pytest.raises(ps.InvalidItem, match="pickled"):
            pipeline.handle.submit(threading.Lock())
        assert pipeline.handle.ask(1, timeout=60)[0] == 1


def test_abandoned_process_pipeline_does_not_keep_the_program_alive() -> None:
    """A program that leaves a process-backed pipeline running still exits, and its workers end."""
    script = textwrap.dedent(
        """
        import pystream_actors as ps
        from tests import process_stages
        p = ps.Pipeline()
        p.add(process_stages.tag_with_pid, "Tag", executor="process", workers=2)
        p.parallelize()
        print(sorted({p.handle.ask(i, timeout=60)[1] for i in range(20)}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.strip().strip("[]").split(",")]
    assert all(_is_zombie_or_gone(pid) for pid in pids)


def test_a_saturated_pool_is_named_the_bottleneck() -> None:
    """Utilization of a pooled stage is the mean over its workers, not capped at 1/N."""

    def slow(x: int) -> int:
        threading.Event().wait(0.01)
        return x

    def fast(x: int) -> int:
        threading.Event().wait(0.001)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(slow, "Pool", workers=4)
    pipeline.add(fast, "Fast")
    with pipeline.parallelize(capacity=16):
        results([pipeline.handle.submit(i, timeout=60) for i in range(300)])
        stats = pipeline.statistics()
    assert stats.bottleneck == "Pool"
    assert stats.stage("Pool").utilization > stats.stage("Fast").utilization
    assert stats.stage("Pool").utilization > 0.3  # a cap at 1/N would read at most 0.25


def test_a_killed_worker_process_fails_its_item_and_is_restarted() -> None:
    """A worker process that dies mid-run is a StageError; "restart" brings a new process."""
    import signal

    pipeline = ps.Pipeline()
    pipeline.add(
        process_stages.tag_with_pid,
        "Tag",
        executor="process",
        on_error="restart",
        restart_backoff=(0.0, 0.0),
    )
    with pipeline.parallelize():
        _, first_pid = pipeline.handle.ask(1, timeout=60)
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(ps.StageError, match="died"):
            pipeline.handle.ask(2, timeout=60)
        number, second_pid = pipeline.handle.ask(3, timeout=60)
    assert number == 3 and second_pid != first_pid
    assert _is_zombie_or_gone(second_pid)
