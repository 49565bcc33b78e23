"""Supervision: failure policies, retries, restarts, runtime control and clean lifecycle."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future
from typing import Any

import pytest

import pystream_actors as ps
from pystream_actors._supervisor import MAX_QUEUED_HANDOVERS

FAILING = frozenset(random.Random(7).sample(range(300), 30))  # a random 10% of items


class Counter(ps.Stage):
    """A stateful stage that fails on the planned items and counts its own instances."""

    instances = 0

    def __init__(self) -> None:
        Counter.instances += 1
        self.instance = Counter.instances
        self.calls = 0
        self.cleaned = False

    def __call__(self, item: int) -> int:
        self.calls += 1
        if item in FAILING:
            raise ValueError(f"bad item {item}")
        return item * 2

    def cleanup(self) -> None:
        self.cleaned = True


def collect(futures: list[Future[Any]]) -> tuple[list[Any], list[int]]:
    """Outputs of the futures that succeeded, and indexes of those that raised StageError."""
    outputs, failed = [], []
    for index, future in enumerate(futures):
        try:
            outputs.append(future.result(timeout=60))
        except ps.StageError:
            failed.append(index)
    return outputs, failed


def test_skip_policy_fails_only_the_bad_items() -> None:
    """on_error='skip': the bad items fail, the stage keeps its state and takes the next."""
    stage = Counter()
    pipeline = ps.Pipeline()
    pipeline.add(stage, "Detect", on_error="skip")
    pipeline.add(lambda x: x + 1, "Write")
    with pipeline.parallelize():
        outputs, failed = collect([pipeline.handle.submit(i) for i in range(300)])
        status = pipeline.handle.status()
    assert failed == sorted(FAILING)
    assert outputs == [i * 2 + 1 for i in range(300) if i not in FAILING]
    assert stage.calls == 300  # one instance saw every item
    assert status["Detect"].restarts == 0


def test_restart_policy_replaces_the_instance_and_keeps_order() -> None:
    """on_error='restart': bad items fail, a fresh instance from the class takes over each time."""
    Counter.instances = 0
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Decode")
    pipeline.add(
        Counter, "Detect", on_error="restart", restart_backoff=(0.0, 0.0), max_restarts=1000
    )
    pipeline.add(lambda x: x + 1, "Write")
    with pipeline.parallelize(capacity=16):
        outputs, failed = collect([pipeline.handle.submit(i, timeout=60) for i in range(300)])
        # Item 299 failed last; one more item can only pass once its restart took over.
        assert pipeline.handle.ask(1000, timeout=30) == 2001
        stats = pipeline.statistics()
        status = pipeline.handle.status()
    assert failed == sorted(FAILING)
    assert outputs == [i * 2 + 1 for i in range(300) if i not in FAILING]
    assert stats.stage("Detect").restarts == len(FAILING)
    assert status["Detect"].restarts == len(FAILING)
    assert Counter.instances == 1 + len(FAILING)


def test_restart_of_an_instance_runs_cleanup_then_setup_again() -> None:
    """With only an instance given, a restart reuses it after cleanup() and setup()."""
    events: list[str] = []

    class Flaky(ps.Stage):
        def setup(self) -> None:
            events.append("setup")

        def __call__(self, item: int) -> int:
            if item == 3:
                raise RuntimeError("glitch")
            return item

        def cleanup(self) -> None:
            events.append("cleanup")

    pipeline = ps.Pipeline()
    pipeline.add(Flaky(), "Flaky", on_error="restart", restart_backoff=(0.0, 0.0))
    with pipeline.parallelize():
        outputs, failed = collect([pipeline.handle.submit(i) for i in range(10)])
    assert failed == [3]
    assert outputs == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert events == ["setup", "cleanup", "setup", "cleanup"]


def test_stop_policy_fails_every_pending_item_naming_the_stage() -> None:
    """on_error='stop': the pipeline stops; pending futures fail naming the stage."""
    release = threading.Event()

    def gate(x: int) -> int:
        if x == 1:
            assert release.wait(30)
        return x

    def breaker(x: int) -> int:
        if x == 0:
            raise RuntimeError("fatal")
        return x

    pipeline = ps.Pipeline()
    pipeline.add(breaker, "Breaker", on_error="stop")
    pipeline.add(gate, "Gate")
    pipeline.parallelize()
    futures = [pipeline.handle.submit(i) for i in range(5)]
    with pytest.raises(ps.StageError, match="Breaker"):
        futures[0].result(timeout=30)
    for future in futures[1:]:
        with pytest.raises(ps.PipelineTerminated, match="Breaker"):
            future.result(timeout=30)
    with pytest.raises(ps.PipelineTerminated, match="Breaker"):
        pipeline.handle.submit(99)
    assert pipeline.handle.state == "terminated"
    assert pipeline.handle.status()["Breaker"].state == "failed"
    release.set()
    pipeline.cleanup()
    assert pipeline.handle.state == "stopped"


def test_restarts_past_the_limit_escalate_to_stop() -> None:
    """More than max_restarts within restart_window turns "restart" into "stop"."""

    def always_fails(x: int) -> int:
        raise RuntimeError("broken sensor")

    pipeline = ps.Pipeline()
    pipeline.add(
        always_fails, "Sensor", on_error="restart", restart_backoff=(0.0, 0.0), max_restarts=2
    )
    pipeline.parallelize(capacity=1)
    outcomes: list[str] = []
    for i in range(10):
        try:
            pipeline.handle.ask(i, timeout=30)
        except ps.StageError:
            outcomes.append("failed")
        except ps.PipelineTerminated as error:
            assert "max_restarts=2" in str(error)
            outcomes.append("terminated")
            break
    assert outcomes[:3] == ["failed", "failed", "failed"]
    assert outcomes[-1] == "terminated"
    assert pipeline.handle.status()["Sensor"].restarts == 2
    pipeline.cleanup()


def test_retries_rerun_a_failing_item_before_giving_up() -> None:
    """retries=N re-runs the item; one that succeeds on a retry never reaches its future as an error."""
    attempts: dict[int, int] = {}

    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] < 2 or x == 5:
            raise TimeoutError("sensor busy")
        return x

    pipeline = ps.Pipeline()
    pipeline.add(flaky, "Sensor", retries=2)
    with pipeline.parallelize():
        outputs, failed = collect([pipeline.handle.submit(i) for i in range(8)])
    assert failed == [5]
    assert outputs == [0, 1, 2, 3, 4, 6, 7]
    assert attempts[5] == 3 and attempts[0] == 2


def test_errors_reach_callbacks_and_dead_letters_once(caplog: pytest.LogCaptureFixture) -> None:
    """Each failure is logged once, counted, and delivered with its item, stage and exception."""
    called: list[ps.StageError] = []
    pipeline = ps.Pipeline()
    pipeline.add(Counter(), "Detect")
    with pipeline.parallelize(), caplog.at_level(logging.WARNING, logger="pystream_actors"):
        pipeline.handle.on_error(called.append)  # registered while running: still counts
        letters = pipeline.handle.dead_letters(timeout=30)
        collect([pipeline.handle.submit(i) for i in range(300)])
        dead = [next(letters) for _ in FAILING]
        assert pipeline.statistics().stage("Detect").failed == len(FAILING)
    assert sorted(e.data for e in called) == sorted(FAILING)
    assert [e.data for e in dead] == sorted(FAILING)
    assert all(e.stage == "Detect" and isinstance(e.__cause__, ValueError) for e in dead)
    assert caplog.text.count("stage 'Detect' failed on item") == len(FAILING)


def test_stop_and_start_a_stage_while_items_wait() -> None:
    """A stopped stage holds items; started again it processes them first, in order."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x + 1, "A")
    pipeline.add(lambda x: x * 10, "B")
    with pipeline.parallelize(capacity=50):
        pipeline.handle.stop_stage("B")
        assert pipeline.handle.status()["B"].state == "stopped"
        futures = [pipeline.handle.submit(i) for i in range(30)]
        assert not any(f.done() for f in futures[-1:])
        pipeline.handle.start_stage("B")
        assert [f.result(timeout=30) for f in futures] == [(i + 1) * 10 for i in range(30)]
        assert pipeline.handle.status()["B"].state == "running"


