"""Perception on a camera stream: detect and segment each frame at once, fuse, publish.

A synthetic camera produces compressed frames (zlib over a numpy image: a bright square
moving over a dark, noisy background) at a fixed rate. The pipeline is a graph::

    Decode -> Perceive{detect, segment} -> Fuse -> Publish

- ``Decode`` turns the bytes back into a numpy image;
- ``Perceive`` is a ``ps.Parallel``: every frame goes to both branches at once, and the
  junction joins their two outputs for the same frame into a ``ps.Joined`` mapping;

  - ``detect`` (required): finds the bright square; every frame needs it, so a failure
    here fails the frame;
  - ``segment`` (optional, ``capacity=1``, ``on_full="drop_oldest"``): a per-pixel mask
    from a model about five times slower than the detector. It holds at most one frame:
    while it works, the frames that arrive are left out of it, and their join goes on
    without it (``Joined.missing`` says why);

- ``Fuse`` keeps the newest mask it saw and attaches it to each frame, marked with the
  frame it came from (keep-latest), so a frame the segmenter skipped still gets a mask;
- ``Publish`` makes the small message a consumer needs.

The models are stand-ins: a little numpy work plus a pause for the inference, which
releases the GIL like a model on an accelerator. At the end the script prints each
stage's cost, the join's statistics (which branch each join waited on, the segmenter's
skipped frames), the bottleneck and the critical path, and checks that every frame
submitted had exactly one outcome.

Run: ``python examples/perception.py [--frames 200] [--fps 100]``. Needs numpy. The
command line draws the graph and runs it live from ``build()``::

    pystream-actors graph examples/perception.py:build
    pystream-actors run examples/perception.py:build --duration 5
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import pystream_actors as ps

HEIGHT, WIDTH = 240, 320
SQUARE = 32
Image = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Encoded:
    """A frame as the camera sends it: compressed bytes and when it was captured."""

    index: int
    captured: float
    payload: bytes


@dataclass(frozen=True)
class Frame:
    """A decoded frame: what both branches read (and never change)."""

    index: int
    captured: float
    image: Image


@dataclass(frozen=True)
class Detections:
    """The detector's output: the boxes found in one frame, and which frame."""

    index: int
    captured: float
    boxes: list[Box]


@dataclass(frozen=True)
class Scene:
    """A fused frame: the detector's boxes and the newest mask, with its frame."""

    index: int
    captured: float
    boxes: list[Box]
    mask: Mask | None
    mask_from: int | None
    """The frame the mask was computed on (this one, or an earlier one)."""


class SyntheticCamera:
    """Compressed frames of a bright square moving over a dark, noisy background."""

    def __init__(self, seed: int = 5) -> None:
        rng = np.random.default_rng(seed)
        self._backgrounds = [
            rng.integers(0, 40, size=(HEIGHT, WIDTH), dtype=np.uint8) for _ in range(4)
        ]
        self.frames = 0

    def read(self) -> Encoded:
        """The next frame, stamped with its capture time."""
        index = self.frames
        self.frames += 1
        image = self._backgrounds[index % len(self._backgrounds)].copy()
        x = (index * 5) % (WIDTH - SQUARE)
        y = (index * 3) % (HEIGHT - SQUARE)
        image[y : y + SQUARE, x : x + SQUARE] = 230
        return Encoded(index, time.perf_counter(), zlib.compress(image.tobytes(), 1))


# -- the stages ---------------------------------------------------------------------------


def decode(encoded: Encoded) -> Frame:
    """The camera's bytes back into a numpy image."""
    pixels = np.frombuffer(zlib.decompress(encoded.payload), dtype=np.uint8)
    return Frame(encoded.index, encoded.captured, pixels.reshape(HEIGHT, WIDTH))


