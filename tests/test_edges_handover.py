"""Regression tests: runtime control at the edges never loses, duplicates or reorders an item.

Each test names the defect of issue 10 it pins (``#n``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest

import pystream_actors as ps
from tests import process_stages
from tests.conftest import our_threads
from tests.test_edges_failures import wait_until


def outcomes(futures: list[Future[Any]], timeout: float = 30) -> list[Any]:
    """Each future's result, or the exception it raised (waits up to ``timeout`` each)."""
    settled: list[Any] = []
    for future in futures:
        try:
            settled.append(future.result(timeout=timeout))
        except ps.PyStreamError as error:
            settled.append(error)
    return settled


class Gate:
    """A stage that blocks on item ``hold`` until released; records what it saw."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, x: int) -> int:
        if x == self.hold:
            self.entered.set()
            assert self.release.wait(30)
        return x


def test_restart_downstream_while_upstream_hands_over_from_a_busy_call() -> None:
    """#1: A stuck mid-call, restart A (returns early), then restart B: when the old A
    finishes, its items reach the new B; every future resolves, in order."""
    gate = Gate(hold=0)
    pipeline = ps.Pipeline()
    pipeline.add(gate, "A")
    pipeline.add(lambda x: x * 10, "B")
    with pipeline.parallelize(capacity=32):
        futures = [pipeline.handle.submit(i) for i in range(10)]
        assert gate.entered.wait(30)
        assert pipeline.handle.restart_stage("A", timeout=0.05) is False
        assert pipeline.handle.restart_stage("B", timeout=0.05) is False  # B waits for A
        futures += [pipeline.handle.submit(i) for i in range(10, 20)]
        gate.release.set()
        assert outcomes(futures, timeout=10) == [i * 10 for i in range(20)]
        assert pipeline.statistics().in_flight == 0
        assert pipeline.handle.restart_stage("B", timeout=30) is True
        assert pipeline.handle.ask(7, timeout=30) == 70


def test_pool_restarted_during_a_worker_back_off_keeps_every_item() -> None:
    """#2: a worker fails under "restart"; restart_stage on the pool during its back-off,
    while the new pool still waits for the old one: the worker replacement goes to the
    pool that asked (now gone), never to the waiting new pool; nothing is lost."""
    failed_once = threading.Event()
    release = threading.Event()

    class Flaky(ps.Stage):
        def __call__(self, x: int) -> int:
            if x == 0:
                assert release.wait(30)
            if x == 1 and not failed_once.is_set():
                failed_once.set()
                raise RuntimeError("glitch")
            return x

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(
        Flaky, "Pool", workers=2, on_error="restart", restart_backoff=(0.2, 0.2), max_restarts=10
    )
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(2)]
        with pytest.raises(ps.StageError):
            futures[1].result(timeout=30)
        assert pipeline.handle.restart_stage("Pool", timeout=0.05) is False  # item 0 is stuck
        futures += [pipeline.handle.submit(i) for i in range(2, 10)]
        with pytest.raises(TimeoutError):
            futures[0].result(timeout=1.0)  # the 0.2 s back-off ends meanwhile
        release.set()
        assert futures[0].result(timeout=10) == 0
        assert outcomes(futures[2:], timeout=10) == list(range(2, 10))
        assert pipeline.handle.ask(99, timeout=30) == 99
        assert pipeline.handle.status()["Pool"].state == "running"


def test_stop_stage_during_a_failure_back_off_is_not_undone() -> None:
    """#8: stop_stage made during a restart back-off holds: the stage stays stopped and
    processes nothing until start_stage."""
    seen: list[int] = []

    def fails_on_zero(x: int) -> int:
        seen.append(x)
        if x == 0:
            raise RuntimeError("boom")
        return x

    pipeline = ps.Pipeline()
    pipeline.add(fails_on_zero, "A", on_error="restart", restart_backoff=(0.3, 0.3))
    with pipeline.parallelize(capacity=8):
        with pytest.raises(ps.StageError):
            pipeline.handle.ask(0, timeout=30)
        assert pipeline.handle.stop_stage("A", timeout=30) is True
        later = pipeline.handle.submit(1)
        with pytest.raises(TimeoutError):
            later.result(timeout=1.0)  # well past the 0.3 s back-off: still stopped
        assert pipeline.handle.status()["A"].state == "stopped"
        assert seen == [0]
        assert pipeline.handle.start_stage("A", timeout=30) is True
        assert later.result(timeout=30) == 1


def test_control_call_with_zero_timeout_leaks_nothing() -> None:
    """#10: restart_stage(timeout=0) raises no pykka error and leaves no thread."""
    before = set(our_threads())
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x + 1, "A")
    pipeline.parallelize()
    for _ in range(5):
        try:  # not waiting at all: the calls may outrun the hand-overs
            pipeline.handle.restart_stage("A", timeout=0)
        except ps.StageBusy:
            pass
    assert pipeline.handle.ask(1, timeout=30) == 2
    pipeline.cleanup()
    assert set(our_threads()) <= before


