"""Graphs: Parallel joins by item, Route routes by key, Tap taps without slowing the main path.

The property test builds random series-parallel pipelines whose every stage adds a known
amount, so each output can be computed independently and compared.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pystream_actors as ps
from tests.test_edges_failures import wait_until


def settle(futures: list[Future[Any]], timeout: float = 30) -> list[Any]:
    """Each future's result, or the library error it raised."""
    out: list[Any] = []
    for future in futures:
        try:
            out.append(future.result(timeout=timeout))
        except ps.PyStreamError as error:
            out.append(error)
    return out


# -- the property test -------------------------------------------------------------------


@dataclass(frozen=True)
class BranchSpec:
    """One branch: stages adding ``amounts``; the stage at ``fail_at`` fails on multiples
    of ``fail_every`` (0: never)."""

    amounts: tuple[int, ...]
    required: bool
    fail_every: int
    fail_at: int
    capacity: int | None


@dataclass(frozen=True)
class GraphSpec:
    branches: tuple[BranchSpec, ...]
    route_inside: bool  # the first branch routes by parity to two one-stage branches
    mode: str
    capacity: int
    on_full: str
    delays: bool


branch_specs = st.builds(
    BranchSpec,
    amounts=st.lists(st.integers(1, 9), min_size=1, max_size=2).map(tuple),
    required=st.booleans(),
    fail_every=st.sampled_from([0, 0, 3, 5]),
    fail_at=st.integers(0, 1),
    capacity=st.sampled_from([None, None, 1, 2]),
)
graph_specs = st.builds(
    GraphSpec,
    branches=st.lists(branch_specs, min_size=1, max_size=3).map(tuple),
    route_inside=st.booleans(),
    mode=st.sampled_from(["serialize", "parallelize"]),
    capacity=st.sampled_from([1, 2, 8]),
    on_full=st.sampled_from(["block", "drop_oldest"]),
    delays=st.booleans(),
)


def adder(amount: int, fail_every: int, rng: random.Random | None) -> Any:
    def stage(x: int) -> int:
        if rng is not None:
            threading.Event().wait(rng.random() / 2000)  # 0-0.5 ms of "work"
        if fail_every and x % fail_every == 0:
            raise ValueError(f"planned failure on {x}")
        return x + amount

    return stage


def build(spec: GraphSpec) -> ps.Pipeline:
    rng = random.Random(1) if spec.delays else None
    branches: dict[str, ps.Chain] = {}
    for b, branch in enumerate(spec.branches):
        chain = ps.Chain(required=branch.required, capacity=branch.capacity)
        for s, amount in enumerate(branch.amounts):
            fails = branch.fail_every if s == min(branch.fail_at, len(branch.amounts) - 1) else 0
            chain.add(adder(amount, fails, rng), f"B{b}_{s}")
        if b == 0 and spec.route_inside:
            chain.add(
                ps.Route(
                    lambda x: x % 2,
                    branches={0: adder(1000, 0, rng), 1: adder(2000, 0, rng)},
                ),
                f"B{b}_route",
            )
        branches[f"b{b}"] = chain
    pipeline = ps.Pipeline()
    pipeline.add(adder(1, 0, rng), "Start")
    pipeline.add(ps.Parallel(**branches), "Fork")
    pipeline.add(lambda joined: dict(joined), "Flatten")
    return pipeline


def expected(spec: GraphSpec, x: int) -> tuple[str, Any]:
    """("ok", {branch: value}) or ("failed", {names of stages that may be blamed})."""
    y = x + 1
    outputs: dict[str, int] = {}
    failing: set[str] = set()
    for b, branch in enumerate(spec.branches):
        value, failed_stage = y, None
        for s, amount in enumerate(branch.amounts):
            fails = branch.fail_every if s == min(branch.fail_at, len(branch.amounts) - 1) else 0
            if fails and value % fails == 0:
                failed_stage = f"B{b}_{s}"
                break
            value += amount
        if failed_stage is None and b == 0 and spec.route_inside:
            value += 1000 if value % 2 == 0 else 2000
        if failed_stage is None:
            outputs[f"b{b}"] = value
        elif branch.required:
            failing.add(failed_stage)
    return ("failed", failing) if failing else ("ok", outputs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graph_specs, items=st.integers(1, 40))