def test_control_calls_while_items_flow_lose_nothing() -> None:
    """restart/replace/stop/start of stages under load: no item lost, duplicated or reordered."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "A")
    pipeline.add(lambda x: x, "B")
    pipeline.add(lambda x: x, "C")
    done = threading.Event()
    control_errors: list[BaseException] = []

    def operator() -> None:
        rng = random.Random(3)
        try:
            while not done.is_set():
                name = rng.choice(["A", "B", "C"])
                action = rng.choice(["restart", "replace", "pause"])
                if action == "restart":
                    pipeline.handle.restart_stage(name)
                elif action == "replace":
                    pipeline.handle.replace_stage(name, lambda x: x)
                else:
                    pipeline.handle.stop_stage(name)
                    pipeline.handle.start_stage(name)
        except BaseException as error:  # reported below
            control_errors.append(error)

    with pipeline.parallelize(capacity=32):
        control = threading.Thread(target=operator)
        control.start()
        try:
            futures = [pipeline.handle.submit(i, timeout=60) for i in range(3000)]
            outputs = [f.result(timeout=60) for f in futures]
            streamed_ok = pipeline.statistics().completed
        finally:
            done.set()
            control.join(60)
        restarts = sum(s.restarts for s in pipeline.handle.status().values())
    assert not control_errors
    assert outputs == list(range(3000))
    assert streamed_ok == 3000
    assert restarts > 0


def test_stop_with_drain_finishes_every_accepted_item() -> None:
    """stop(drain=True) with 1,000 accepted items: all 1,000 results arrive."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x + 1)
    pipeline.add(lambda x: x * 2)
    pipeline.parallelize(capacity=1000)
    futures = [pipeline.handle.submit(i) for i in range(1000)]
    assert pipeline.handle.stop(drain=True, timeout=60)
    assert [f.result(timeout=0) for f in futures] == [(i + 1) * 2 for i in range(1000)]