def test_a_worker_factory_failing_for_a_later_worker_is_an_initiation_error() -> None:
    """#10: a factory that fails for the second worker: PipelineInitiationError, no thread."""
    made = 0

    def factory() -> Any:
        nonlocal made
        made += 1
        if made == 2:
            raise OSError("second camera missing")
        return lambda x: x

    before = set(our_threads())
    pipeline = ps.Pipeline()
    pipeline.add(factory=factory, name="Pool", workers=3)
    with pytest.raises(ps.PipelineInitiationError, match="Pool"):
        pipeline.parallelize()
    assert set(our_threads()) <= before
    assert not pipeline.handle.is_running


def test_cleanup_with_a_stopped_stage_returns_and_settles_its_items() -> None:
    """#17: stop_stage; submit; cleanup() returns, the held item fails naming the stage."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "A")
    pipeline.add(lambda x: x, "B")
    pipeline.parallelize()
    pipeline.handle.stop_stage("B")
    future = pipeline.handle.submit(1)
    cleaner = threading.Thread(target=pipeline.cleanup)
    cleaner.start()
    cleaner.join(30)
    assert not cleaner.is_alive()
    with pytest.raises(ps.ItemDropped, match="'B' was stopped"):
        future.result(timeout=0)


def test_rebuild_keeps_the_replacement_and_cleans_it_up() -> None:
    """#18: a rebuild in the other mode keeps replace_stage's stage; its cleanup runs."""
    events: list[str] = []

    class Tagged(ps.Stage):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def setup(self) -> None:
            events.append(f"setup {self.tag}")

        def __call__(self, x: int) -> str:
            return f"{self.tag}{x}"

        def cleanup(self) -> None:
            events.append(f"cleanup {self.tag}")

    pipeline = ps.Pipeline()
    pipeline.add(Tagged("old"), "S")
    pipeline.parallelize()
    pipeline.handle.replace_stage("S", Tagged("new"))
    assert pipeline.handle.ask(1, timeout=30) == "new1"
    pipeline.serialize()
    assert pipeline.handle.ask(2, timeout=30) == "new2"
    pipeline.cleanup()
    assert events == [
        "setup old",
        "cleanup old",
        "setup new",
        "cleanup new",  # the rebuild: cleaned on the old thread...
        "setup new",  # ...set up on the new one
        "cleanup new",
    ]


def test_readers_keep_reading_across_a_rebuild() -> None:
    """#18: results() and dead_letters() readers go on after a rebuild in the other mode."""

    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(odd_fails, "S")
    pipeline.parallelize()
    results = pipeline.handle.results(timeout=30)
    letters = pipeline.handle.dead_letters(timeout=30)
    pipeline.handle.submit(0)
    pipeline.handle.submit(1)
    assert next(results) == 0
    assert next(letters).data == 1
    pipeline.serialize()
    pipeline.handle.submit(2)
    pipeline.handle.submit(3)
    assert next(results) == 2
    assert next(letters).data == 3
    pipeline.cleanup()
    assert list(results) == []  # the final stop ends the reader


def test_a_killed_worker_process_is_replaced_under_skip() -> None:
    """#20: a worker process killed under on_error="skip" fails its item, then is replaced."""
    import os
    import signal

    pipeline = ps.Pipeline()
    pipeline.add(process_stages.tag_with_pid, "Tag", executor="process")
    with pipeline.parallelize():
        _, pid = pipeline.handle.ask(0, timeout=60)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ps.StageError, match="died"):
            pipeline.handle.ask(1, timeout=60)
        number, new_pid = pipeline.handle.ask(2, timeout=60)
        assert number == 2 and new_pid != pid
        assert pipeline.handle.status()["Tag"].state == "running"


