"""Bounded flow: the in-flight window, on_full policies, deadlines and result streams."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

import pystream_actors as ps


class Gate:
    """A stage that holds every item until the test opens it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.seen: list[Any] = []

    def __call__(self, data: Any) -> Any:
        self.seen.append(data)
        self.entered.set()
        assert self.open.wait(30)
        return data


def outcome(future: Future[Any]) -> str:
    try:
        future.result(timeout=30)
    except ps.ItemDropped:
        return "dropped"
    except ps.StageError:
        return "failed"
    return "ok"


def test_drop_oldest_keeps_the_newest_and_counts_every_drop() -> None:
    """A full drop_oldest pipeline drops the oldest not-started items; their futures say so."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(gate, "Camera")
    pipeline.add(lambda x: x, "Sink")
    with pipeline.parallelize(capacity=3, on_full="drop_oldest"):
        first = pipeline.handle.submit(0)
        assert gate.entered.wait(30)  # item 0 is being worked on: it can never be dropped
        futures = [first] + [pipeline.handle.submit(i) for i in range(1, 20)]
        gate.open.set()
        outcomes = [outcome(f) for f in futures]
        stats = pipeline.statistics()
    assert outcomes[0] == "ok"
    assert outcomes[-2:] == ["ok", "ok"]  # the newest items survive
    assert outcomes.count("dropped") == 17
    assert gate.seen == [0, 18, 19]
    assert stats.dropped == stats.dropped_on_full == 17
    assert stats.accepted == stats.completed + stats.failed + stats.dropped == 20
    with pytest.raises(ps.ItemDropped, match="drop_oldest"):
        futures[1].result(timeout=30)


def test_reject_refuses_at_once_when_full() -> None:
    """on_full='reject': submit raises PipelineFull naming the fix; tell returns False."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(gate)
    with pipeline.parallelize(capacity=2, on_full="reject"):
        futures = [pipeline.handle.submit(1), pipeline.handle.submit(2)]
        with pytest.raises(ps.PipelineFull, match="capacity"):
            pipeline.handle.submit(3)
        assert pipeline.handle.tell(4) is False
        assert pipeline.handle.rejected == 2
        gate.open.set()
        assert [f.result(timeout=30) for f in futures] == [1, 2]
        assert pipeline.statistics().dropped == 0


def test_block_waits_for_room_then_refuses() -> None:
    """on_full='block': a submitter waits for a free slot; past the timeout it is refused."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(gate)
    with pipeline.parallelize(capacity=1, on_full="block", input_timeout=30):
        first = pipeline.handle.submit(1)
        with pytest.raises(ps.PipelineFull, match=r"within 0\.01s"):
            pipeline.handle.submit(2, timeout=0.01)
        waiter: Future[Future[Any]] = Future()
        thread = threading.Thread(target=lambda: waiter.set_result(pipeline.handle.submit(3)))
        thread.start()
        gate.open.set()  # frees the slot; the blocked submitter gets in
        assert waiter.result(timeout=30).result(timeout=30) == 3
        assert first.result(timeout=30) == 1
        thread.join(30)


def test_max_age_drops_stale_items_before_a_stage_starts_them() -> None:
    """Items older than max_age when a stage is about to start them are dropped and counted."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(gate, "Slow")
    pipeline.add(lambda x: x, "Next")
    with pipeline.parallelize(capacity=10, max_age=0.05):
        futures = [pipeline.handle.submit(i) for i in range(5)]
        assert gate.entered.wait(30)
        threading.Event().wait(0.2)  # let the queued items age past max_age
        gate.open.set()
        outcomes = [outcome(f) for f in futures]
        stats = pipeline.statistics()
    assert outcomes[1:] == ["dropped"] * 4
    assert stats.stage("Slow").dropped + stats.stage("Next").dropped == outcomes.count("dropped")
    assert stats.dropped_by_deadline == outcomes.count("dropped")


