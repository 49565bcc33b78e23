"""Regression tests: whatever user code raises fails one item, never a pipeline or another.

Each test names the defect of issue 10 it pins (``#n``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

import pystream_actors as ps
from tests import process_stages
from tests.conftest import our_threads

BASE_EXCEPTIONS: list[Callable[[], BaseException]] = [
    lambda: SystemExit(3),
    lambda: KeyboardInterrupt(),
    lambda: GeneratorExit(),
    lambda: asyncio.CancelledError(),
]


def bystander() -> ps.Pipeline:
    """An unrelated running pipeline that must not notice anything."""
    other = ps.Pipeline()
    other.add(lambda x: x + 1, "Other")
    return other.parallelize()


@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_a_base_exception_in_a_stage_fails_that_item_only(
    make: Callable[[], BaseException],
) -> None:
    """#3: a stage raising SystemExit, KeyboardInterrupt, GeneratorExit or CancelledError fails
    that item with a StageError chaining it; the next item and another pipeline go on."""
    other = bystander()

    def explode(x: int) -> int:
        if x == 1:
            raise make()
        return x

    pipeline = ps.Pipeline()
    pipeline.add(explode, "Boom")
    with pipeline.parallelize():
        futures = [pipeline.handle.submit(i) for i in range(3)]
        assert futures[0].result(timeout=30) == 0
        with pytest.raises(ps.StageError, match="Boom") as raised:
            futures[1].result(timeout=30)
        assert type(raised.value.__cause__) is type(make())
        assert futures[2].result(timeout=30) == 2
        assert pipeline.handle.state == "running"
    assert other.handle.state == "running"
    assert other.handle.ask(1, timeout=30) == 2
    other.cleanup()


def test_base_exceptions_in_setup_cleanup_and_callbacks_stay_contained() -> None:
    """#3, #4: SystemExit from setup() is a PipelineInitiationError; from cleanup() and an
    on_error callback it is logged; another pipeline never notices."""
    other = bystander()

    class ExitsInSetup(ps.Stage):
        def setup(self) -> None:
            raise SystemExit(1)

        def __call__(self, x: int) -> int:
            return x

        def cleanup(self) -> None:
            pass

    broken = ps.Pipeline()
    broken.add(ExitsInSetup(), "Setup")
    with pytest.raises(ps.PipelineInitiationError, match="SystemExit") as raised:
        broken.parallelize()
    assert isinstance(raised.value.__cause__, SystemExit)

    class ExitsInCleanup(ps.Stage):
        def __call__(self, x: int) -> int:
            if x < 0:
                raise ValueError(x)
            return x

        def cleanup(self) -> None:
            raise KeyboardInterrupt

    pipeline = ps.Pipeline()
    pipeline.add(ExitsInCleanup(), "Cleanup")
    pipeline.parallelize()

    def callback(error: ps.StageError) -> None:
        raise SystemExit(2)

    pipeline.handle.on_error(callback)
    with pytest.raises(ps.StageError):
        pipeline.handle.ask(-1, timeout=30)
    assert pipeline.handle.ask(5, timeout=30) == 5
    pipeline.cleanup()
    assert pipeline.handle.state == "stopped"
    assert other.handle.ask(1, timeout=30) == 2
    assert other.handle.state == "running"
    other.cleanup()


def test_a_hanging_setup_is_an_initiation_error_after_setup_timeout() -> None:
    """#4: a setup() that blocks fails parallelize() after setup_timeout; once setup()
    returns, its thread ends (and cleanup pairs with the late setup)."""
    release = threading.Event()
    events: list[str] = []

    class Hangs(ps.Stage):
        def setup(self) -> None:
            release.wait(30)
            events.append("setup")

        def __call__(self, x: int) -> int:
            return x

        def cleanup(self) -> None:
            events.append("cleanup")

    before = set(our_threads())
    pipeline = ps.Pipeline()
    pipeline.add(Hangs(), "Hangs")
    pipeline.add(lambda x: x, "Fine")
    with pytest.raises(ps.PipelineInitiationError, match=r"'Hangs' did not finish setup\(\)"):
        pipeline.parallelize(setup_timeout=0.2)
    assert not pipeline.handle.is_running
    release.set()
    for thread in set(our_threads()) - before:
        thread.join(30)
    assert set(our_threads()) <= before
    assert events == ["setup", "cleanup"]


def test_drop_oldest_stays_bounded_behind_a_fast_failing_stage() -> None:
    """#7: a fast failing stage in front of a busy one, capacity=2: failed items hold no
    slot, so at most capacity + 1 items whose outcome is open are inside; all settle."""
    entered = threading.Event()
    release = threading.Event()
    failing = threading.Semaphore(0)

    def fails_after_first(x: int) -> int:
        if x:
            failing.release()
            raise ValueError(x)
        return x

    def busy(x: int) -> int:
        entered.set()
        assert release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(fails_after_first, "Fails")
    pipeline.add(busy, "Busy")
    with pipeline.parallelize(capacity=2, on_full="drop_oldest"):
        futures = [pipeline.handle.submit(0)]
        assert entered.wait(30)
        most = 0
        for i in range(1, 60):
            futures.append(pipeline.handle.submit(i))
            assert failing.acquire(timeout=30)  # the fast stage failed it: paced, not raced
            most = max(most, pipeline.statistics().in_flight)
        assert most <= 3
        release.set()
        assert futures[0].result(timeout=30) == 0
        for future in futures[1:]:
            with pytest.raises(ps.StageError):
                future.result(timeout=30)
        assert pipeline.statistics().in_flight == 0


def test_every_future_resolves_when_stop_races_with_submitters() -> None:
    """#9: eight threads submit while stop(drain=False) runs: every future returned resolves
    (a stress run of the interleaving pinned exactly by the next test)."""
    for _ in range(15):
        for future in _submit_while_stopping(threads=8):
            try:
                future.result(timeout=10)
            except ps.PipelineTerminated:
                pass


def _submit_while_stopping(threads: int) -> list[Future[Any]]:
    """Start ``threads`` submitters, stop the pipeline under them; the futures they got."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x)
    pipeline.add(lambda x: x)
    pipeline.parallelize(capacity=64, on_full="drop_oldest")
    futures: list[Future[Any]] = []
    lock = threading.Lock()
    go = threading.Event()

    def submitter() -> None:
        go.wait(30)
        for i in range(300):
            try:
                future = pipeline.handle.submit(i)
            except (ps.PipelineTerminated, ps.PipelineUndefined):
                return
            with lock:
                futures.append(future)

    workers = [threading.Thread(target=submitter) for _ in range(threads)]
    for worker in workers:
        worker.start()
    go.set()
    pipeline.handle.stop(drain=False)
    for worker in workers:
        worker.join(30)
    return futures