def test_workers_set_up_exactly_one_instance_each() -> None:
    """#21: workers=N sets up N instances (not N+1), and cleans up the same N."""
    counts = {"made": 0, "setup": 0, "cleanup": 0}
    lock = threading.Lock()

    class Counted(ps.Stage):
        def __init__(self) -> None:
            with lock:
                counts["made"] += 1

        def setup(self) -> None:
            with lock:
                counts["setup"] += 1

        def __call__(self, x: int) -> int:
            return x

        def cleanup(self) -> None:
            with lock:
                counts["cleanup"] += 1

    pipeline = ps.Pipeline()
    pipeline.add(Counted, "Pool", workers=3)
    with pipeline.parallelize():
        assert pipeline.handle.ask(1, timeout=30) == 1
    assert counts == {"made": 3, "setup": 3, "cleanup": 3}


def test_process_workers_start_exactly_n_processes() -> None:
    """#21: executor="process", workers=2 starts two worker processes, not three."""
    import multiprocessing

    pipeline = ps.Pipeline()
    pipeline.add(process_stages.tag_with_pid, "Tag", executor="process", workers=2)
    with pipeline.parallelize():
        workers = [p for p in multiprocessing.active_children() if p.name == "pystream-Tag"]
        assert len(workers) == 2


def test_an_item_dropped_while_a_failed_worker_holds_it_returns_to_its_pool() -> None:
    """Found by the stateful test: under drop_oldest, the window drops an item a failed
    worker holds for its successor; the successor gives it back to the pool (never straight
    home), so the pool's ordered merge does not wait for it for ever."""
    failed = threading.Event()

    class FailsOnce(ps.Stage):
        def __call__(self, x: int) -> int:
            if x == 0 and not failed.is_set():
                failed.set()
                raise RuntimeError("glitch")
            return x

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(
        FailsOnce, "Pool", workers=2, on_error="restart", restart_backoff=(0.3, 0.3)
    )  # one worker: 0 fails, and 1 lands on that worker, held for its successor
    with pipeline.parallelize(capacity=4, on_full="drop_oldest"):
        with pytest.raises(ps.StageError):
            pipeline.handle.ask(0, timeout=30)  # worker 0 now holds what it gets for 0.3 s
        futures = [pipeline.handle.submit(1)]  # to worker 0 (least busy): held
        runtime = pipeline.handle._runtime
        assert runtime is not None
        pool: Any = runtime.records[0].ref._actor_weakref()  # white-box: item 1 given out
        assert wait_until(lambda: bool(pool._in_work))
        futures += [pipeline.handle.submit(i) for i in range(2, 10)]  # the window drops 1
        settled = outcomes(futures, timeout=30)
        assert isinstance(settled[0], ps.ItemDropped)
        assert pipeline.handle.ask(99, timeout=30) == 99
        assert pipeline.statistics().in_flight == 0


@pytest.mark.parametrize("control", ["restart", "stop_then_start"])
def test_a_pool_handing_over_replaces_its_failed_workers_first(control: str) -> None:
    """Found by the stateful test: a worker failed under "restart" holds what it gets until
    replaced; if the pool itself is restarted, or stopped and started, before the supervisor
    replaced that worker, the pool replaces it while handing over, so its items are
    processed (in order) instead of stranding the hand-over."""
    failed = threading.Event()

    class FailsOnce(ps.Stage):
        def __call__(self, x: int) -> int:
            if x == 0 and not failed.is_set():
                failed.set()
                raise RuntimeError("glitch")
            return x

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(FailsOnce, "Pool", workers=2, on_error="restart", restart_backoff=(30.0, 30.0))
    with pipeline.parallelize(capacity=16):
        with pytest.raises(ps.StageError):
            pipeline.handle.ask(0, timeout=30)  # worker 0 holds what it gets for 30 s
        futures = [pipeline.handle.submit(i) for i in range(1, 11)]
        if control == "restart":
            assert pipeline.handle.restart_stage("Pool", timeout=30) is True
        else:
            assert pipeline.handle.stop_stage("Pool", timeout=30) is True
            assert pipeline.handle.start_stage("Pool", timeout=30) is True
        assert outcomes(futures, timeout=30) == list(range(1, 11))
        assert pipeline.handle.status()["Pool"].state == "running"


