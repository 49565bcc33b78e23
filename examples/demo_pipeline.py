"""The pystream_actors demo: one OpenCV pipeline run serial, then parallel, on the same frames.

Five image-processing stages (denoise, colour conversion, edges, morphology, contour
summary) process generated 480x720 BGR frames. The same stages run first in serial mode
(one frame in flight, lock-step) and then in parallel mode (every stage on its own actor
thread), and the script prints, per mode, each stage's mean service time and throughput,
the end-to-end latency and throughput, the bottleneck stage, and the speed-up.

The OpenCV calls release the GIL, so the stage threads really overlap. OpenCV is limited
to one thread per call by default (``--cv-threads``) so that the speed-up shown comes from
the pipeline, not from OpenCV's own thread pool.

Run it with ``make demo`` or ``python examples/demo_pipeline.py --frames 200``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pystream_actors as ps

try:
    import cv2
    import numpy as np
except ImportError as missing:
    print(
        f"This demo needs OpenCV and numpy ({missing.name} is not installed).\n"
        "Install them with: pip install 'pystream-actors[demo]'",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

HEIGHT, WIDTH = 480, 720
FRAME_POOL = 12  # distinct frames, reused in turn: keeps memory small for long runs
RESULT_TIMEOUT = 30.0  # seconds to wait for one frame's output before giving up

Frame = np.ndarray[Any, np.dtype[np.uint8]]
Item = dict[str, Any]
Kernel = np.ndarray[Any, np.dtype[Any]]


# -- the input -----------------------------------------------------------------------------


def make_frames(count: int, seed: int = 7) -> list[Frame]:
    """Synthetic camera frames: a gradient, coloured shapes and sensor noise.

    Real structure (not pure noise) gives the edge and contour stages realistic work.
    """
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 90, WIDTH, dtype=np.float32)
    frames: list[Frame] = []
    for _ in range(count):
        base = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
        base[:] = ramp[None, :, None]
        frame = base.astype(np.uint8)
        for _ in range(14):
            color = tuple(int(c) for c in rng.integers(60, 256, size=3))
            x, y = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
            size = int(rng.integers(15, 70))
            if rng.random() < 0.5:
                cv2.circle(frame, (x, y), size, color, thickness=-1)
            else:
                cv2.rectangle(frame, (x, y), (x + 2 * size, y + size), color, thickness=-1)
        noise = rng.normal(0.0, 12.0, size=frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return frames


# -- the stages: plain functions where no state is needed ------------------------------------


def denoise(item: Item) -> Item:
    """Remove sensor noise but keep borders sharp, so edges are found on shapes, not grain."""
    item["smooth"] = cv2.bilateralFilter(item["frame"], 5, 50, 50)
    return item


def convert(item: Item) -> Item:
    """Contrast-equalised grayscale for edges, HSV for a mask of the coloured objects."""
    smooth = item["smooth"]
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))  # cheap; no shared state
    item["gray"] = clahe.apply(cv2.cvtColor(smooth, cv2.COLOR_BGR2GRAY))
    hsv = cv2.cvtColor(smooth, cv2.COLOR_BGR2HSV)
    item["hsv"] = hsv
    item["mask"] = cv2.inRange(hsv, (0, 80, 60), (180, 255, 255))
    return item


def edges(item: Item) -> Item:
    """Canny edges at two scales, merged: thin outlines plus the coarse object borders."""
    gray = item["gray"]
    fine = cv2.Canny(gray, 40, 120)
    coarse = cv2.pyrUp(cv2.Canny(cv2.pyrDown(gray), 30, 90))
    item["edges"] = cv2.bitwise_or(fine, coarse)
    return item


# -- the stages: Stage subclasses where a resource is prepared and released -----------------


class Morphology(ps.Stage):
    """Closes gaps in the edges and the mask so each object becomes one solid blob.

    The structuring elements are built in ``setup()``, on the stage's own thread, the way
    a real stage would load a model or open a device; ``cleanup()`` releases them.
    """

    def __init__(self, size: int = 15) -> None:
        self.size = size
        self.kernel: Kernel | None = None
        self.small: Kernel | None = None

    def setup(self) -> None:
        """Build the kernels once, before the first frame arrives."""
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.size, self.size))
        self.small = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))

    def __call__(self, item: Item) -> Item:
        """Closed edges OR-ed with the opened colour mask: the blobs to count."""
        if self.kernel is None or self.small is None:
            raise RuntimeError("Morphology used before setup()")
        closed = cv2.morphologyEx(item["edges"], cv2.MORPH_CLOSE, self.kernel)
        mask = cv2.morphologyEx(item["mask"], cv2.MORPH_OPEN, self.small)
        item["blobs"] = cv2.dilate(cv2.bitwise_or(closed, mask), self.small, iterations=2)
        return item

    def cleanup(self) -> None:
        """Drop the kernels; a later run sets the stage up again."""
        self.kernel = None
        self.small = None


class Summarize(ps.Stage):
    """Turns the blobs into a small result: object count, sizes and the dominant hue.

    The images are dropped here, so the outputs the caller keeps stay tiny. The stage
    also keeps a running total, reported by ``cleanup()`` at the end of the run.
    """

    def __init__(self, min_area: int = 200) -> None:
        self.min_area = min_area
        self.frames_seen = 0
        self.objects_seen = 0
        self.totals: list[tuple[int, int]] = []

    def __call__(self, item: Item) -> Item:
        """Label the blobs, keep those big enough to be objects, histogram their hue."""
        _, _, stats, _ = cv2.connectedComponentsWithStats(item["blobs"], connectivity=8)
        areas = sorted(int(a) for a in stats[1:, cv2.CC_STAT_AREA] if a >= self.min_area)
        hue = cv2.calcHist([item["hsv"]], [0], item["mask"], [18], [0, 180]).ravel()
        self.frames_seen += 1
        self.objects_seen += len(areas)
        return {
            "index": item["index"],
            "objects": len(areas),
            "largest_area": areas[-1] if areas else 0,
            "dominant_hue": int(np.argmax(hue)) * 10,
        }

    def cleanup(self) -> None:
        """Record this run's totals and reset the counters for the next run."""
        self.totals.append((self.frames_seen, self.objects_seen))
        self.frames_seen = 0
        self.objects_seen = 0


