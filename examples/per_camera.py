"""Several cameras, one tracker per camera: route each frame by its camera with ps.Route.

Frames from several cameras arrive interleaved on one pipeline::

    Decode -> PerCamera{one Track_<camera> branch per camera} -> Publish

``PerCamera`` is a ``ps.Route`` keyed by the frame's camera. Its ``factory`` makes a
branch (a chain with one ``Tracker`` stage, named ``Track_<camera>``) the first time a
camera shows up, so each camera's tracker keeps its own state on its own thread. With
``max_keys=3`` at most three trackers live at once: when a fourth camera appears, the
least recently used tracker with no frame inside is retired, and its ``cleanup()`` runs
on its own thread. Here camera ``left`` goes offline halfway and ``aux`` comes online,
so ``Track_left`` is retired when ``aux`` first sends a frame.

The ``rear`` camera's tracker is slow. The script runs the same frames twice:

- ``ordered=True`` (the default): outputs leave in input order, so a ``front`` frame
  that came just after a ``rear`` frame waits for it;
- ``ordered=False``: each camera's frames stay in order, but a slow camera never delays
  another, so ``front`` and ``left`` keep their own latency.

It prints each camera's latency in both runs, the route's per-camera counts, when each
tracker was set up and cleaned up, and checks that every camera's frames came out in
their own order.

Run: ``python examples/per_camera.py [--frames 100] [--rate 50]``. Needs numpy.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import pystream_actors as ps

HEIGHT, WIDTH = 120, 160
TRACK_MS = {"rear": 12.0}
"""Tracker time per frame for a camera; the others take ``DEFAULT_TRACK_MS``."""
DEFAULT_TRACK_MS = 1.0
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Frame:
    """One frame of one camera."""

    camera: str
    index: int
    """The frame's number for its camera."""
    image: Image


def cameras_at(tick: int, ticks: int) -> tuple[str, ...]:
    """Which cameras send a frame at ``tick``: ``left`` gives way to ``aux`` halfway."""
    side = "left" if tick < ticks // 2 else "aux"
    return ("rear", "front", side)


def make_frame(camera: str, index: int, rng: np.random.Generator) -> Frame:
    """A dark image with one bright spot that moves with the frame number."""
    image = rng.integers(0, 30, size=(HEIGHT, WIDTH), dtype=np.uint8)
    x, y = (index * 3) % (WIDTH - 8), (index * 2) % (HEIGHT - 8)
    image[y : y + 8, x : x + 8] = 255
    return Frame(camera, index, image)


class Tracker(ps.Stage):
    """Follows the bright spot of one camera; keeps state between that camera's frames."""

    def __init__(self, camera: str, events: list[str]) -> None:
        self.camera = camera
        self.events = events
        self.track_s = TRACK_MS.get(camera, DEFAULT_TRACK_MS) / 1000
        self.position: tuple[float, float] | None = None
        self.last_index = -1
        self._pause: threading.Event | None = None

    def setup(self) -> None:
        """Start the tracker on its own thread."""
        self._pause = threading.Event()
        self.events.append(f"setup {self.camera}")

    def __call__(self, frame: Frame) -> dict[str, Any]:
        assert self._pause is not None and frame.camera == self.camera
        if frame.index <= self.last_index:
            raise RuntimeError(f"{self.camera}: frame {frame.index} after {self.last_index}")
        self.last_index = frame.index
        self._pause.wait(self.track_s)  # the model's time, releasing the GIL
        rows, cols = np.nonzero(frame.image > 200)
        spot = (float(cols.mean()), float(rows.mean())) if rows.size else None
        moved = None
        if spot is not None and self.position is not None:
            moved = round(
                float(np.hypot(spot[0] - self.position[0], spot[1] - self.position[1])), 1
            )
        self.position = spot or self.position
        return {"camera": frame.camera, "index": frame.index, "spot": spot, "moved": moved}

    def cleanup(self) -> None:
        """Retired, or the pipeline stopped: forget the track."""
        self.position = None
        self.events.append(f"cleanup {self.camera}")