def test_a_failed_worker_holding_nothing_is_not_set_up_again_at_hand_over() -> None:
    """Found by the stateful test: a pool handing over while a failed worker holds nothing
    retires it instead of replacing it (a replacement retired while it waited could still
    be set up by a late Resume, with no cleanup to pair with it)."""
    instances: list[Any] = []
    failed = threading.Event()

    class Counted(ps.Stage):
        def __init__(self) -> None:
            self.setups = self.cleanups = 0
            instances.append(self)

        def setup(self) -> None:
            self.setups += 1

        def __call__(self, x: int) -> int:
            if x == 0 and not failed.is_set():
                failed.set()
                raise RuntimeError("glitch")
            return x

        def cleanup(self) -> None:
            self.cleanups += 1

    pipeline = ps.Pipeline()
    pipeline.add(Counted, "Pool", workers=2, on_error="restart", restart_backoff=(30.0, 30.0))
    with pipeline.parallelize():
        with pytest.raises(ps.StageError):
            pipeline.handle.ask(0, timeout=30)
        assert pipeline.handle.restart_stage("Pool", timeout=30) is True
        assert pipeline.handle.ask(1, timeout=30) == 1
    assert len(instances) == 4  # 2 + 2 workers: the failed one, holding nothing, is not replaced
    assert [(i.setups, i.cleanups) for i in instances] == [(1, 1)] * 4