# -- running a mode -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """What one mode produced: the outputs in order, the statistics and the wall time."""

    mode: str
    outputs: list[Item]
    stats: ps.PipelineStatistics
    wall_seconds: float


def build_pipeline(summarize: Summarize) -> ps.Pipeline:
    """The same five stages, in a fresh pipeline for each mode."""
    pipeline = ps.Pipeline()
    pipeline.add(denoise, "Denoise")
    pipeline.add(convert, "Convert")
    pipeline.add(edges, "Edges")
    pipeline.add(Morphology(), "Morphology")
    pipeline.add(summarize, "Summarize")
    return pipeline


def run_serial(pipeline: ps.Pipeline, frames: Sequence[Frame], count: int) -> RunResult:
    """Lock-step: ask for each frame's output before sending the next one."""
    outputs: list[Item] = []
    with pipeline.serialize():
        started = time.perf_counter()
        for index in range(count):
            item = {"index": index, "frame": frames[index % len(frames)]}
            outputs.append(pipeline.handle.ask(item, timeout=RESULT_TIMEOUT))
        wall = time.perf_counter() - started
        stats = pipeline.statistics()  # before cleanup: a stopped pipeline has no counters
    return RunResult("serial", outputs, stats, wall)


def run_parallel(pipeline: ps.Pipeline, frames: Sequence[Frame], count: int) -> RunResult:
    """Submit every frame, then wait on the futures.

    The in-flight window holds one frame per stage, so ``submit`` blocks (back-pressure)
    instead of queueing frames, and the latency shown is that of a busy pipeline rather
    than the time frames spent waiting in a queue.
    """
    stages = len(pipeline.stage_names)
    with pipeline.parallelize(input_timeout=RESULT_TIMEOUT, capacity=stages):
        started = time.perf_counter()
        futures = [
            pipeline.handle.submit({"index": index, "frame": frames[index % len(frames)]})
            for index in range(count)
        ]
        outputs = [future.result(timeout=RESULT_TIMEOUT) for future in futures]
        wall = time.perf_counter() - started
        stats = pipeline.statistics()
    return RunResult("parallel", outputs, stats, wall)


