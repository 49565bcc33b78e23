"""Ray stages (``executor="ray"``) on a local Ray: order, errors, supervision, hand-over.

One Ray session for the module (``ray.init(num_cpus=2)``, shut down at the end, no Ray
process left). Ray actors are asked for ``num_cpus=0`` so that several fit on 2 CPUs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

import pystream_actors as ps  # noqa: E402
from tests.ray_support import assert_gone, descendants  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

FREE = {"num_cpus": 0}  # Ray actors that hold no CPU: several fit on a 2-CPU Ray


@pytest.fixture(scope="module", autouse=True)
def ray_session() -> Iterator[None]:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not on workers
    before = descendants(os.getpid())
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=150 << 20,
        logging_level="ERROR",
        log_to_driver=False,
    )
    started = descendants(os.getpid()) - before
    yield
    ours = started | (descendants(os.getpid()) - before)  # daemons and every worker made
    ray.shutdown()
    assert_gone(ours)


# -- stages (pickled by value into the Ray actors) ----------------------------------------


def double(x: int) -> int:
    return x * 2


def inc(x: int) -> int:
    return x + 1


def triple(x: int) -> int:
    return x * 3


def with_pid(x: int) -> tuple[int, int]:
    time.sleep(0.005)
    return x * 2, os.getpid()


def boom_on_5(x: int) -> int:
    if x == 5:
        raise ValueError("five")
    return x


class Trail:
    """Records the process of every unpickling: shows where the data travelled."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.trail: list[int] = []

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.trail.append(os.getpid())


def mark(trail: Trail) -> Trail:
    trail.trail.append(-os.getpid())  # negative: the process that ran the stage
    return trail


class Tracked(ps.Stage):
    """Writes where setup and cleanup ran."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.setup_pid = 0

    def setup(self) -> None:
        self.setup_pid = os.getpid()
        Path(self.folder, f"setup-{os.getpid()}").touch()

    def __call__(self, x: int) -> tuple[int, int, int]:
        return x, self.setup_pid, os.getpid()

    def cleanup(self) -> None:
        Path(self.folder, f"cleanup-{os.getpid()}").touch()


class Slow:
    """Sleeps per item; returns (x * 2, pid); on item ``kill_on`` hands back its actor."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay

    def __call__(self, x: int) -> Any:
        time.sleep(self.delay)
        return x * 2, os.getpid()


def outcomes(futures: list[Future[Any]], timeout: float = 60) -> list[tuple[str, Any]]:
    """("ok", value) or ("error", exception) per item, in input order."""
    result: list[tuple[str, Any]] = []
    for future in futures:
        try:
            result.append(("ok", future.result(timeout=timeout)))
        except ps.PyStreamError as exc:
            result.append(("error", exc))
    return result


