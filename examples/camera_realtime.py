"""A camera faster than its pipeline: keep the newest frame, bound the latency.

A fake camera produces numpy frames at a fixed rate (100 frames/s by default) with a
drift-free clock (``start_loop``). The pipeline behind it (preprocess, detect,
annotate) manages only about 70 frames/s, so it cannot keep every frame. The
real-time recipe:

- ``capacity=2``: about two frames inside the pipeline (never more than one per stage
  at work plus the newest), so a frame never waits long;
- ``on_full="drop_oldest"``: the camera is never blocked; a new frame always gets in
  and the oldest one that no stage is working on is dropped;
- ``max_age``: a frame that still waited too long is dropped before a stage starts it;
- the display reads ``handle.latest()``: the newest result, older unread ones skipped.

The script prints the end-to-end latency (capture to display) p50/p99, how many
frames were dropped and why, and each stage's cost. Try ``--on-full block`` to see the
camera being refused instead: frames then wait for room, so the latency grows a little.

Run: ``python examples/camera_realtime.py [--duration 3] [--fps 100]``. Needs numpy.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import pystream_actors as ps

HEIGHT, WIDTH = 360, 640
Image = npt.NDArray[np.uint8]


@dataclass
class Frame:
    """One camera frame and what the stages add to it."""

    index: int
    captured: float
    """``time.perf_counter()`` when the camera produced the frame."""
    image: Image
    gray: npt.NDArray[np.float32] | None = None
    detections: list[tuple[int, int, int, int]] | None = None


class FakeCamera:
    """Produces frames of a bright square moving over a noisy background.

    A few noise backgrounds are made once and reused, so producing a frame costs a copy
    and a rectangle, like reading a real camera's buffer.
    """

    def __init__(self, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self._backgrounds = [
            rng.integers(0, 60, size=(HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(4)
        ]
        self._counter = itertools.count()
        self.frames = 0

    def read(self) -> Frame:
        """The next frame, stamped with its capture time."""
        index = next(self._counter)
        self.frames = index + 1
        image = self._backgrounds[index % len(self._backgrounds)].copy()
        x = (index * 7) % (WIDTH - 40)
        y = (index * 3) % (HEIGHT - 40)
        image[y : y + 40, x : x + 40] = 250
        return Frame(index, time.perf_counter(), image)


def preprocess(frame: Frame) -> Frame:
    """Half resolution, grayscale, scaled to 0..1: what a detector takes as input."""
    small = frame.image[::2, ::2].astype(np.float32)
    frame.gray = small.mean(axis=2) / 255.0
    return frame


class Detector(ps.Stage):
    """Finds bright regions; the pause stands in for a model running on an accelerator.

    A ``Stage`` so that the "model" is loaded in ``setup()``, on the stage's own thread.
    """

    def __init__(self, inference_ms: float) -> None:
        self.inference_s = inference_ms / 1000
        self._pause: threading.Event | None = None

    def setup(self) -> None:
        """Load the model (here: an event to wait on, which releases the GIL)."""
        self._pause = threading.Event()

    def __call__(self, frame: Frame) -> Frame:
        """Bounding box of the pixels brighter than 0.9, in full-resolution pixels."""
        assert self._pause is not None and frame.gray is not None
        self._pause.wait(self.inference_s)
        rows, cols = np.nonzero(frame.gray > 0.9)
        if rows.size:
            top, left = int(rows.min()) * 2, int(cols.min()) * 2
            bottom, right = int(rows.max()) * 2, int(cols.max()) * 2
            frame.detections = [(left, top, right, bottom)]
        else:
            frame.detections = []
        return frame

    def cleanup(self) -> None:
        """Unload the model."""
        self._pause = None


def annotate(frame: Frame) -> dict[str, Any]:
    """The small result the display needs; the images are released here."""
    return {
        "index": frame.index,
        "captured": frame.captured,
        "detections": frame.detections or [],
    }


def build_pipeline(camera: FakeCamera, inference_ms: float) -> ps.Pipeline:
    """Preprocess -> Detect -> Annotate, fed by the camera."""
    pipeline = ps.Pipeline(input_generator=camera.read, name="camera")
    pipeline.add(preprocess, "Preprocess")
    pipeline.add(Detector(inference_ms), "Detect")
    pipeline.add(annotate, "Annotate")
    return pipeline


def display(handle: ps.PipelineHandle, duration: float) -> list[float]:
    """Show the newest result until ``duration`` is over.

    Returns the capture-to-display latency of each frame shown.
    """
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        result = handle.latest(timeout=0.1)  # waits for a new result, at most 0.1 s
        if result is None:
            continue
        latencies.append(time.perf_counter() - result["captured"])
    return latencies


def ms(seconds: float) -> str:
    """Seconds as milliseconds."""
    return f"{seconds * 1000:.1f} ms"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--duration`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--fps", type=float, default=100.0, help="camera rate (default 100)")
    parser.add_argument(
        "--inference-ms", type=float, default=14.0, help="detector time per frame (default 14)"
    )
    parser.add_argument("--capacity", type=int, default=2, help="frames inside (default 2)")
    parser.add_argument(
        "--max-age", type=float, default=0.05, help="seconds before a frame is stale (0.05)"
    )
    parser.add_argument(
        "--on-full", choices=("drop_oldest", "block", "reject"), default="drop_oldest"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.fps <= 0:
        parser.error("--duration and --fps must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the camera for ``--duration`` seconds and report latency and drops."""
    args = parse_args(argv)
    camera = FakeCamera()
    pipeline = build_pipeline(camera, args.inference_ms)
    print(
        f"camera {args.fps:g} frames/s of {WIDTH}x{HEIGHT}; pipeline capacity {args.capacity}, "
        f"on_full={args.on_full!r}, max_age={args.max_age:g} s; running {args.duration:g} s"
    )
    with pipeline.parallelize(capacity=args.capacity, on_full=args.on_full, max_age=args.max_age):
        pipeline.start_loop(period=1 / args.fps)
        latencies = display(pipeline.handle, args.duration)
        pipeline.stop_loop()
    stats = pipeline.statistics()  # final figures, after every frame inside finished
    refused = pipeline.handle.rejected

    print(f"\nframes produced by the camera: {camera.frames} ({pipeline.missed_ticks} late ticks)")
    print(f"processed to the end:          {stats.completed}")
    print(f"shown on the display:          {len(latencies)}")
    print(
        f"dropped: {stats.dropped_on_full} when full (drop_oldest), "
        f"{stats.dropped_by_deadline} older than max_age; refused by the pipeline: {refused}"
    )
    if latencies:
        p50, p99 = np.percentile(latencies, [50, 99])
        print(f"end-to-end latency (capture to display): p50 {ms(p50)}, p99 {ms(p99)}")
    print(
        f"pipeline latency (acceptance to output): p50 {ms(stats.latency.p50)}, "
        f"p99 {ms(stats.latency.p99)}"
    )
    for stage in stats.stages:
        print(f"  {stage.name:<10} {ms(stage.service_time.mean):>9} per frame")
    print(f"bottleneck: {stats.bottleneck}")
    return 0 if stats.completed else 1


if __name__ == "__main__":
    sys.exit(main())
