"""Sync end to end: named sources, per-source windows, sets by stamp, every outcome.

Stamps are synthetic and fed as fast as possible; nothing waits on the wall clock except
``max_wait`` tests, which wait on futures with generous timeouts.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pystream_actors as ps

pytestmark = pytest.mark.timeout(120)

WAIT = 30.0
SENTINEL = 1e6  # a last sample per source, far ahead: every real anchor becomes certain


def tag(source: str) -> Any:
    def stage(x: Any) -> Any:
        return (source, x)

    return stage


def sync_pipeline(**sync_options: Any) -> ps.Pipeline:
    pipeline = ps.Pipeline()
    options: dict[str, Any] = {"tolerance": 0.02, "anchor": "lidar", **sync_options}
    pipeline.add(
        ps.Sync(
            camera=ps.Chain().add(tag("camera"), "Undistort"),
            lidar=ps.Chain().add(tag("lidar"), "Voxelize"),
            **options,
        ),
        "Sync",
    )
    pipeline.add(lambda joined: joined, "Fuse")
    return pipeline


def reference_sets(
    anchors: list[float], others: list[float], tolerance: float
) -> list[tuple[float, float]]:
    """Brute force: anchors in order, the nearest unused later sample within tolerance."""
    sets = []
    last_used = float("-inf")
    for a in anchors:
        best = None
        for s in others:
            if s <= last_used or abs(s - a) > tolerance:
                continue
            if best is None or abs(s - a) < abs(best - a):
                best = s
        if best is not None:
            sets.append((a, best))
            last_used = best
    return sets


def outcome(future: Future[Any]) -> Any:
    try:
        return future.result(WAIT)
    except ps.ItemDropped as exc:
        return exc


stamps = st.lists(st.integers(0, 300), max_size=25, unique=True).map(
    lambda xs: sorted(x / 1000 for x in xs)
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lidar=stamps, camera=stamps, order=st.randoms(use_true_random=False))
def test_approximate_pairs_each_scan_with_the_nearest_frame_like_the_reference(
    lidar: list[float], camera: list[float], order: Any
) -> None:
    with sync_pipeline(buffer=1000).parallelize(capacity=1000) as pipeline:
        check_against_reference(pipeline, lidar, camera, order)


def check_against_reference(
    pipeline: ps.Pipeline, lidar: list[float], camera: list[float], order: Any
) -> None:
    handle = pipeline.handle
    # Any interleaving of the two sources that keeps each source's own order.
    queues = {"lidar": list(lidar), "camera": list(camera)}
    futures: dict[tuple[str, float], Future[Any]] = {}
    while queues["lidar"] or queues["camera"]:
        source = order.choice([s for s in queues if queues[s]])
        t = queues[source].pop(0)
        futures[(source, t)] = handle.submit(t, source=source, stamp=t)
    sentinels = [handle.submit(None, source=s, stamp=SENTINEL) for s in ("camera", "lidar")]
    results = {key: outcome(f) for key, f in futures.items()}
    assert all(isinstance(outcome(f), ps.Joined) for f in sentinels)
    pipeline.cleanup()

    expected = reference_sets(lidar, camera, 0.02)
    got = sorted(
        {
            (r.stamps["lidar"], r.stamps["camera"])
            for r in results.values()
            if isinstance(r, ps.Joined)
        }
    )
    assert got == sorted(expected)
    in_sets = {("lidar", a) for a, _ in expected} | {("camera", c) for _, c in expected}
    for key, result in results.items():
        if key in in_sets:
            assert isinstance(result, ps.Joined), (key, result)
            assert result.stamps[key[0]] == key[1]
            assert result["lidar"] == ("lidar", result.stamps["lidar"])
        else:
            assert isinstance(result, ps.ItemDropped), (key, result)
            assert "unmatched" in str(result) or "late" in str(result)
    # Sets never cross: camera stamps increase with lidar stamps.
    cameras = [c for _, c in sorted(expected)]
    assert cameras == sorted(cameras)
    stats = pipeline.statistics()
    for source in ("camera", "lidar"):
        s = stats.source(source)
        assert s.accepted == s.completed + s.failed + s.dropped + s.in_flight
        assert s.in_flight == 0
        assert s.unmatched + s.late + s.evicted <= s.dropped
    assert stats.junction("Sync").sets == len(expected) + 1  # the sentinels pair up too


def test_a_late_sample_is_dropped_with_a_reason_naming_source_and_tolerance() -> None:
    with sync_pipeline().parallelize() as pipeline:
        handle = pipeline.handle
        first = [
            handle.submit(1, source="lidar", stamp=1.0),
            handle.submit(1, source="camera", stamp=1.005),
        ]
        assert isinstance(first[0].result(WAIT), ps.Joined)
        late = handle.submit(0, source="camera", stamp=0.5)
        with pytest.raises(ps.ItemDropped, match=r"late.*'camera'.*20 ms"):
            late.result(WAIT)
    assert pipeline.statistics().source("camera").late == 1


def test_latest_pairs_every_frame_with_the_freshest_eligible_scan() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Sync(
            camera=tag("camera"), lidar=tag("lidar"), policy="latest", on="camera", tolerance=0.15
        ),
        "Sync",
    )
    with pipeline.parallelize() as running:
        handle = running.handle
        # No scan yet: the frame has no partner.
        with pytest.raises(ps.ItemDropped, match=r"no 'lidar' sample within 150 ms"):
            handle.ask("f0", source="camera", stamp=0.0)
        # A context sample resolves as soon as it is cached, with its own chain's output.
        assert handle.ask("s1", source="lidar", stamp=1.0) == ("lidar", "s1")
        frames = [handle.submit(f"f{i}", source="camera", stamp=1.0 + i / 30) for i in range(4)]
        joined = [f.result(WAIT) for f in frames]
        assert all(j["lidar"] == ("lidar", "s1") for j in joined)
        assert [j.stamps["camera"] for j in joined] == [1.0 + i / 30 for i in range(4)]
        assert handle.ask("s2", source="lidar", stamp=1.2) == ("lidar", "s2")
        assert handle.ask("f9", source="camera", stamp=1.25)["lidar"] == ("lidar", "s2")
        # Older than the tolerance: dropped, the reason names the source.
        with pytest.raises(ps.ItemDropped, match="'lidar'"):
            handle.ask("f10", source="camera", stamp=1.5)
        sync = running.statistics().junction("Sync")
        assert sync.reused == 3  # s1 used by 4 frames: 3 beyond its first
        assert sync.sets == 5


def test_latest_with_missing_none_joins_none_and_says_why() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Sync(
            camera=tag("camera"),
            lidar=tag("lidar"),
            policy="latest",
            on="camera",
            tolerance=0.1,
            missing="none",
        ),
        "Sync",
    )
    with pipeline.parallelize() as running:
        joined = running.handle.ask("f", source="camera", stamp=0.0)
        assert joined["lidar"] is None
        assert "lidar" in joined.missing
        assert joined["camera"] == ("camera", "f")


@pytest.mark.parametrize("missing", ["drop", "none"])
def test_a_silent_source_with_max_wait_still_lets_anchors_out(missing: str) -> None:
    with sync_pipeline(max_wait=0.02, missing=missing).parallelize() as pipeline:
        started = time.perf_counter()
        futures = [pipeline.handle.submit(i, source="lidar", stamp=i / 10) for i in range(5)]
        for future in futures:
            if missing == "drop":
                with pytest.raises(ps.ItemDropped, match=r"unmatched: no 'camera' sample within"):
                    future.result(WAIT)
            else:
                joined = future.result(WAIT)
                assert joined["camera"] is None
                assert "camera" in joined.missing
        assert time.perf_counter() - started >= 0.02  # decided at the deadline, not before
    if missing == "none":
        assert pipeline.statistics().junction("Sync").decide_wait.max >= 0.02


def test_without_max_wait_the_drain_settles_waiting_samples() -> None:
    pipeline = sync_pipeline()
    pipeline.parallelize()
    anchors = [pipeline.handle.submit(i, source="lidar", stamp=i / 10) for i in range(3)]
    frames = [pipeline.handle.submit(i, source="camera", stamp=5 + i) for i in range(2)]
    assert not any(f.done() for f in anchors[-1:])  # waits for certainty
    pipeline.cleanup()
    for future in [*anchors, *frames]:
        assert future.done()
        with pytest.raises(ps.ItemDropped, match="unmatched"):
            future.result(0)
    stats = pipeline.statistics()
    assert stats.source("lidar").dropped == 3
    assert stats.source("camera").dropped == 2


def test_a_silent_lidar_never_blocks_camera_admission() -> None:
    pipeline = sync_pipeline()
    pipeline.parallelize(capacity=3, on_full="block", input_timeout=WAIT)
    frames = [
        pipeline.handle.submit(i, source="camera", stamp=i / 30, timeout=WAIT) for i in range(50)
    ]
    evicted = [f for f in frames if f.done() and "evicted" in str(f.exception(0))]
    assert len(evicted) >= 40  # each new frame pushed the oldest waiting one out
    pipeline.cleanup()
    assert all(f.done() for f in frames)
    assert pipeline.statistics().source("camera").evicted >= 40


def test_a_failing_stage_after_the_sync_fails_every_member_once() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(ps.Sync(camera=tag("camera"), lidar=tag("lidar"), tolerance=0.02), "Sync")

    def fuse(joined: Any) -> Any:
        raise ValueError("bad set")

    pipeline.add(fuse, "Fuse")
    letters: list[ps.StageError] = []
    pipeline.handle.on_error(letters.append)
    with pipeline.parallelize() as running:
        a = running.handle.submit(1, source="camera", stamp=1.0)
        b = running.handle.submit(2, source="lidar", stamp=1.01)
        for future in (a, b):
            with pytest.raises(ps.StageError) as caught:
                future.result(WAIT)
            assert caught.value.stage == "Fuse"
    assert len(letters) == 1


def test_restarting_a_source_stage_while_items_flow_loses_nothing() -> None:
    pipeline = sync_pipeline(buffer=1000)
    pipeline.parallelize(capacity=1000)
    handle = pipeline.handle
    futures = []
    for i in range(200):
        futures.append(handle.submit(i, source="camera", stamp=i / 30))
        if i % 3 == 0:
            futures.append(handle.submit(i, source="lidar", stamp=i / 30 + 0.001))
        if i == 100:
            assert handle.restart_stage("Undistort", timeout=WAIT)
            assert handle.restart_stage("Voxelize", timeout=WAIT)
    futures += [handle.submit(None, source=s, stamp=SENTINEL) for s in ("camera", "lidar")]
    results = [outcome(f) for f in futures[:-2]]
    pipeline.cleanup()
    joined = [r for r in results if isinstance(r, ps.Joined)]
    assert len(joined) == 2 * 67  # each scan with the frame 1 ms before it: both members
    assert all(not isinstance(r, Exception) or isinstance(r, ps.ItemDropped) for r in results)


def test_a_generator_per_source_feeds_each_at_its_own_rate() -> None:
    count = {"camera": 0, "lidar": 0}
    lock = threading.Lock()

    def reading(source: str) -> Any:
        def read() -> Any:
            with lock:
                count[source] += 1
                return count[source]

        return read

    pipeline = ps.Pipeline(input_generator={s: reading(s) for s in count})
    pipeline.add(
        ps.Sync(
            camera=tag("camera"), lidar=tag("lidar"), policy="latest", on="camera", tolerance=10.0
        ),
        "Sync",
    )
    pipeline.parallelize()
    with pipeline.handle.results(timeout=WAIT) as outputs:
        pipeline.start_loop({"camera": 0.005, "lidar": 0.02})
        seen = [next(outputs) for _ in range(5)]
    pipeline.cleanup()
    assert all(isinstance(j, ps.Joined) for j in seen)
    stats = pipeline.statistics()
    assert stats.source("camera").accepted >= 5
    assert stats.source("lidar").accepted >= 1


# -- bad input: clear errors naming what was wrong -----------------------------------


def test_submitting_to_a_sync_pipeline_needs_a_known_source_and_a_number_stamp() -> None:
    with sync_pipeline().parallelize() as pipeline:
        handle = pipeline.handle
        with pytest.raises(ps.InvalidArgument, match="pass source="):
            handle.submit(1)
        with pytest.raises(ps.InvalidArgument, match="no source named 'radar'"):
            handle.submit(1, source="radar")
        with pytest.raises(ps.InvalidItem, match="must be a number"):
            handle.submit(1, source="camera", stamp="now")  # type: ignore[arg-type]
        with pytest.raises(ps.InvalidItem, match="finite"):
            handle.submit(1, source="camera", stamp=float("nan"))
        with pytest.raises(ps.InvalidArgument, match="source must be"):
            handle.submit(1, source=3)  # type: ignore[arg-type]
        assert pipeline.statistics().source("camera").accepted == 0


def test_a_stamp_function_that_raises_refuses_the_item() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1, stamp={"a": lambda x: x["t"]}), "Sync"
    )
    with pipeline.parallelize() as running:
        with pytest.raises(ps.InvalidItem, match="stamp function of source 'a' raised KeyError"):
            running.handle.submit({}, source="a")
        b = running.handle.submit(1, source="b", stamp=2.0)
        joined = running.handle.ask({"t": 2.0}, source="a")
        assert joined.stamps == {"a": 2.0, "b": 2.0}
        assert b.result(WAIT) is joined


def test_a_plain_pipeline_refuses_source_and_stamp() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Only")
    with pipeline.parallelize() as running:
        with pytest.raises(ps.InvalidArgument, match="no named sources"):
            running.handle.submit(1, source="camera")
        with pytest.raises(ps.InvalidArgument, match="stamp= is for"):
            running.handle.submit(1, stamp=1.0)


def test_serialize_is_refused_with_the_reason() -> None:
    with pytest.raises(ps.InvalidArgument, match=r"Sync cannot run serialize\(\).*parallelize"):
        sync_pipeline().serialize()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ps.Sync(camera=tag("c"), tolerance=0.1), "at least two sources"),
        (lambda: ps.Sync(a=tag("a"), b=tag("b")), "needs tolerance="),
        (lambda: ps.Sync(a=tag("a"), b=tag("b"), policy="exact", tolerance=0.1), "equal stamps"),
        (lambda: ps.Sync(a=tag("a"), b=tag("b"), policy="latest", tolerance=0.1), "needs on="),
        (
            lambda: ps.Sync(
                a=tag("a"), b=tag("b"), policy="latest", on="a", tolerance=1, max_wait=1
            ),
            "max_wait does not apply",
        ),
        (
            lambda: ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1, anchor="c"),
            "not one of the sources",
        ),
        (lambda: ps.Sync(a=tag("a"), b=tag("b"), tolerance=-1), "tolerance"),
        (lambda: ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1, buffer=0), "buffer"),
        (lambda: ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1, policy="nearest"), "policy"),
        (lambda: ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1, stamp=3), "stamp must be"),
        (lambda: ps.Parallel(a=ps.Chain(on_full="block").add(tag("a"), "A")), "Sync source only"),
    ],
)
def test_bad_sync_arguments_get_clear_errors(build: Any, message: str) -> None:
    with pytest.raises(ps.InvalidArgument, match=message):
        build()


def test_a_sync_is_only_a_first_step() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "First")
    with pytest.raises(ps.InvalidArgument, match="first step"):
        pipeline.add(ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1), "Sync")
    with pytest.raises(ps.InvalidArgument, match="not a step inside a Chain"):
        ps.Chain().add(ps.Sync(a=tag("a"), b=tag("b"), tolerance=0.1), "Sync")


def test_a_source_needs_room_for_a_waiting_sample() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Sync(a=ps.Chain(capacity=1).add(tag("a"), "A"), b=tag("b"), tolerance=0.1), "Sync"
    )
    with pytest.raises(ps.InvalidArgument, match="capacity >= 2"):
        pipeline.parallelize()


def test_the_drain_still_pairs_samples_that_were_inside_their_source_chains() -> None:
    """Found by review: a drain flushed the sync before the source chains emptied, so pairs
    still on their way were dropped as unmatched."""
    release = threading.Event()

    def held(x: Any) -> Any:
        release.wait(WAIT)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Sync(
            camera=ps.Chain(capacity=50).add(held, "C"),
            lidar=ps.Chain(capacity=50).add(held, "L"),
            tolerance=0.01,
            buffer=20,  # either chain may run ahead by all 10 samples
        ),
        "Sync",
    )
    pipeline.parallelize()
    futures = [
        pipeline.handle.submit(i, source=s, stamp=float(i))
        for i in range(10)
        for s in ("camera", "lidar")
    ]
    stopper = threading.Thread(target=pipeline.cleanup)
    stopper.start()
    release.set()  # the chains empty only after the drain began
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert all(isinstance(f.result(0), ps.Joined) for f in futures)


def test_latest_refuses_a_context_sample_far_newer_than_the_trigger() -> None:
    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Sync(camera=tag("c"), lidar=tag("l"), policy="latest", on="camera", tolerance=0.15),
        "Sync",
    )
    with pipeline.parallelize() as running:
        running.handle.ask("scan", source="lidar", stamp=100.0)
        with pytest.raises(ps.ItemDropped, match="'lidar'"):
            running.handle.ask("f", source="camera", stamp=0.0)


def test_a_stop_without_drain_settles_waiting_samples_as_terminated() -> None:
    pipeline = sync_pipeline()
    pipeline.parallelize()
    waiting = [pipeline.handle.submit(i, source="lidar", stamp=i / 10) for i in range(3)]
    assert pipeline.handle.stop(drain=False, timeout=WAIT)
    for future in waiting:
        with pytest.raises(ps.PipelineTerminated):
            future.result(0)
    stats = pipeline.statistics().source("lidar")
    assert stats.accepted == stats.dropped == 3