# -- reporting ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    """Seconds as a right-aligned millisecond figure."""
    return f"{seconds * 1000:9.2f}"


def print_report(serial: RunResult, parallel: RunResult) -> None:
    """One table with both modes side by side, then the end-to-end figures."""
    header = (
        f"{'Stage':<12} | {'serial ms':>9} {'items/s':>8} {'busy':>5} "
        f"| {'parallel ms':>11} {'items/s':>8} {'busy':>5}"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    for left, right in zip(serial.stats.stages, parallel.stats.stages):
        print(
            f"{left.name:<12} | {ms(left.service_time.mean)} {left.mean_throughput:8.1f} "
            f"{left.utilization:5.0%} | {ms(right.service_time.mean):>11} "
            f"{right.mean_throughput:8.1f} {right.utilization:5.0%}"
        )
    print(rule)
    for field in ("mean", "p50", "p99"):
        left_latency: float = getattr(serial.stats.latency, field)
        right_latency: float = getattr(parallel.stats.latency, field)
        print(
            f"{'latency ' + field:<12} | {ms(left_latency)} {'':>8} {'':>5} "
            f"| {ms(right_latency):>11}"
        )
    print(
        f"{'throughput':<12} | {'':>9} {serial.stats.mean_throughput:8.1f} {'':>5} "
        f"| {'':>11} {parallel.stats.mean_throughput:8.1f}"
    )
    print(
        f"{'wall time s':<12} | {serial.wall_seconds:9.2f} {'':>8} {'':>5} "
        f"| {parallel.wall_seconds:11.2f}"
    )
    print(
        f"{'bottleneck':<12} | {serial.stats.bottleneck or '-':>24} "
        f"| {parallel.stats.bottleneck or '-':>26}"
    )
    print(rule)
    print(
        "ms: mean time a stage spent on one frame; items/s: frames per second through it;\n"
        "busy: share of the time it was working; latency: end to end, from acceptance."
    )
    speedup = (
        parallel.stats.mean_throughput / serial.stats.mean_throughput
        if serial.stats.mean_throughput
        else float("nan")
    )
    print(
        f"Speed-up (parallel / serial throughput): {speedup:.2f}x "
        f"(wall time {serial.wall_seconds / parallel.wall_seconds:.2f}x)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--frames`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=200, help="frames per mode (default 200)")
    parser.add_argument(
        "--cv-threads",
        type=int,
        default=1,
        help="OpenCV threads per call (default 1, so the speed-up is the pipeline's own)",
    )
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run both modes over the same frames, check they agree, and print the comparison."""
    args = parse_args(argv)
    cv2.setNumThreads(args.cv_threads)
    frames = make_frames(min(args.frames, FRAME_POOL))
    print(
        f"pystream_actors {ps.__version__} demo: 5 OpenCV stages, {args.frames} frames of "
        f"{HEIGHT}x{WIDTH} BGR, {os.cpu_count()} CPU cores, "
        f"OpenCV threads per call: {cv2.getNumThreads()}\n"
    )
    summarize = Summarize()
    serial = run_serial(build_pipeline(summarize), frames, args.frames)
    parallel = run_parallel(build_pipeline(summarize), frames, args.frames)
    print_report(serial, parallel)

    if serial.outputs != parallel.outputs:
        print("ERROR: the parallel outputs differ from the serial ones", file=sys.stderr)
        return 1
    objects = sum(out["objects"] for out in serial.outputs)
    print(
        f"Both modes returned the same {len(serial.outputs)} results, in order "
        f"({objects / len(serial.outputs):.1f} objects per frame); "
        f"Summarize.cleanup() ran after each mode: {summarize.totals}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