class Model(ps.Stage):
    """A stand-in for a model on an accelerator: ``setup()`` loads it on the stage's
    thread, and each call waits ``inference_ms`` (releasing the GIL) before its numpy work.
    """

    def __init__(self, inference_ms: float) -> None:
        self.inference_s = inference_ms / 1000
        self._loaded: threading.Event | None = None

    def setup(self) -> None:
        """Load the model (here: an event to wait on)."""
        self._loaded = threading.Event()

    def infer(self) -> None:
        """The model's time on the accelerator."""
        assert self._loaded is not None, "setup() runs before the first frame"
        self._loaded.wait(self.inference_s)

    def cleanup(self) -> None:
        """Unload the model."""
        self._loaded = None


class Detector(Model):
    """Bounding box of the bright pixels, as a new value: the frame is read only."""

    def __call__(self, frame: Frame) -> Detections:
        self.infer()
        rows, cols = np.nonzero(frame.image > 200)
        boxes = []
        if rows.size:
            boxes.append((int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())))
        return Detections(frame.index, frame.captured, boxes)


class Segmenter(Model):
    """A per-pixel foreground mask at quarter resolution, as a new array."""

    def __call__(self, frame: Frame) -> Mask:
        self.infer()
        h, w = HEIGHT // 4, WIDTH // 4
        blocks = frame.image.reshape(h, 4, w, 4).mean(axis=(1, 3))
        mask: Mask = blocks > 128
        return mask


class Fuse(ps.Stage):
    """Boxes from the detector, plus the newest mask the segmenter produced.

    The join gives this frame's own mask when the segmenter worked on it; otherwise the
    branch is in ``joined.missing`` and the previous mask is reused (keep-latest).
    """

    def __init__(self) -> None:
        self.mask: Mask | None = None
        self.mask_from: int | None = None

    def __call__(self, joined: ps.Joined) -> Scene:
        found: Detections = joined["detect"]
        if "segment" in joined:  # absent when the segmenter skipped this frame
            self.mask, self.mask_from = joined["segment"], found.index
        return Scene(found.index, found.captured, found.boxes, self.mask, self.mask_from)

    def cleanup(self) -> None:
        """Forget the mask: a new run starts without one."""
        self.mask = self.mask_from = None


def publish(scene: Scene) -> dict[str, Any]:
    """The small message a consumer needs; the images stay behind."""
    return {
        "frame": scene.index,
        "captured": scene.captured,
        "boxes": scene.boxes,
        "mask_pixels": None if scene.mask is None else int(scene.mask.sum()),
        "mask_age": None if scene.mask_from is None else scene.index - scene.mask_from,
    }


def build_pipeline(
    detect_ms: float, segment_ms: float, camera: SyntheticCamera | None = None
) -> ps.Pipeline:
    """Decode -> Perceive{detect, segment} -> Fuse -> Publish, fed by ``camera`` if given."""
    pipeline = ps.Pipeline(name="perception", input_generator=camera.read if camera else None)
    pipeline.add(decode, "Decode")
    pipeline.add(
        ps.Parallel(
            detect=ps.Chain().add(Detector(detect_ms), "Detect"),
            segment=ps.Chain(required=False, capacity=1, on_full="drop_oldest").add(
                Segmenter(segment_ms), "Segment"
            ),
        ),
        "Perceive",
    )
    pipeline.add(Fuse(), "Fuse")
    pipeline.add(publish, "Publish")
    return pipeline


def build() -> ps.Pipeline:
    """The pipeline fed by its camera, for ``pystream-actors run`` and ``graph``."""
    return build_pipeline(4.0, 20.0, SyntheticCamera())


# -- running ------------------------------------------------------------------------------


def feed(
    handle: ps.PipelineHandle, camera: SyntheticCamera, frames: int, fps: float
) -> list[Future[Any]]:
    """Submit ``frames`` frames at ``fps`` on a drift-free clock; their futures."""
    futures = []
    start = time.perf_counter()
    for index in range(frames):
        delay = start + index / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        futures.append(handle.submit(camera.read()))
    return futures


