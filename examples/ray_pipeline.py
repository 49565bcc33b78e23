"""Stages on Ray: a frame pipeline whose heavy stages run in Ray actors.

Decode runs here, on a thread; Detect runs in two Ray actors (a Stage class: each actor
makes its own instance and runs setup() where it is placed); Summarise runs in a third Ray
actor and receives Detect's output straight from the object store (the frame never comes
back to this process in between); Publish runs here again. Outputs keep input order, a
failed item is a StageError naming its stage, and the supervisor restarts a Ray actor that
dies, exactly as for local stages.

    python examples/ray_pipeline.py                       # starts a local Ray
    python examples/ray_pipeline.py --address auto        # a running cluster (ray start)
    pystream-actors run examples/ray_pipeline.py:build --ray-address auto --duration 5

Needs the ray extra: pip install 'pystream-actors[ray]'.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from typing import Any

import pystream_actors as ps

FRAME_SIDE = 512  # 512 x 512 float32: 1 MiB per frame


def decode(index: int) -> dict[str, Any]:
    """Runs here: a tiny record; the frame itself is made where it is used."""
    return {"index": index, "seed": index % 7}


class Detect(ps.Stage):
    """Runs in a Ray actor: builds a 1 MiB frame and "detects" its bright spots."""

    def setup(self) -> None:
        import numpy as np

        self.np = np  # imported in the Ray actor, where the work happens
        self.pid = os.getpid()

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        np = self.np
        rng = np.random.default_rng(record["seed"])
        frame = rng.random((FRAME_SIDE, FRAME_SIDE), dtype=np.float32)
        time.sleep(0.005)  # a model's few milliseconds
        return {**record, "frame": frame, "spots": int((frame > 0.999).sum()), "by": self.pid}

    def cleanup(self) -> None:
        self.np = None


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """Runs in a Ray actor too: the 1 MiB frame came from Detect's actor, not from here."""
    frame = record.pop("frame")
    return {**record, "mean": round(float(frame.mean()), 3)}


def publish(record: dict[str, Any]) -> dict[str, Any]:
    """Runs here: only the small summary comes back to this process."""
    return record


def build(input_generator: Any = None) -> ps.Pipeline:
    """The pipeline (``pystream-actors run`` calls this with no arguments)."""
    pipeline = ps.Pipeline(
        name="RayFrames", input_generator=input_generator or itertools.count().__next__
    )
    pipeline.add(decode, "Decode")
    pipeline.add(
        Detect,
        "Detect",
        executor="ray",
        workers=2,
        on_error="restart",
        ray_options={"num_cpus": 0.5},  # num_gpus=1, resources={...}, runtime_env=... go here
    )
    pipeline.add(summarise, "Summarise", executor="ray", ray_options={"num_cpus": 0.5})
    pipeline.add(publish, "Publish")
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--address", help="a Ray cluster's address (default: a local Ray)")
    args = parser.parse_args()
    import ray

    ray.init(
        address=args.address or "local",
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        pipeline = build()
        with pipeline.parallelize(capacity=16):
            futures = [pipeline.handle.submit(i) for i in range(args.frames)]
            results = [f.result(timeout=120) for f in futures]
            status = pipeline.handle.status()
            stats = {s.name: s for s in pipeline.statistics().stages}
        assert [r["index"] for r in results] == list(range(args.frames))
        workers = sorted({r["by"] for r in results})
        print(f"{len(results)} frames in input order, detected by Ray actors {workers}")
        print(f"Detect ran on node(s) {sorted(set(status['Detect'].nodes))}")
        print(
            f"Detect service time p50 {stats['Detect'].service_time.p50 * 1000:.1f} ms "
            "(measured inside the Ray actor)"
        )
        print("every frame came back in order")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
