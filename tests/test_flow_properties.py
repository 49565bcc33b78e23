"""Property: every accepted item ends in exactly one outcome, and outputs keep input order."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pystream_actors as ps


def make_stage(index: int, failing: frozenset[int]) -> Any:
    def stage(item: tuple[int, int]) -> tuple[int, int]:
        number, hops = item
        if (number, index) in failing:
            raise RuntimeError(f"planned failure of {number} at stage {index}")
        return number, hops + 1

    return stage


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    stage_count=st.integers(1, 4),
    capacity=st.integers(1, 8),
    on_full=st.sampled_from(["block", "reject", "drop_oldest"]),
    mode=st.sampled_from(["serialize", "parallelize"]),
    items=st.integers(1, 60),
    failures=st.sets(st.tuples(st.integers(0, 59), st.integers(0, 3)), max_size=15),
)
def test_every_accepted_item_has_exactly_one_outcome(
    stage_count: int,
    capacity: int,
    on_full: str,
    mode: str,
    items: int,
    failures: set[tuple[int, int]],
) -> None:
    """accepted = results + stage errors + drops; outputs come out in input order."""
    pipeline = ps.Pipeline()
    for index in range(stage_count):
        pipeline.add(make_stage(index, frozenset(failures)))
    getattr(pipeline, mode)(capacity=capacity, on_full=on_full)
    stream = pipeline.handle.results(timeout=30)
    accepted: list[tuple[int, Future[Any]]] = []
    refused = 0
    for number in range(items):
        try:
            accepted.append((number, pipeline.handle.submit((number, 0), timeout=30)))
        except ps.PipelineFull:
            refused += 1
    outcomes = {"ok": 0, "failed": 0, "dropped": 0}
    outputs: list[int] = []
    for number, future in accepted:
        try:
            value = future.result(timeout=30)
        except ps.StageError as error:
            outcomes["failed"] += 1
            assert (number, int(error.stage.split("_")[1]) - 1) in failures
        except ps.ItemDropped:
            outcomes["dropped"] += 1
        else:
            outcomes["ok"] += 1
            assert value == (number, stage_count)
            outputs.append(number)
    streamed = [next(stream)[0] for _ in range(outcomes["ok"])]
    stats = pipeline.statistics()
    pipeline.cleanup()

    assert len(accepted) + refused == items
    assert stats.accepted == len(accepted)
    assert (stats.completed, stats.failed, stats.dropped) == (
        outcomes["ok"],
        outcomes["failed"],
        outcomes["dropped"],
    )
    assert stats.accepted == stats.completed + stats.failed + stats.dropped
    assert outputs == sorted(outputs)
    assert streamed == outputs
    if on_full != "drop_oldest":
        assert outcomes["dropped"] == 0
    if on_full == "block":
        assert refused == 0
    assert threading.active_count() < 200
