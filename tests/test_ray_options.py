"""executor="ray" options, checked at add(); without Ray installed, a clear MissingExtra."""

from __future__ import annotations

import sys

import pytest

import pystream_actors as ps


def double(x: int) -> int:
    return x * 2


@pytest.mark.parametrize("key", ["max_restarts", "max_task_retries", "max_concurrency"])
def test_options_the_backend_owns_are_refused(key: str) -> None:
    pipeline = ps.Pipeline(name="opts")
    with pytest.raises(ps.InvalidArgument, match="owns them"):
        pipeline.add(double, "D", executor="ray", ray_options={key: 1})


def test_unknown_and_misplaced_options_are_refused() -> None:
    pipeline = ps.Pipeline(name="opts")
    with pytest.raises(ps.InvalidArgument, match="unknown ray_options"):
        pipeline.add(double, "D", executor="ray", ray_options={"num_cpu": 1})
    with pytest.raises(ps.InvalidArgument, match="executor='ray'"):
        pipeline.add(double, "D", ray_options={"num_cpus": 1})
    with pytest.raises(ps.InvalidArgument, match="num_gpus"):
        pipeline.add(double, "D", executor="ray", ray_options={"num_gpus": -1})
    with pytest.raises(ps.InvalidArgument, match="max_in_flight"):
        pipeline.add(double, "D", executor="ray", ray_options={"max_in_flight": 0})
    with pytest.raises(ps.InvalidArgument, match="ray_options"):
        ps.Chain().add(double, "D", executor="ray", ray_options={"lifetime": "detached"})


def test_without_ray_executor_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.cloudpickle", None)
    pipeline = ps.Pipeline(name="opts")
    with pytest.raises(ps.MissingExtra, match=r"pip install pystream-actors\[ray\]"):
        pipeline.add(double, "D", executor="ray")
    pipeline.add(double, "Local")  # the core needs no Ray
    with pipeline.serialize():
        assert pipeline.handle.ask(2, timeout=5) == 4