def test_results_iterates_every_output_in_order() -> None:
    """handle.results() yields every output in input order, and ends after the timeout."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x * 2)
    pipeline.add(lambda x: x + 1)
    with pipeline.parallelize():
        stream = pipeline.handle.results(timeout=30)
        for i in range(100):
            pipeline.handle.tell(i)
        got = [next(stream) for _ in range(100)]
        assert got == [i * 2 + 1 for i in range(100)]
        assert list(pipeline.handle.results(timeout=0.01)) == []


def test_results_buffer_is_bounded_for_an_idle_reader() -> None:
    """A reader that does not read cannot grow memory: old outputs are dropped and counted."""
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x)
    with pipeline.parallelize(results_buffer=10):
        stream = pipeline.handle.results(timeout=30)
        futures = [pipeline.handle.submit(i) for i in range(50)]
        for future in futures:
            future.result(timeout=30)
        assert [next(stream) for _ in range(10)] == list(range(40, 50))
        assert pipeline.statistics().results_dropped == 40


def test_asyncio_submit_and_results_do_not_block_the_loop() -> None:
    """asubmit and aresults work from a running event loop, which keeps ticking while
    submitters wait for room, and no thread is used to wait."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(gate)
    pipeline.add(lambda x: x + 1)

    async def main() -> tuple[list[int], list[int]]:
        ticks = 0
        stop_ticking = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop_ticking.is_set():
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        streamed: list[int] = []

        async def read() -> None:
            async for out in pipeline.handle.aresults(timeout=30):
                streamed.append(out)
                if len(streamed) == 20:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0)
        submits = [asyncio.create_task(pipeline.handle.asubmit(i)) for i in range(20)]
        runtime = pipeline.handle._runtime
        assert runtime is not None
        await until(lambda: len(runtime.window._async_waiters) >= 10)  # 16 wait for room
        ticks_then = ticks
        await until(lambda: ticks > ticks_then + 100)  # the loop runs while they wait
        assert not any(task.done() for task in submits)
        gate.open.set()
        results = await asyncio.wait_for(asyncio.gather(*submits), 30)
        await asyncio.wait_for(reader, 30)
        stop_ticking.set()
        await ticking
        return results, streamed

    with pipeline.parallelize(capacity=4):
        results, streamed = asyncio.run(main())
    assert results == [i + 1 for i in range(20)]  # each call got its own item's output
    # Concurrent asubmits enter in whatever order they find room; every output is streamed.
    assert sorted(streamed) == [i + 1 for i in range(20)]
    assert not [t for t in threading.enumerate() if t.name.startswith("asyncio_")]


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Let the event loop run until ``condition`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def test_named_pipelines_are_found_from_anywhere() -> None:
    """get_handle(name) returns a running pipeline's handle; unknown names say what runs."""
    vision = ps.Pipeline(name="vision")
    vision.add(lambda x: f"seen {x}")
    lidar = ps.Pipeline(name="lidar")
    lidar.add(lambda x: f"scanned {x}")
    with vision.parallelize(), lidar.parallelize():
        assert ps.get_handle("vision").ask(1, timeout=30) == "seen 1"
        assert ps.get_handle("lidar").ask(1, timeout=30) == "scanned 1"
        with pytest.raises(ps.PipelineNotFound, match="lidar"):
            ps.get_handle("radar")
        clash = ps.Pipeline(name="vision")
        clash.add(lambda x: x)
        with pytest.raises(ps.PipelineInitiationError, match="already named 'vision'"):
            clash.parallelize()
    with pytest.raises(ps.PipelineNotFound):
        ps.get_handle("vision")


def test_start_loop_counts_missed_ticks_instead_of_drifting() -> None:
    """A generator slower than the period makes the loop skip ticks and count them."""
    slow = threading.Event()
    produced = threading.Semaphore(0)

    def generator() -> int:
        slow.wait(0.02)  # four periods per value
        produced.release()
        return 1

    pipeline = ps.Pipeline(input_generator=generator)
    pipeline.add(lambda x: x)
    with pipeline.parallelize(on_full="drop_oldest"):
        pipeline.start_loop(0.005)
        for _ in range(5):
            assert produced.acquire(timeout=30)
        pipeline.stop_loop()
    assert pipeline.missed_ticks >= 5


def test_eight_threads_and_an_asyncio_task_share_one_handle() -> None:
    """8 threads x 5,000 submits plus an asyncio task: every future gets its own result."""
    pipeline = ps.Pipeline()
    for _ in range(4):
        pipeline.add(lambda x: (x[0], x[1] + 1))
    wrong: list[int] = []

    def submitter(tag: int) -> None:
        futures = [pipeline.handle.submit((tag * 100_000 + i, 0), timeout=60) for i in range(5000)]
        for i, future in enumerate(futures):
            if future.result(timeout=60) != (tag * 100_000 + i, 4):
                wrong.append(tag)

    async def async_submitter() -> None:
        for start in range(0, 5000, 250):
            outs = await asyncio.gather(
                *(pipeline.handle.asubmit((900_000 + i, 0)) for i in range(start, start + 250))
            )
            if outs != [(900_000 + i, 4) for i in range(start, start + 250)]:
                wrong.append(9)

    with pipeline.parallelize(capacity=64):
        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        asyncio.run(async_submitter())
        for thread in threads:
            thread.join(120)
        stats = pipeline.statistics()
    assert not wrong
    assert stats.completed == 45_000


def test_drop_oldest_bounds_items_waiting_behind_a_slow_later_stage() -> None:
    """Items the first stage already passed on can be dropped while they wait further on."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Fast")
    pipeline.add(gate, "Slow")
    with pipeline.parallelize(capacity=4, on_full="drop_oldest"):
        futures = [pipeline.handle.submit(0)]
        assert gate.entered.wait(30)
        most_inside = 0
        for i in range(1, 200):
            futures.append(pipeline.handle.submit(i))
            most_inside = max(most_inside, pipeline.statistics().in_flight)
        gate.open.set()
        outcomes = [outcome(f) for f in futures]
        stats = pipeline.statistics()
    assert most_inside <= 5  # capacity + the newest, never more
    assert outcomes[0] == "ok" and outcomes[-1] == "ok"
    assert stats.accepted == stats.completed + stats.dropped == 200
    assert gate.seen[0] == 0 and gate.seen[-1] == 199


def test_age_and_latency_start_at_acceptance_not_at_the_wait_for_room() -> None:
    """A submitter that waited for room is not dropped by max_age for that wait."""
    gate = Gate()
    pipeline = ps.Pipeline()
    pipeline.add(gate, "Slow")
    with pipeline.parallelize(capacity=1, on_full="block", input_timeout=30, max_age=0.5):
        first = pipeline.handle.submit(1)
        assert gate.entered.wait(30)
        waiter: Future[Future[Any]] = Future()
        thread = threading.Thread(target=lambda: waiter.set_result(pipeline.handle.submit(2)))
        thread.start()
        threading.Event().wait(0.8)  # the second submitter waits longer than max_age for room
        gate.open.set()
        assert waiter.result(timeout=30).result(timeout=30) == 2
        assert first.result(timeout=30) == 1
        thread.join(30)


def test_window_drop_order_unstarted_then_waiting_never_finished_or_in_work() -> None:
    """drop_oldest picks unstarted items first, then ones waiting between stages; never one
    a stage holds or one every stage has finished."""
    from pystream_actors._messages import Item
    from pystream_actors._window import InFlightWindow

    window = InFlightWindow(capacity=3, on_full="drop_oldest", stages=2)
    finished, waiting, in_work = (Item(n, None, 0.0) for n in range(3))
    for item in (finished, waiting, in_work):
        assert window.admit(item, timeout=0)
    for item, hops in ((finished, 2), (waiting, 1), (in_work, 1)):
        assert item.begin(0.0)
        item.hops = hops
    finished.release_claim()  # left the last stage, waiting for the coordinator
    waiting.release_claim()  # left the first stage, waiting for the second
    newest = Item(3, None, 0.0)
    assert window.admit(newest, timeout=0)
    assert waiting.dropped is not None
    assert finished.dropped is None and in_work.dropped is None
    newer = Item(4, None, 0.0)
    assert window.admit(newer, timeout=0)
    assert newest.dropped is not None  # unstarted, so it goes before anything started
    assert window.dropped == 2