def test_random_graphs_give_each_item_one_outcome_in_order(spec: GraphSpec, items: int) -> None:
    """Every accepted item has exactly one outcome, the one its plan computes (or a drop,
    only where a policy may drop); outputs arrive in input order; the counts add up."""
    pipeline = build(spec)
    lossy = spec.on_full == "drop_oldest" or any(b.capacity for b in spec.branches)
    if spec.mode == "serialize":
        pipeline.serialize()
    else:
        pipeline.parallelize(capacity=spec.capacity, on_full=spec.on_full, input_timeout=30)  # type: ignore[arg-type]
    try:
        reader = pipeline.handle.results(timeout=30)
        futures = [pipeline.handle.submit(x, timeout=30) for x in range(items)]
        outcomes = settle(futures)
        delivered = [o for o in outcomes if isinstance(o, dict)]
        for x, outcome in enumerate(outcomes):
            kind, want = expected(spec, x)
            if isinstance(outcome, ps.ItemDropped):
                assert lossy, f"item {x} dropped without a policy that drops: {outcome}"
            elif kind == "failed":
                assert isinstance(outcome, ps.StageError), (x, outcome)
                assert outcome.stage in want, (x, outcome.stage, want)
            else:
                assert isinstance(outcome, dict), (x, outcome)
                optional_dropped = lossy and set(outcome) <= set(want)
                assert outcome == want or optional_dropped, (x, outcome, want)
                for key, value in outcome.items():
                    assert value == want[key]
        assert [next(reader) for _ in delivered] == delivered  # in input order
        stats = pipeline.statistics()
        assert stats.accepted == items
        assert stats.accepted == stats.completed + stats.failed + stats.dropped
        assert stats.in_flight == 0
        assert stats.junction("Fork").pending == 0
    finally:
        pipeline.cleanup()


# -- Parallel -----------------------------------------------------------------------------


def test_parallel_joins_by_item_and_reports_missing_optional_branches() -> None:
    """The join maps branch -> output; an optional branch's failure is listed in missing
    and goes to the dead letters, a required one's fails the item."""

    def fussy(x: int) -> int:
        if x == 2:
            raise ValueError("no twos")
        return x * 10

    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Parallel(
            same=lambda x: x,
            tens=ps.Chain(required=False).add(fussy, "Fussy"),
        ),
        "Fork",
    )
    with pipeline.parallelize():
        letters = pipeline.handle.dead_letters(timeout=30)
        joined = [pipeline.handle.ask(x, timeout=30) for x in range(4)]
        assert [dict(j) for j in joined] == [
            {"same": 0, "tens": 0},
            {"same": 1, "tens": 10},
            {"same": 2},
            {"same": 3, "tens": 30},
        ]
        assert isinstance(joined[2].missing["tens"], ps.StageError)
        assert next(letters).stage == "Fussy"
        with pytest.raises(TypeError):
            joined[0]["same"] = 5  # type: ignore[index]  # read-only


def test_a_required_failure_makes_unstarted_siblings_skip_the_item() -> None:
    """When a required branch fails, a sibling that has not started the item skips it:
    its stage never sees it, and the item's outcome is the failure."""
    busy = threading.Event()
    release = threading.Event()
    seen: list[int] = []

    def slow(x: int) -> int:
        seen.append(x)
        if x == 0:
            busy.set()
            assert release.wait(30)
        return x

    def fails_on_one(x: int) -> int:
        if x == 1:
            raise RuntimeError("bad frame")
        return x

    pipeline = ps.Pipeline()
    pipeline.add(ps.Parallel(slow=slow, quick=fails_on_one), "Fork")
    with pipeline.parallelize(capacity=4):
        first = pipeline.handle.submit(0)
        assert busy.wait(30)  # "slow" is busy with item 0; item 1 waits in its mailbox
        second = pipeline.handle.submit(1)
        with pytest.raises(TimeoutError):
            second.result(timeout=0.2)  # its join still waits for "slow"
        release.set()
        assert dict(first.result(timeout=30)) == {"slow": 0, "quick": 0}
        with pytest.raises(ps.StageError, match="bad frame"):
            second.result(timeout=30)
    assert seen == [0]  # "slow" skipped item 1