def test_drain_with_a_stopped_pool_settles_what_its_failed_workers_hold() -> None:
    """Found by the stateful test: a stopped pool whose failed worker holds items (its
    replacement waits out a back-off): cleanup() drops those items too, naming the stage."""
    failed = threading.Event()

    class FailsOnce(ps.Stage):
        def __call__(self, x: int) -> int:
            if x == 0 and not failed.is_set():
                failed.set()
                raise RuntimeError("glitch")
            return x

        def cleanup(self) -> None:
            pass

    pipeline = ps.Pipeline()
    pipeline.add(FailsOnce, "Pool", workers=2, on_error="restart", restart_backoff=(30.0, 30.0))
    pipeline.parallelize(capacity=8)
    with pytest.raises(ps.StageError):
        pipeline.handle.ask(0, timeout=30)  # worker 0 now holds what it gets
    futures = [pipeline.handle.submit(i) for i in range(1, 5)]  # some land on worker 0
    runtime = pipeline.handle._runtime
    assert runtime is not None
    pool: Any = runtime.records[0].ref._actor_weakref()
    assert wait_until(lambda: pool._load[0] > 0)
    assert pipeline.handle.stop_stage("Pool", timeout=30) is True
    cleaner = threading.Thread(target=pipeline.cleanup)
    cleaner.start()
    cleaner.join(30)
    assert not cleaner.is_alive()
    settled = outcomes(futures, timeout=0)
    assert any(isinstance(s, ps.ItemDropped) and "'Pool' was stopped" in str(s) for s in settled)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_successor_retired_while_it_waits_cleans_up_what_a_late_resume_sets_up(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Found by the stateful test ("Unpaired: B: cleaned up on thread StageActor-B@..., set
    up on thread StageActor-B@..."): a rebuild while a replacement still waits for its
    predecessor retires the waiting successor with ``Retire()`` (no ``then_stop``: the
    runtime stops it next). A Resume landing after that Retire but before the stop used
    to set the new stage up on the successor's thread with no cleanup there; the slot
    stayed "set up", so the next runtime's actor skipped setup(), called the stage and
    cleaned it up on its own thread. Now the waiting successor keeps the Retire for after
    its take-over. A pool (workers=2, one shared thread-safe instance) also set the
    instance up and then crashed: its workers could not be spawned any more.

    The order (Retire, Resume, stop) is forced: the old stage's cleanup() waits until the
    runtime's stop has sent its Retires (it waits in ``stop_all``), and ``stop_all`` waits
    for the old actor's thread to end (its Resume is queued) before it stops the actors;
    the new stage's first setup() returns only after that (the pool's spawns are refused).
    """
    from pystream_actors._actors import ActorGroup

    lock = threading.Lock()
    events: list[tuple[str, str, threading.Thread]] = []
    entered = threading.Event()
    release = threading.Event()
    in_old_cleanup = threading.Event()
    old_cleanup_may_return = threading.Event()
    stopped_all = threading.Event()
    old_threads: list[threading.Thread] = []

    class Tagged(ps.Stage):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def note(self, what: str) -> None:
            with lock:
                events.append((self.tag, what, threading.current_thread()))

        def setup(self) -> None:
            self.note("setup")
            if self.tag == "new" and not stopped_all.is_set():
                assert stopped_all.wait(30)

        def __call__(self, x: int) -> str:
            self.note("call")
            if self.tag == "old" and x == 0:
                entered.set()
                assert release.wait(30)
            return f"{self.tag}{x}"

        def cleanup(self) -> None:
            self.note("cleanup")
            if self.tag == "old" and not old_threads:
                old_threads.append(threading.current_thread())
                in_old_cleanup.set()
                assert old_cleanup_may_return.wait(30)

    original_stop_all = ActorGroup.stop_all

    def stop_all(group: ActorGroup) -> None:
        if stopped_all.is_set():
            original_stop_all(group)
            return
        # the old runtime's stop, its Retires sent: let the old actor hand over
        assert in_old_cleanup.wait(30)
        old_cleanup_may_return.set()
        old_threads[0].join(30)  # it has told the successor Resume
        assert not old_threads[0].is_alive()
        original_stop_all(group)
        stopped_all.set()

    monkeypatch.setattr(ActorGroup, "stop_all", stop_all)

    pipeline = ps.Pipeline()
    pipeline.add(Tagged("old"), "S", workers=workers, thread_safe=True)
    pipeline.parallelize()
    try:
        stuck = pipeline.handle.submit(0)
        assert entered.wait(30)
        assert pipeline.handle.replace_stage("S", Tagged("new"), timeout=0.0) is False
        rebuild = threading.Thread(target=pipeline.serialize)
        rebuild.start()  # drains: waits for item 0
        release.set()
        rebuild.join(30)
        assert not rebuild.is_alive()
        assert stopped_all.is_set()
        assert stuck.result(timeout=30) == "old0"
        assert pipeline.handle.ask(1, timeout=30) == "new1"
    finally:
        release.set()
        old_cleanup_may_return.set()
        stopped_all.set()
        pipeline.cleanup()

    seen = [(g, w, f"{t.name}@{id(t):x}") for g, w, t in events]  # idents are reused
    for tag in ("old", "new"):  # each setup pairs with one cleanup on its thread
        set_up_on: threading.Thread | None = None
        for what, thread in [(w, t) for g, w, t in events if g == tag]:
            if what == "setup":
                assert set_up_on is None, f"{tag}: set up twice: {seen}"
                set_up_on = thread
            elif what == "cleanup":
                assert set_up_on is thread, f"{tag}: cleaned up on another thread: {seen}"
                set_up_on = None
            else:
                assert set_up_on is not None, f"{tag}: called while not set up: {seen}"
                if workers == 1:  # a pool's workers call the instance the pool set up
                    assert set_up_on is thread, f"{tag}: called on another thread: {seen}"
        assert set_up_on is None, f"{tag}: set up and never cleaned up: {seen}"
    assert [w for g, w, _ in events if g == "new"][-3:] == ["setup", "call", "cleanup"]


@pytest.mark.timeout(60)
def test_a_stage_whose_hand_over_waits_behind_a_busy_upstream_cleans_up_at_stop() -> None:
    """Found by the stateful test ("an instance of B was set up 3x and cleaned up 2x"):
    replace B while A is stuck in a call (the Relink waits in A's mailbox, so the old B
    never hears of its hand-over), then stop without draining. The stop retires the
    current actors, which by then is B's waiting successor, and stops the rest: the old B
    stopped with its stage set up and never cleaned up. Now it cleans up when it stops,
    on its own thread."""
    entered = threading.Event()
    release = threading.Event()
    lock = threading.Lock()
    log: list[tuple[str, str, threading.Thread]] = []

    class Noted(ps.Stage):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def setup(self) -> None:
            with lock:
                log.append((self.tag, "setup", threading.current_thread()))

        def __call__(self, x: int) -> int:
            if self.tag == "A":
                entered.set()
                assert release.wait(30)
            return x

        def cleanup(self) -> None:
            with lock:
                log.append((self.tag, "cleanup", threading.current_thread()))

    pipeline = ps.Pipeline()
    pipeline.add(Noted("A"), "A")
    pipeline.add(Noted("old B"), "B")
    pipeline.parallelize()
    pipeline.handle.tell(0)
    assert entered.wait(30)
    assert pipeline.handle.replace_stage("B", Noted("new B"), timeout=0.01) is False
    old_thread = next(thread for tag, _, thread in log if tag == "old B")
    stopper = threading.Thread(target=pipeline.handle.stop, kwargs={"drain": False})
    stopper.start()
    old_thread.join(30)  # the stop ended the old B while A still holds its Relink
    assert not old_thread.is_alive()
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    old = [(what, thread) for tag, what, thread in log if tag == "old B"]
    assert [what for what, _ in old] == ["setup", "cleanup"]
    assert old[0][1] is old[1][1]  # on the thread that set it up
