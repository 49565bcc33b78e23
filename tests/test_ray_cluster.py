"""Ray stages on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster``).

The second node carries a custom resource; a stage asking for it runs there. Removing that
node mid-stream under ``on_error="restart"`` fails only the items its Ray actor held; the
stage comes back once a node with the resource returns, and no other item is lost or
reordered.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

ray = pytest.importorskip("ray")

import pystream_actors as ps  # noqa: E402
from tests.ray_support import assert_gone, descendants  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ON_B = {"num_cpus": 0, "resources": {"node_b": 1}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import ray.cloudpickle
    from ray.cluster_utils import Cluster

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    before = descendants(os.getpid())
    made = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": 100 << 20,
            "include_dashboard": False,
        },
    )
    made.add_node(num_cpus=1, resources={"node_b": 10}, object_store_memory=100 << 20)
    ray.init(address=made.address, logging_level="ERROR", log_to_driver=False)
    made.wait_for_nodes()
    yield made
    ours = descendants(os.getpid()) - before
    ray.shutdown()
    made.shutdown()
    assert_gone(ours)


def where(x: int) -> tuple[int, str]:
    time.sleep(0.02)
    return x * 2, ray.get_runtime_context().get_node_id()


def node_with(cluster: Any, resource: str) -> Any:
    """The one worker node (it is the one with ``resource``)."""
    (node,) = cluster.worker_nodes
    return node


@pytest.mark.timeout(180)
def test_a_stage_pinned_by_a_resource_runs_on_that_node(cluster: Any) -> None:
    node_b = node_with(cluster, "node_b").node_id
    pipeline = ps.Pipeline(name="cluster_pin")
    pipeline.add(where, "OnB", executor="ray", ray_options=ON_B)
    with pipeline.parallelize(capacity=8):
        value, node = pipeline.handle.ask(3, timeout=60)
        assert pipeline.handle.status()["OnB"].nodes == (node_b,)
    assert (value, node) == (6, node_b)


@pytest.mark.timeout(300)
def test_losing_the_node_fails_only_its_items_and_the_stage_comes_back(cluster: Any) -> None:
    node_b = node_with(cluster, "node_b")
    arrivals: list[Any] = []

    def arrive(x: Any) -> Any:
        arrivals.append(x)
        return x

    pipeline = ps.Pipeline(name="cluster_loss")
    pipeline.add(
        where,
        "OnB",
        executor="ray",
        on_error="restart",
        restart_backoff=(0.05, 0.5),
        ray_options={**ON_B, "max_in_flight": 4},
    )
    pipeline.add(arrive, "Arrive")
    with pipeline.parallelize(capacity=64):
        futures = [pipeline.handle.submit(i) for i in range(60)]
        futures[10].result(timeout=60)
        cluster.remove_node(node_b)
        time.sleep(1.0)  # the stage has no node to run on for a while
        new_b = cluster.add_node(
            num_cpus=1, resources={"node_b": 10}, object_store_memory=100 << 20
        )
        cluster.wait_for_nodes()
        result = []
        for future in futures:
            try:
                result.append(("ok", future.result(timeout=120)))
            except ps.StageError as exc:
                result.append(("error", exc))
        status = pipeline.handle.status()["OnB"]
        assert status.state == "running"
        assert status.nodes == (new_b.node_id,)
    failed = [i for i, (kind, _) in enumerate(result) if kind == "error"]
    assert 1 <= len(failed) <= 4, failed  # what the lost actor held
    assert failed == list(range(failed[0], failed[0] + len(failed)))
    for i in failed:
        assert result[i][1].stage == "OnB"
        assert isinstance(result[i][1].__cause__, ray.exceptions.RayError)
    oks = [v for kind, v in result if kind == "ok"]
    assert [v[0] for v in oks] == [i * 2 for i in range(60) if i not in failed]
    assert arrivals == oks
    assert oks[0][1] == node_b.node_id and oks[-1][1] == new_b.node_id