def test_parallel_in_serial_mode_runs_the_branches_at_once() -> None:
    """serialize(): one item at a time, but its branches overlap (both wait for each other)."""
    barrier = threading.Barrier(2, timeout=30)

    def meet(x: int) -> int:
        barrier.wait()  # only passes if both branches run at the same time
        return x

    pipeline = ps.Pipeline()
    pipeline.add(ps.Parallel(left=meet, right=meet), "Both")
    with pipeline.serialize():
        assert dict(pipeline.handle.ask(7, timeout=30)) == {"left": 7, "right": 7}


# -- Route --------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_route_order_is_input_order_or_per_key(ordered: bool) -> None:
    """ordered=True: a slow key holds later outputs back; ordered=False: it does not."""
    release = threading.Event()
    entered = threading.Event()

    def slow(x: int) -> int:
        entered.set()
        assert release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Route(
            lambda x: "slow" if x == 0 else "fast",
            {"slow": slow, "fast": lambda x: x},
            ordered=ordered,
        ),
        "ByKey",
    )
    with pipeline.parallelize():
        reader = pipeline.handle.results(timeout=30)
        first = pipeline.handle.submit(0)
        assert entered.wait(30)
        second = pipeline.handle.submit(1)
        if ordered:
            with pytest.raises(TimeoutError):
                second.result(timeout=0.2)
        else:
            assert second.result(timeout=30) == 1
        release.set()
        assert first.result(timeout=30) == 0
        assert [next(reader), next(reader)] == ([0, 1] if ordered else [1, 0])
        assert dict(pipeline.statistics().junction("ByKey").per_key) == {"slow": 1, "fast": 1}


def test_an_unknown_key_is_dropped_with_the_key_named_or_goes_to_the_default() -> None:
    """No branch for a key: ItemDropped naming it, unless a default branch is given."""
    strict = ps.Pipeline()
    strict.add(ps.Route(lambda x: x["cam"], {"front": lambda x: "F"}), "Cams")
    with strict.parallelize():
        assert strict.handle.ask({"cam": "front"}, timeout=30) == "F"
        with pytest.raises(ps.ItemDropped, match="'left'"):
            strict.handle.ask({"cam": "left"}, timeout=30)
    lenient = ps.Pipeline()
    lenient.add(
        ps.Route(
            lambda x: x["cam"], {"front": lambda x: "F", "other": lambda x: "O"}, default="other"
        ),
        "Cams",
    )
    with lenient.parallelize():
        assert lenient.handle.ask({"cam": "left"}, timeout=30) == "O"


def test_a_key_function_that_raises_fails_that_item_only() -> None:
    """The key function is user code: what it raises is that item's StageError."""
    pipeline = ps.Pipeline()
    pipeline.add(ps.Route(lambda x: x["cam"], {"front": lambda x: x}), "Cams")
    with pipeline.parallelize():
        with pytest.raises(ps.StageError, match="Cams"):
            pipeline.handle.ask({}, timeout=30)
        assert pipeline.handle.ask({"cam": "front"}, timeout=30) == {"cam": "front"}


def test_a_route_factory_makes_a_branch_per_key_and_retires_idle_ones() -> None:
    """factory=: one chain per key on first sight; past max_keys the least recently used
    idle branch is retired, its stage cleaned up on its own thread."""
    events: list[str] = []
    lock = threading.Lock()

    class Tracker(ps.Stage):
        def __init__(self, key: int) -> None:
            self.key = key

        def setup(self) -> None:
            with lock:
                events.append(f"setup {self.key} {threading.get_ident()}")

        def __call__(self, x: int) -> tuple[int, int]:
            return self.key, x

        def cleanup(self) -> None:
            with lock:
                events.append(f"cleanup {self.key} {threading.get_ident()}")

    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Route(
            lambda x: x // 10,
            factory=lambda key: ps.Chain().add(Tracker(key), f"Track_{key}"),
            max_keys=2,
        ),
        "PerCamera",
    )
    with pipeline.parallelize():
        assert [pipeline.handle.ask(x, timeout=30) for x in (1, 11, 21)] == [
            (0, 1),
            (1, 11),
            (2, 21),
        ]
        assert wait_until(lambda: any(e.startswith("cleanup 0") for e in events))
        names = [s.name for s in pipeline.statistics().stages]
        assert names == ["Track_1", "Track_2"]
    setups = {e.split()[1]: e.split()[2] for e in events if e.startswith("setup")}
    cleanups = {e.split()[1]: e.split()[2] for e in events if e.startswith("cleanup")}
    assert setups == cleanups  # each key's stage cleaned up once, on its own thread