def test_an_item_admitted_just_before_a_stop_is_settled_or_refused() -> None:
    """#9: a submitter paused between taking a window slot and handing the item on, while
    stop(drain=False) runs: it gets PipelineTerminated (no future), and the slot is freed."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "A")
    pipeline.parallelize(capacity=4)
    runtime = pipeline.handle._runtime
    assert runtime is not None
    admitted = threading.Event()
    resume = threading.Event()
    real_admit = runtime.window.admit

    def admit_then_pause(item: Any, timeout: float | None) -> bool:
        ok = real_admit(item, timeout)
        admitted.set()
        assert resume.wait(30)
        return ok

    runtime.window.admit = admit_then_pause  # type: ignore[method-assign]
    outcome: list[BaseException] = []

    def submit() -> None:
        try:
            pipeline.handle.submit(1)
        except ps.PyStreamError as error:
            outcome.append(error)

    submitter = threading.Thread(target=submit)
    submitter.start()
    assert admitted.wait(30)
    assert pipeline.handle.stop(drain=False, timeout=30)
    resume.set()
    submitter.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], ps.PipelineTerminated)
    assert runtime.window.used == 0


def test_waiting_for_room_when_the_stop_policy_terminates_raises_terminated() -> None:
    """#13: submitters blocked on a full pipeline when a stage's on_error="stop" terminates
    it get PipelineTerminated (never PipelineFull), and none is counted as rejected."""
    entered = threading.Event()
    release = threading.Event()

    def gate(x: int) -> int:
        if x == 0:
            entered.set()
            assert release.wait(30)
            raise RuntimeError("fatal")
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gate, "Gate", on_error="stop")
    pipeline.parallelize(capacity=1)
    runtime = pipeline.handle._runtime
    assert runtime is not None
    pipeline.handle.submit(0)
    assert entered.wait(30)
    outcome: list[object] = []

    def blocked_submit() -> None:
        try:
            outcome.append(pipeline.handle.submit(1, timeout=30))
        except ps.PyStreamError as error:
            outcome.append(error)

    waiters = [threading.Thread(target=blocked_submit) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    assert wait_until(lambda: runtime.window._waiting == 2)
    release.set()
    for waiter in waiters:
        waiter.join(30)
    assert len(outcome) == 2
    assert not any(isinstance(o, ps.PipelineFull) for o in outcome)
    assert any(isinstance(o, ps.PipelineTerminated) for o in outcome)
    assert pipeline.handle.rejected == 0
    pipeline.cleanup()


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        tick.wait(0.005)
    return True


class BadStr(Exception):
    """An exception whose message cannot even be formatted."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def raise_bad_str(x: int) -> int:
    raise BadStr