def test_stop_without_drain_fails_every_pending_future_clearly() -> None:
    """stop(drain=False) with 1,000 accepted items: every unfinished future fails at once."""
    release = threading.Event()

    def slow(x: int) -> int:
        release.wait(0.001)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(slow)
    pipeline.add(lambda x: x)
    pipeline.parallelize(capacity=1000)
    futures = [pipeline.handle.submit(i) for i in range(1000)]
    assert pipeline.handle.stop(drain=False, timeout=30)
    failed = 0
    for future in futures:
        assert future.done()
        if future.exception() is not None:
            assert isinstance(future.exception(), ps.PipelineTerminated)
            assert "stopped before the item finished" in str(future.exception())
            failed += 1
    assert failed > 0  # all that had not finished: far more than the few done in time
    pipeline.cleanup()


def test_a_hanging_stage_is_reported_not_waited_on_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """stop(timeout=...) returns False and names the stage whose thread would not end."""
    release = threading.Event()
    entered = threading.Event()

    def hang(x: int) -> int:
        entered.set()
        release.wait(60)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(hang, "Hang")
    pipeline.parallelize()
    pipeline.handle.submit(1)
    assert entered.wait(30)
    with caplog.at_level(logging.WARNING, logger="pystream_actors"):
        assert pipeline.handle.stop(drain=False, timeout=0.2) is False
    assert "StageActor-Hang did not stop" in caplog.text
    release.set()