# -- Tap ----------------------------------------------------------------------------------


def test_a_slow_tap_never_slows_the_main_path_and_counts_its_drops() -> None:
    """A tap branch stuck mid-call: every main output still comes; the tap keeps at most
    its capacity of copies and counts the rest as dropped; its outputs can be read."""
    release = threading.Event()

    def record(x: int) -> str:
        release.wait(30)
        return f"rec{x}"

    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "In")
    pipeline.add(ps.Tap(record=record, capacity=2), "Rec")
    pipeline.add(lambda x: x * 10, "Out")
    with pipeline.parallelize():
        taps = pipeline.handle.results(timeout=30, output="record")
        assert [pipeline.handle.ask(x, timeout=30) for x in range(20)] == [
            x * 10 for x in range(20)
        ]
        stats = pipeline.statistics().junction("Rec")
        assert stats.dropped["record"] >= 15  # at most 2 waiting + 1 in the call
        release.set()
        got = [next(taps) for _ in range(20 - stats.dropped["record"])]
        assert got[0] == "rec0" and all(g.startswith("rec") for g in got)
        with pytest.raises(ps.InvalidArgument, match="side outputs"):
            pipeline.handle.results(output="nope")


# -- control, drain and abort inside branches ---------------------------------------------


def test_restart_and_replace_inside_a_branch_under_load_lose_nothing() -> None:
    """Control calls on stages inside branches while items flow: no loss, no duplicate,
    no reorder."""
    pipeline = ps.Pipeline()
    pipeline.add(
        ps.Parallel(
            a=ps.Chain().add(lambda x: x + 1, "A1").add(lambda x: x * 2, "A2"),
            b=ps.Chain().add(lambda x: -x, "B1"),
        ),
        "Fork",
    )
    done = threading.Event()
    errors: list[BaseException] = []

    def operate() -> None:
        rng = random.Random(5)
        try:
            while not done.is_set():
                name = rng.choice(["A1", "A2", "B1"])
                if rng.random() < 0.5:
                    pipeline.handle.restart_stage(name, timeout=30)
                else:
                    same = {"A1": lambda x: x + 1, "A2": lambda x: x * 2, "B1": lambda x: -x}[name]
                    pipeline.handle.replace_stage(name, same, timeout=30)
        except BaseException as error:
            errors.append(error)

    with pipeline.parallelize(capacity=16):
        operator = threading.Thread(target=operate)
        operator.start()
        try:
            futures = [pipeline.handle.submit(x, timeout=60) for x in range(1500)]
            outputs = settle(futures, timeout=60)
        finally:
            done.set()
            operator.join(60)
        restarts = sum(s.restarts for s in pipeline.handle.status().values())
    assert not errors
    assert [dict(o) for o in outputs] == [{"a": (x + 1) * 2, "b": -x} for x in range(1500)]
    assert restarts > 0


def test_stop_without_drain_settles_items_with_children_out() -> None:
    """stop(drain=False) with joins half done: every future settles at once."""
    release = threading.Event()
    entered = threading.Event()

    def held(x: int) -> int:
        entered.set()
        release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(ps.Parallel(held=held, quick=lambda x: x), "Fork")
    pipeline.parallelize(capacity=8)
    futures = [pipeline.handle.submit(x) for x in range(5)]
    assert entered.wait(30)
    stopper = threading.Thread(target=pipeline.handle.stop, kwargs={"drain": False})
    stopper.start()
    for future in futures:
        with pytest.raises(ps.PipelineTerminated):
            future.result(timeout=30)
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()


def test_drain_with_a_stopped_stage_inside_a_branch_returns() -> None:
    """A stage stopped inside a branch: cleanup() drops what it holds, naming it, and the
    joins settle: the required branch's drop drops the item."""
    pipeline = ps.Pipeline()
    pipeline.add(ps.Parallel(a=lambda x: x, b=ps.Chain().add(lambda x: x, "Held")), "Fork")
    pipeline.parallelize()
    pipeline.handle.stop_stage("Held")
    future = pipeline.handle.submit(1)
    cleaner = threading.Thread(target=pipeline.cleanup)
    cleaner.start()
    cleaner.join(30)
    assert not cleaner.is_alive()
    with pytest.raises(ps.ItemDropped, match="'Held' was stopped"):
        future.result(timeout=0)