class Arrivals:
    """A thread stage at the end: records the order outputs arrive in."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, x: Any) -> Any:
        self.seen.append(x)
        return x


# -- tests -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_order_and_values_through_thread_and_ray_stages() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_mixed")
    pipeline.add(inc, "Inc")
    pipeline.add(double, "Double", executor="ray", ray_options=FREE)
    pipeline.add(inc, "Inc_ray", executor="ray", workers=2, ray_options=FREE)
    pipeline.add(triple, "Triple", executor="ray", ray_options=FREE)
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=32):
        futures = [pipeline.handle.submit(i) for i in range(300)]
        values = [f.result(timeout=60) for f in futures]
        expected = [((i + 1) * 2 + 1) * 3 for i in range(300)]
        assert values == expected
        assert arrivals.seen == expected  # in input order at the next stage too
        stats = {s.name: s for s in pipeline.statistics().stages}
        assert stats["Double"].processed == 300
        assert stats["Inc_ray"].processed == 300
        status = pipeline.handle.status()
        assert len(status["Inc_ray"].nodes) == 2
        assert all(status["Inc_ray"].nodes)
        assert status["Inc"].nodes == ()


@pytest.mark.timeout(120)
def test_consecutive_ray_stages_pass_data_actor_to_actor() -> None:
    pipeline = ps.Pipeline(name="ray_refs")
    pipeline.add(mark, "First", executor="ray", ray_options=FREE)
    pipeline.add(mark, "Second", executor="ray", ray_options=FREE)
    with pipeline.serialize():
        out = pipeline.handle.ask(Trail(1), timeout=60)
    first, second = -out.trail[1], -out.trail[3]
    # unpickled in First, ran there; unpickled in Second (not in the driver), ran; then here
    assert out.trail == [first, -first, second, -second, os.getpid()]
    assert os.getpid() not in (first, second)


@pytest.mark.timeout(120)
def test_a_stage_exception_is_a_stage_error_naming_it() -> None:
    pipeline = ps.Pipeline(name="ray_errors")
    pipeline.add(boom_on_5, "Boom", executor="ray", ray_options=FREE)
    pipeline.add(double, "After", executor="ray", ray_options=FREE)
    pipeline.add(inc, "Local")
    with pipeline.parallelize(capacity=8):
        result = outcomes([pipeline.handle.submit(i) for i in range(12)])
    for i, (kind, value) in enumerate(result):
        if i == 5:
            assert kind == "error"
            assert isinstance(value, ps.StageError)
            assert value.stage == "Boom"
            assert value.item_index == 5
            assert isinstance(value.__cause__, ValueError)
            assert value.data == 5
        else:
            assert (kind, value) == ("ok", i * 2 + 1)


@pytest.mark.timeout(120)
def test_setup_and_cleanup_run_in_the_ray_actor(tmp_path: Path) -> None:
    folder = str(tmp_path)
    pipeline = ps.Pipeline(name="ray_setup")
    pipeline.add(factory=lambda: Tracked(folder), name="Made", executor="ray", ray_options=FREE)
    pipeline.add(lambda t: t, "Lambda", executor="ray", ray_options=FREE)  # lambdas ship too
    with pipeline.serialize():
        x, setup_pid, pid = pipeline.handle.ask(7, timeout=60)
    assert x == 7
    assert setup_pid == pid != os.getpid()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"cleanup-{pid}", f"setup-{pid}"]  # cleanup ran before the stop returned


@pytest.mark.timeout(180)
def test_ray_actor_killed_mid_stream_fails_only_its_item_and_comes_back() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_kill")
    pipeline.add(
        Slow(0.01),
        "Slow",
        executor="ray",
        on_error="restart",
        ray_options={**FREE, "max_in_flight": 4},
    )
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(80)]
        first_pid = futures[10].result(timeout=60)[1]
        os.kill(first_pid, signal.SIGKILL)
        result = outcomes(futures)
        assert_outcomes(result, arrivals, "Slow", pids_before=first_pid)
        assert pipeline.handle.status()["Slow"].restarts == 1
        assert pipeline.handle.status()["Slow"].state == "running"
        assert pipeline.handle.ask(100, timeout=30)[0] == 200


@pytest.mark.timeout(180)
def test_ray_kill_of_the_actor_under_restart() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_kill2")
    pipeline.add(
        Slow(0.01),
        "Slow",
        executor="ray",
        on_error="restart",
        ray_options={**FREE, "max_in_flight": 4},
    )
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(80)]
        first_pid = futures[10].result(timeout=60)[1]
        handles = _stage_handles(pipeline, "Slow")
        ray.kill(handles[0], no_restart=True)
        result = outcomes(futures)
        assert_outcomes(result, arrivals, "Slow", pids_before=first_pid)


def _stage_handles(pipeline: ps.Pipeline, name: str) -> list[Any]:
    """The Ray actor handles behind a Ray stage (white box: for killing them)."""
    runtime = pipeline.handle._runtime  # type: ignore[attr-defined]
    record = next(r for r in runtime.records if r.slot.name == name)
    actor = record.ref._actor_weakref()
    return [w.handle for w in actor._workers if w is not None]


def assert_outcomes(
    result: list[tuple[str, Any]], arrivals: Arrivals, stage: str, pids_before: int, held: int = 4
) -> list[int]:
    """Only the items the dead Ray actor held failed (at most ``held``, consecutive), each
    with a StageError naming the stage and the Ray actor's death; every other item is right,
    and outputs arrived downstream in input order. Returns the failed indexes."""
    failed = [i for i, (kind, _) in enumerate(result) if kind == "error"]
    assert 1 <= len(failed) <= held, failed
    assert failed == list(range(failed[0], failed[0] + len(failed)))
    for i in failed:
        error = result[i][1]
        assert isinstance(error, ps.StageError)
        assert error.stage == stage
        assert isinstance(error.__cause__, ray.exceptions.RayActorError), repr(error.__cause__)
    for i, (kind, value) in enumerate(result):
        if i not in failed:
            assert kind == "ok" and value[0] == i * 2, (i, kind, value)
    oks = [v for kind, v in result if kind == "ok"]
    assert arrivals.seen == oks  # no item lost, none reordered
    pids = [v[1] for v in oks]
    assert pids[0] == pids_before != pids[-1]  # a new Ray actor took over
    return failed


@pytest.mark.timeout(180)
def test_restart_and_replace_while_items_flow() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_control")
    pipeline.add(Slow(0.005), "Slow", executor="ray", ray_options=FREE)
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(60)]
        futures[5].result(timeout=60)
        assert pipeline.handle.restart_stage("Slow", timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(60, 120)]
        futures[70].result(timeout=60)
        assert pipeline.handle.replace_stage("Slow", with_pid, timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(120, 180)]
        result = outcomes(futures)
        assert all(kind == "ok" for kind, _ in result), result
        assert [v[0] for _, v in result] == [i * 2 for i in range(180)]
        assert arrivals.seen == [v for _, v in result]
        assert len({v[1] for _, v in result}) >= 3  # three Ray actors served the stage
        assert pipeline.handle.status()["Slow"].restarts == 1


@pytest.mark.timeout(180)
def test_stop_and_start_a_ray_stage() -> None:
    pipeline = ps.Pipeline(name="ray_stop")
    pipeline.add(Slow(0.002), "Slow", executor="ray", ray_options=FREE)
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(20)]
        assert pipeline.handle.stop_stage("Slow", timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(20, 30)]
        assert pipeline.handle.start_stage("Slow", timeout=60)
        result = outcomes(futures)
        assert [v[0] for _, v in result] == [i * 2 for i in range(30)]


@pytest.mark.timeout(120)
def test_service_time_is_measured_in_the_ray_actor() -> None:
    pipeline = ps.Pipeline(name="ray_stats")
    pipeline.add(Slow(0.02), "Slow", executor="ray", ray_options=FREE)
    with pipeline.parallelize(capacity=4):
        for f in [pipeline.handle.submit(i) for i in range(10)]:
            f.result(timeout=60)
        stats = pipeline.statistics().stages[0]
    assert stats.processed == 10
    assert 0.018 < stats.service_time.p50 < 0.2


@pytest.mark.timeout(120)
def test_stage_error_under_restart_restarts_and_keeps_order() -> None:
    pipeline = ps.Pipeline(name="ray_restart_error")
    pipeline.add(boom_on_5, "Boom", executor="ray", on_error="restart", ray_options=FREE)
    pipeline.add(inc, "Local")
    with pipeline.parallelize(capacity=16):
        result = outcomes([pipeline.handle.submit(i) for i in range(40)])
        assert pipeline.handle.status()["Boom"].restarts == 1
    assert [k for k, _ in result].count("error") == 1
    assert result[5][0] == "error" and result[5][1].stage == "Boom"
    assert [v for k, v in result if k == "ok"] == [i + 1 for i in range(40) if i != 5]


def exit_on_20(x: int) -> int:
    if x == 20:
        os._exit(1)
    return x * 2


@pytest.mark.timeout(180)
def test_os_exit_in_a_stage_under_skip_restarts_the_ray_actor() -> None:
    pipeline = ps.Pipeline(name="ray_exit")
    pipeline.add(exit_on_20, "Exit", executor="ray", ray_options={**FREE, "max_in_flight": 8})
    with pipeline.parallelize(capacity=16):
        result = outcomes([pipeline.handle.submit(i) for i in range(50)])
        assert pipeline.handle.status()["Exit"].restarts == 1  # a dead actor cannot skip
    failed = [i for i, (k, _) in enumerate(result) if k == "error"]
    assert 20 in failed and len(failed) <= 8  # the items the dead actor held, 20 among them
    assert failed == list(range(failed[0], failed[0] + len(failed)))
    assert all(result[i][1].stage == "Exit" for i in failed)
    assert [v for k, v in result if k == "ok"] == [i * 2 for i in range(50) if i not in failed]


@pytest.mark.timeout(120)
def test_ray_stages_inside_parallel_branches() -> None:
    pipeline = ps.Pipeline(name="ray_branches")
    pipeline.add(
        ps.Parallel(
            a=ps.Chain().add(double, "A", executor="ray", ray_options=FREE),
            b=ps.Chain()
            .add(inc, "B1", executor="ray", ray_options=FREE)
            .add(triple, "B2", executor="ray", ray_options=FREE),
        ),
        "Both",
    )
    with pipeline.parallelize(capacity=8):
        values = [f.result(timeout=60) for f in [pipeline.handle.submit(i) for i in range(30)]]
    assert [dict(v) for v in values] == [{"a": i * 2, "b": (i + 1) * 3} for i in range(30)]


@pytest.mark.timeout(120)
def test_two_workers_one_failing_under_restart_keeps_order() -> None:
    pipeline = ps.Pipeline(name="ray_two_workers")
    pipeline.add(boom_on_5, "Boom", executor="ray", workers=2, on_error="restart", ray_options=FREE)
    with pipeline.parallelize(capacity=16):
        result = outcomes([pipeline.handle.submit(i) for i in range(60)])
        assert pipeline.handle.status()["Boom"].restarts == 1
        assert pipeline.handle.status()["Boom"].state == "running"
    assert [i for i, (k, _) in enumerate(result) if k == "error"] == [5]
    assert [v for k, v in result if k == "ok"] == [i for i in range(60) if i != 5]


@pytest.mark.timeout(120)
def test_a_ray_actor_that_cannot_be_placed_fails_the_start_naming_the_stage() -> None:
    pipeline = ps.Pipeline(name="ray_unplaced")
    pipeline.add(
        double,
        "Nowhere",
        executor="ray",
        ray_options={"num_cpus": 0, "resources": {"no_such_thing": 1}, "start_timeout": 1.0},
    )
    with pytest.raises(ps.PipelineInitiationError, match="Nowhere"):
        pipeline.parallelize()
    pipeline.cleanup()


def boom_on_10(x: int) -> int:
    if x == 10:
        raise KeyError("ten")
    return x


@pytest.mark.timeout(120)
def test_an_error_after_a_ray_hop_carries_the_input_value_not_a_ref() -> None:
    pipeline = ps.Pipeline(name="ray_error_data")
    pipeline.add(double, "Double", executor="ray", ray_options=FREE)
    pipeline.add(boom_on_10, "Boom", executor="ray", ray_options=FREE)
    with pipeline.parallelize(capacity=8):
        result = outcomes([pipeline.handle.submit(i) for i in range(8)])
    assert [k for k, _ in result] == ["ok"] * 5 + ["error"] + ["ok"] * 2
    error = result[5][1]
    assert (error.stage, error.item_index, error.data) == ("Boom", 5, 10)
    assert isinstance(error.__cause__, KeyError)


@pytest.mark.timeout(120)
def test_drop_oldest_and_max_age_settle_every_item_through_ray_stages() -> None:
    pipeline = ps.Pipeline(name="ray_drop")
    pipeline.add(Slow(0.01), "Slow", executor="ray", ray_options=FREE)
    with pipeline.parallelize(capacity=4, on_full="drop_oldest", max_age=0.5):
        futures = [pipeline.handle.submit(i) for i in range(100)]
        result = outcomes(futures)
    dropped = [v for k, v in result if k == "error"]
    assert dropped and all(isinstance(e, ps.ItemDropped) for e in dropped)
    values = [v[0] for k, v in result if k == "ok"]
    assert values == sorted(values) and values[-1] == 198  # the newest always gets through


def exit_on_3(x: int) -> int:
    if x == 3:
        sys.exit(3)
    return x


@pytest.mark.timeout(120)
def test_system_exit_in_a_ray_stage_ends_its_actor_which_is_replaced() -> None:
    pipeline = ps.Pipeline(name="ray_sys_exit")
    pipeline.add(exit_on_3, "Exit", executor="ray", ray_options={**FREE, "max_in_flight": 1})
    with pipeline.parallelize(capacity=4):
        result = outcomes([pipeline.handle.submit(i) for i in range(10)])
        assert pipeline.handle.status()["Exit"].restarts == 1
    assert [i for i, (k, _) in enumerate(result) if k == "error"] == [3]
    assert isinstance(result[3][1].__cause__, ray.exceptions.RayActorError)


# -- consecutive Ray stages under skip: an item goes on with its output's ref at once ------


def same(x: Any) -> Any:
    return x


def _stage_actor(pipeline: ps.Pipeline, name: str) -> Any:
    """The RayStageActor of a stage (white box)."""
    runtime = pipeline.handle._runtime  # type: ignore[attr-defined]
    record = next(r for r in runtime.records if r.slot.name == name)
    return record.ref._actor_weakref()


@pytest.mark.timeout(180)
def test_ray_actor_killed_while_its_outputs_are_at_the_next_ray_stages() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_kill_early")
    pipeline.add(Slow(0.01), "First", executor="ray", ray_options={**FREE, "max_in_flight": 4})
    pipeline.add(same, "Second", executor="ray", ray_options=FREE)
    pipeline.add(same, "Third", executor="ray", ray_options=FREE)
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(80)]
        first_pid = futures[10].result(timeout=60)[1]
        first = _stage_actor(pipeline, "First")
        deadline = time.monotonic() + 10
        while not first._sent and time.monotonic() < deadline:  # items already went on
            time.sleep(0.001)
        assert first._sent
        second_pids = {w.handle for w in _stage_actor(pipeline, "Second")._workers}
        os.kill(first_pid, signal.SIGKILL)
        result = outcomes(futures)
        # the items First held fail once, naming First (not Second nor Third, where their
        # refs had gone), in order with the others; Second and Third keep their Ray actors
        assert_outcomes(result, arrivals, "First", pids_before=first_pid)
        status = pipeline.handle.status()
        assert (status["First"].restarts, status["Second"].restarts) == (1, 0)
        assert status["Third"].restarts == 0
        assert {w.handle for w in _stage_actor(pipeline, "Second")._workers} == second_pids
        assert pipeline.handle.ask(100, timeout=30)[0] == 200
        stats = {s.name: s for s in pipeline.statistics().stages}
        assert stats["Second"].failed == stats["Third"].failed == 0  # not theirs
        deadline = time.monotonic() + 10  # First counts each of its 81 calls once
        while (first_stats := pipeline.statistics().stages[0]).processed + first_stats.failed < 81:
            assert time.monotonic() < deadline, first_stats
            time.sleep(0.01)
        assert first_stats.processed + first_stats.failed == 81
        assert 1 <= first_stats.failed <= 4  # at most the calls the dead Ray actor held


@pytest.mark.timeout(120)
def test_a_failed_envelope_passes_through_the_next_ray_stages_unrun() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_pass_failed")
    pipeline.add(boom_on_5, "Boom", executor="ray", ray_options=FREE)
    pipeline.add(double, "Double", executor="ray", ray_options=FREE)
    pipeline.add(triple, "Triple", executor="ray", ray_options=FREE)
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=8):
        result = outcomes([pipeline.handle.submit(i) for i in range(30)])
        # a stage that forwarded at once counts its items when their statuses come back
        deadline = time.monotonic() + 10
        while True:
            stats = {s.name: s for s in pipeline.statistics().stages}
            if stats["Boom"].processed + stats["Boom"].failed == 30:
                break
            assert time.monotonic() < deadline, stats["Boom"]
            time.sleep(0.01)
    assert [i for i, (k, _) in enumerate(result) if k == "error"] == [5]
    error = result[5][1]
    assert (error.stage, error.item_index, error.data) == ("Boom", 5, 5)
    assert isinstance(error.__cause__, ValueError)
    expected = [i * 6 for i in range(30) if i != 5]
    assert [v for k, v in result if k == "ok"] == expected
    assert arrivals.seen == expected
    assert (stats["Boom"].processed, stats["Boom"].failed) == (29, 1)
    for name in ("Double", "Triple"):  # neither ran item 5, nor counts it as theirs
        assert (stats[name].processed, stats[name].failed) == (29, 0), name


def jitter(x: int) -> tuple[int, int]:
    time.sleep(0.001 * (x * 7 % 5))
    return x, os.getpid()


@pytest.mark.timeout(120)
def test_two_workers_forwarding_at_once_keep_the_order() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_early_order")
    pipeline.add(jitter, "Jitter", executor="ray", workers=2, ray_options=FREE)
    pipeline.add(same, "Same", executor="ray", ray_options=FREE)
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=16):
        result = outcomes([pipeline.handle.submit(i) for i in range(120)])
        deadline = time.monotonic() + 10  # every status comes back: the counts settle
        while pipeline.statistics().stages[0].processed != 120:
            assert time.monotonic() < deadline, pipeline.statistics().stages[0]
            time.sleep(0.01)
        assert pipeline.statistics().stages[0].queue_depth == 0
    assert [v[0] for _, v in result] == list(range(120))
    assert arrivals.seen == [v for _, v in result]
    assert len({v[1] for _, v in result}) == 2  # both Ray actors served


@pytest.mark.timeout(240)
def test_restart_and_replace_of_consecutive_ray_stages_while_items_flow() -> None:
    arrivals = Arrivals()
    pipeline = ps.Pipeline(name="ray_control_early")
    pipeline.add(Slow(0.005), "Slow", executor="ray", ray_options=FREE)
    pipeline.add(same, "Same", executor="ray", ray_options=FREE)
    pipeline.add(arrivals, "Arrivals")
    with pipeline.parallelize(capacity=16):
        futures = [pipeline.handle.submit(i) for i in range(60)]
        futures[5].result(timeout=60)
        assert pipeline.handle.restart_stage("Slow", timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(60, 120)]
        futures[70].result(timeout=60)
        assert pipeline.handle.restart_stage("Same", timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(120, 180)]
        futures[125].result(timeout=60)
        assert pipeline.handle.replace_stage("Slow", with_pid, timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(180, 240)]
        futures[-1].result(timeout=60)  # later items wait for a stopped stage
        assert pipeline.handle.stop_stage("Same", timeout=60)
        futures += [pipeline.handle.submit(i) for i in range(240, 250)]
        assert pipeline.handle.start_stage("Same", timeout=60)
        result = outcomes(futures)
        assert all(kind == "ok" for kind, _ in result), result
        assert [v[0] for _, v in result] == [i * 2 for i in range(250)]
        assert arrivals.seen == [v for _, v in result]