def outcome(future: Future[Any]) -> str:
    """What became of one frame."""
    error = future.exception(timeout=10)
    if error is None:
        return "completed"
    return "dropped" if isinstance(error, ps.ItemDropped) else "failed"


def ms(seconds: float) -> str:
    """Seconds as milliseconds."""
    return f"{seconds * 1000:.1f} ms"


def report(stats: ps.PipelineStatistics, messages: list[dict[str, Any]]) -> None:
    """The stages, the join, the bottleneck and the critical path."""
    print(f"\n  {'stage':<26}{'mean':>9}{'busy':>6}")
    for stage in stats.stages:  # in graph order: each branch's stages after their junction
        print(f"  {stage.path:<26}{ms(stage.service_time.mean):>9}{stage.utilization:6.0%}")

    join = stats.junction("Perceive")
    waited = ", ".join(f"{b} {share:.0%}" for b, share in sorted(join.waited_on.items()))
    print(f"\njoin 'Perceive' waited on: {waited}")
    print(
        f"  first to last branch per frame: p50 {ms(join.join_wait.p50)}, "
        f"p99 {ms(join.join_wait.p99)}; at most {join.max_pending} frames inside"
    )
    skipped = join.dropped.get("segment", 0)
    print(f"  frames the segmenter skipped (capacity=1): {skipped} of {join.arrivals['segment']}")
    ages = Counter(m["mask_age"] for m in messages)
    fresh = ages.pop(0, 0)
    print(
        f"  published with their own mask: {fresh}, with an earlier frame's mask: "
        f"{sum(ages.values())} (ages {dict(sorted((k, v) for k, v in ages.items() if k))})"
    )
    print(f"\nbottleneck: {stats.bottleneck}")
    print(f"critical path: {' -> '.join(stats.critical_path)}")
    print(
        f"latency (acceptance to output): p50 {ms(stats.latency.p50)}, p99 {ms(stats.latency.p99)}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--frames`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames to send (default 200)")
    parser.add_argument("--fps", type=float, default=100.0, help="camera rate (default 100)")
    parser.add_argument("--detect-ms", type=float, default=4.0, help="detector time (default 4)")
    parser.add_argument(
        "--segment-ms", type=float, default=20.0, help="segmenter time (default 20)"
    )
    args = parser.parse_args(argv)
    if args.frames < 1 or args.fps <= 0:
        parser.error("--frames must be at least 1 and --fps positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the camera through the graph; print the statistics; check every outcome."""
    args = parse_args(argv)
    camera = SyntheticCamera()
    pipeline = build_pipeline(args.detect_ms, args.segment_ms)
    print(
        f"{args.frames} frames of {WIDTH}x{HEIGHT} at {args.fps:g} frames/s; detect "
        f"{args.detect_ms:g} ms, segment {args.segment_ms:g} ms (optional, capacity=1)"
    )
    # A real-time window: a few frames inside, the oldest one dropped for a new one.
    with pipeline.parallelize(capacity=4, on_full="drop_oldest", max_age=0.5):
        futures = feed(pipeline.handle, camera, args.frames, args.fps)
        outcomes = Counter(outcome(future) for future in futures)
        messages = [future.result() for future in futures if outcome(future) == "completed"]
        stats = pipeline.statistics()

    report(stats, messages)
    in_order = [m["frame"] for m in messages] == sorted(m["frame"] for m in messages)
    total = outcomes["completed"] + outcomes["failed"] + outcomes["dropped"]
    print(
        f"\n{args.frames} submitted: {outcomes['completed']} completed, "
        f"{outcomes['failed']} failed, {outcomes['dropped']} dropped"
    )
    if stats.accepted != total or total != args.frames or not in_order or not messages:
        print("ERROR: a frame is unaccounted for or out of order", file=sys.stderr)
        return 1
    print(f"every frame accounted for: {stats.accepted} accepted = completed + failed + dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