def test_an_exception_whose_str_raises_fails_the_item_only() -> None:
    """#16: a stage exception whose __str__ raises still fails just its item (thread stage)."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: raise_bad_str(x) if x == 1 else x, "Odd")
    with pipeline.parallelize():
        with pytest.raises(ps.StageError, match="BadStr") as raised:
            pipeline.handle.ask(1, timeout=30)
        assert isinstance(raised.value.__cause__, BadStr)
        assert pipeline.handle.ask(2, timeout=30) == 2
        assert pipeline.handle.status()["Odd"].state == "running"


def test_an_exception_whose_str_raises_in_a_process_stage_fails_the_item_only() -> None:
    """#16: the same from a process stage: the worker answers, the next item goes on."""
    pipeline = ps.Pipeline()
    pipeline.add(process_stages.raise_bad_str_on_one, "Odd", executor="process")
    with pipeline.parallelize():
        with pytest.raises(ps.StageError, match="Odd"):
            pipeline.handle.ask(1, timeout=60)
        assert pipeline.handle.ask(2, timeout=60) == 2
        assert pipeline.handle.status()["Odd"].state == "running"


def test_an_actor_stopped_from_outside_terminates_its_pipeline_visibly() -> None:
    """#3: an actor that dies outside the protocol settles what it held and the pipeline's
    state says terminated (never "running" with a dead actor)."""
    entered = threading.Event()
    release = threading.Event()

    def gate(x: int) -> int:
        if x == 0:
            entered.set()
            release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(gate, "Gate")
    pipeline.add(lambda x: x, "After")
    pipeline.parallelize(capacity=8)
    futures = [pipeline.handle.submit(i) for i in range(4)]
    assert entered.wait(30)
    runtime = pipeline.handle._runtime
    assert runtime is not None
    runtime.records[1].ref.stop(timeout=30)  # "After" dies from outside
    assert pipeline.handle.state == "terminated"
    release.set()
    for future in futures:
        with pytest.raises((ps.PipelineTerminated, ps.ItemDropped)):
            future.result(timeout=30)
    with pytest.raises(ps.PipelineTerminated):
        pipeline.handle.submit(9)
    pipeline.cleanup()