def test_graph_names_are_unique_across_branches_and_combinators_are_not_controlled() -> None:
    """A name used twice anywhere in the graph is refused; a junction is not a stage."""
    with pytest.raises(ps.InvalidStageName, match="'X'"):
        ps.Parallel(a=ps.Chain().add(lambda x: x, "X"), b=ps.Chain().add(lambda x: x, "X"))
    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "a")
    with pytest.raises(ps.InvalidStageName, match="'a'"):
        pipeline.add(ps.Parallel(a=lambda x: x), "Fork")
    pipeline.add(ps.Parallel(b=lambda x: x), "Fork")
    with pytest.raises(ps.InvalidArgument, match="on_error"):
        pipeline.add(ps.Tap(t=lambda x: x), "T", on_error="restart")
    with pipeline.parallelize():
        with pytest.raises(ps.InvalidArgument, match="junction"):
            pipeline.handle.restart_stage("Fork")
        assert pipeline.handle.restart_stage("b", timeout=30) is True


def test_statistics_of_a_graph_point_at_what_holds_it_up() -> None:
    """The critical path follows the branch that holds joins up (and a factory route's
    slowest branch); a slow tap is never the bottleneck; the stage after a junction does
    not count the branches' time as its own wait; a tap's pending is 0 after a stop."""
    never = threading.Event()

    def slow(x: int) -> int:
        never.wait(0.01)
        return x

    def slower(x: int) -> int:
        never.wait(0.03)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(lambda x: x, "Decode")
    pipeline.add(ps.Parallel(fast=lambda x: x, slow=ps.Chain().add(slow, "Segment")), "Perceive")
    pipeline.add(lambda joined: joined["fast"], "Fuse")
    pipeline.add(
        ps.Route(
            lambda x: x % 2,
            factory=lambda key: ps.Chain().add(slower if key else (lambda x: x), f"Track_{key}"),
        ),
        "PerKey",
    )
    pipeline.add(ps.Tap(record=ps.Chain().add(slower, "Record"), capacity=1), "Rec")
    with pipeline.parallelize():
        for x in range(12):
            pipeline.handle.ask(x, timeout=30)
        stats = pipeline.statistics()
        assert stats.critical_path == ("Decode", "Segment", "Fuse", "Track_1")
        assert stats.bottleneck != "Record"
        assert stats.stage("Fuse").wait_time.p50 < 0.005  # not Segment's 10 ms
        assert stats.junction("Perceive").waited_on["slow"] > 0.9
        paths = [s.path for s in stats.stages]
        assert paths.index("PerKey/1/Track_1") < paths.index("Rec/record/Record")
    assert pipeline.statistics().junction("Rec").pending == 0


def test_joined_is_read_only_all_the_way_down() -> None:
    """A Joined's outputs and missing mappings cannot be changed by a later stage."""
    pipeline = ps.Pipeline()
    pipeline.add(ps.Parallel(a=lambda x: x), "Fork")
    with pipeline.parallelize():
        joined = pipeline.handle.ask(1, timeout=30)
    with pytest.raises(TypeError):
        joined.outputs["a"] = 2
    with pytest.raises(TypeError):
        joined.missing["a"] = None


def test_a_tap_branch_keeps_its_own_on_full() -> None:
    """Chain(on_full="reject") inside a Tap rejects new copies instead of dropping old ones."""
    release = threading.Event()
    entered = threading.Event()
    seen: list[int] = []

    def record(x: int) -> int:
        seen.append(x)
        entered.set()
        release.wait(30)
        return x

    pipeline = ps.Pipeline()
    pipeline.add(ps.Tap(rec=ps.Chain(capacity=2, on_full="reject").add(record, "Record")), "T")
    with pipeline.parallelize():
        pipeline.handle.ask(0, timeout=30)
        assert entered.wait(30)
        for x in range(1, 6):
            pipeline.handle.ask(x, timeout=30)
        release.set()
        assert wait_until(lambda: len(seen) == 2)
    assert seen == [0, 1]  # 0 at work and 1 waiting; the newer copies were refused