def build_pipeline(ordered: bool, events: list[str]) -> ps.Pipeline:
    """Decode -> PerCamera (one tracker per camera, at most three) -> Publish."""
    pipeline = ps.Pipeline(name="per_camera")
    pipeline.add(lambda frame: frame, "Decode")  # a real decoder would go here
    pipeline.add(
        ps.Route(
            lambda frame: frame.camera,
            factory=lambda camera: ps.Chain().add(Tracker(camera, events), f"Track_{camera}"),
            max_keys=3,
            ordered=ordered,
        ),
        "PerCamera",
    )
    pipeline.add(lambda track: {**track, "published": time.perf_counter()}, "Publish")
    return pipeline


def run(
    ordered: bool, ticks: int, rate: float
) -> tuple[dict[str, list[float]], list[dict[str, Any]], ps.PipelineStatistics, list[str]]:
    """Every camera's frames through a fresh pipeline.

    Returns the latencies per camera, the outputs in the order they came out, the
    statistics and the trackers' setup/cleanup events.
    """
    events: list[str] = []
    pipeline = build_pipeline(ordered, events)
    rng = np.random.default_rng(7)
    submitted: list[tuple[str, float, Future[Any]]] = []
    with pipeline.parallelize(capacity=8, on_full="block"):
        outputs = pipeline.handle.results(timeout=2.0)  # every output from now on, in order
        start = time.perf_counter()
        for tick in range(ticks):
            delay = start + tick / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for camera in cameras_at(tick, ticks):
                frame = make_frame(camera, tick, rng)
                submitted.append((camera, time.perf_counter(), pipeline.handle.submit(frame)))
        latencies: dict[str, list[float]] = defaultdict(list)
        for camera, sent, future in submitted:
            latencies[camera].append(future.result(timeout=10)["published"] - sent)
        came_out = [output for _, output in zip(submitted, outputs)]
        outputs.close()
        stats = pipeline.statistics()
    return latencies, came_out, stats, events


def in_camera_order(outputs: list[dict[str, Any]]) -> bool:
    """Whether each camera's outputs came out in its own frame order."""
    last: dict[str, int] = {}
    for output in outputs:
        if output["index"] <= last.get(output["camera"], -1):
            return False
        last[output["camera"]] = output["index"]
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--frames`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--frames", type=int, default=100, help="frames per camera and run (default 100)"
    )
    parser.add_argument(
        "--rate", type=float, default=50.0, help="frames/s of each camera (default 50)"
    )
    args = parser.parse_args(argv)
    if args.frames < 2 or args.rate <= 0:
        parser.error("--frames must be at least 2 and --rate positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cameras with ``ordered=True`` then ``ordered=False``; compare."""
    args = parse_args(argv)
    print(
        f"{args.frames} frames per camera at {args.rate:g} frames/s; tracker "
        f"{DEFAULT_TRACK_MS:g} ms per frame, {TRACK_MS['rear']:g} ms for 'rear'"
    )
    ok = True
    for ordered in (True, False):
        latencies, outputs, stats, events = run(ordered, args.frames, args.rate)
        print(f"\nRoute(ordered={ordered}): latency per camera (submit to output)")
        for camera, values in sorted(latencies.items()):
            p50, p99 = np.percentile(values, [50, 99]) * 1000
            print(f"  {camera:<6} {len(values):4d} frames  p50 {p50:5.1f} ms  p99 {p99:5.1f} ms")
        route = stats.junction("PerCamera")
        print(f"  frames per camera: {dict(sorted(route.per_key.items()))}")
        print(
            f"  trackers live at the end: {[s.name for s in stats.stages if s.path.startswith('PerCamera/')]}"
        )
        print(f"  tracker events: {', '.join(events)}")
        order_kept = in_camera_order(outputs) and len(outputs) == 3 * args.frames
        ok = ok and order_kept and "cleanup left" in events
        print(f"  each camera's frames in order: {order_kept}")
    if not ok:
        print("ERROR: a camera's frames came out of order or left was not retired", file=sys.stderr)
        return 1
    print("\nper-camera order kept in both runs; 'left' retired when 'aux' came")
    return 0


if __name__ == "__main__":
    sys.exit(main())