def test_a_stage_that_fails_setup_on_restart_is_reported_failed() -> None:
    """A fresh instance whose setup() raises leaves the stage failed, then escalates."""
    made = 0

    class Camera(ps.Stage):
        def __init__(self) -> None:
            nonlocal made
            made += 1
            self.broken = made > 1

        def setup(self) -> None:
            if self.broken:
                raise OSError("camera unplugged")

        def __call__(self, x: int) -> int:
            if x == 0:
                raise RuntimeError("first frame corrupt")
            return x

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(Camera, "Camera", on_error="restart", restart_backoff=(0.0, 0.0), max_restarts=3)
    pipeline.parallelize(capacity=1)
    with pytest.raises(ps.StageError):
        pipeline.handle.ask(0, timeout=30)
    outcomes = []
    for i in range(1, 10):
        try:
            pipeline.handle.ask(i, timeout=30)
            outcomes.append("ok")
        except ps.StageError as error:
            assert isinstance(error.__cause__, OSError)
            outcomes.append("failed")
        except ps.PipelineTerminated:
            outcomes.append("terminated")
            break
    assert "ok" not in outcomes
    assert outcomes[-1] == "terminated"
    pipeline.cleanup()


def test_process_exits_promptly_with_a_pipeline_still_running() -> None:
    """A script that never cleans up its running pipeline still exits, with status 0."""
    script = textwrap.dedent(
        """
        import threading
        import pystream_actors as ps
        never = threading.Event()
        p = ps.Pipeline()
        p.add(lambda x: never.wait(0.01) or x, "Slow")
        p.add(lambda x: x, "Fast")
        p.parallelize(capacity=100)
        for i in range(100):
            p.handle.tell(i)
        print("leaving")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout
    assert "Traceback" not in done.stderr


def test_replace_stage_with_a_factory_builds_fresh_instances() -> None:
    """replace_stage(name, factory=...) uses the factory now and for later restarts."""
    made: list[int] = []

    class Plus(ps.Stage):
        def __init__(self, amount: int) -> None:
            self.amount = amount
            made.append(amount)

        def __call__(self, x: int) -> int:
            return x + self.amount

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(Plus(1), "Plus")
    with pipeline.parallelize():
        assert pipeline.handle.ask(1, timeout=30) == 2
        pipeline.handle.replace_stage("Plus", factory=lambda: Plus(10))
        assert pipeline.handle.ask(1, timeout=30) == 11
        pipeline.handle.restart_stage("Plus")
        assert pipeline.handle.ask(1, timeout=30) == 11
    assert made == [1, 10, 10]


def test_control_calls_queue_behind_a_busy_stage_call_and_lose_nothing() -> None:
    """While the old actor is stuck in a stage call, control calls return False and queue in
    order; past the queue limit one is refused with StageBusy; once the call returns, every
    item comes out, in order, and the stage runs."""
    release = threading.Event()
    entered = threading.Event()

    def sticky(x: int) -> int:
        if x == 0:
            entered.set()
            assert release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(sticky, "Sticky")
    with pipeline.parallelize(capacity=40):
        futures = [pipeline.handle.submit(i) for i in range(10)]
        assert entered.wait(30)
        assert pipeline.handle.restart_stage("Sticky", timeout=0.05) is False
        assert pipeline.handle.status()["Sticky"].state == "restarting"
        futures += [pipeline.handle.submit(i) for i in range(10, 15)]
        assert pipeline.handle.stop_stage("Sticky", timeout=0.05) is False
        futures += [pipeline.handle.submit(i) for i in range(15, 20)]
        for _ in range(MAX_QUEUED_HANDOVERS - 1):
            assert pipeline.handle.start_stage("Sticky", timeout=0.05) is False
            assert pipeline.handle.stop_stage("Sticky", timeout=0.05) is False
        with pytest.raises(ps.StageBusy, match="Sticky"):
            pipeline.handle.start_stage("Sticky", timeout=0.05)
        restarts = pipeline.handle.status()["Sticky"].restarts
        with pytest.raises(ps.StageBusy, match="Sticky"):
            pipeline.handle.restart_stage("Sticky", timeout=0.05)
        assert pipeline.handle.status()["Sticky"].restarts == restarts  # refused: not counted
        assert not any(f.done() for f in futures)
        release.set()
        assert pipeline.handle.start_stage("Sticky", timeout=30) is True
        futures += [pipeline.handle.submit(i) for i in range(20, 30)]
        assert [f.result(timeout=30) for f in futures] == list(range(30))
        assert pipeline.handle.status()["Sticky"].state == "running"
