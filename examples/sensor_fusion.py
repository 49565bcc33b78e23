"""Camera at 30 Hz, lidar at 10 Hz: each at its own rate, joined by sensor time stamp.

A synthetic vehicle sees a few boxes moving around it with two sensors that run on
their own clocks, fed in real time by ``start_loop`` (one input loop per source):

- ``camera``: a 30 Hz image stamped with its capture time, 12 ms before it is read
  (exposure and readout), with jitter;
- ``lidar``: a 10 Hz point cloud (``N x 4`` numpy array: x, y, z, intensity) stamped
  4 ms before it is read, with jitter.

The pipeline starts with a ``ps.Sync``: each source is a ``ps.Chain`` with its own
preprocessing and its own in-flight window (``capacity``/``on_full``), so a slow or
silent lidar never blocks the camera. The junction then joins the samples of the two
sources by stamp:

- ``--policy approximate``: one set per lidar scan (``anchor="lidar"``) with the camera
  frame stamped nearest to it, at most ``tolerance=0.02`` s of sensor time away. About
  two of every three camera frames are in no set: each resolves ``ItemDropped`` and is
  counted as ``unmatched``. A set leaves once no nearer frame can still come, or after
  ``max_wait`` seconds of waiting (``--max-wait``, default 0.06). Here the matching frame
  is stamped just before the scan, so certainty takes the *next* frame: about one camera
  period (33 ms) of ``decide_wait``. ``--max-wait 0.02`` trades it down to 20 ms;
  ``--max-wait 0`` (greedy) decides each scan as it arrives, before its frame is out of
  ``Rectify``, and most scans go unmatched;
- ``--policy latest``: every camera frame (``on="camera"``) with the freshest scan no
  older than 0.15 s; a scan resolves as soon as it is cached and is reused by about
  three frames.

``Fuse`` projects the scan's points into the frame (read from the ``ps.Joined``, whose
``stamps`` say when each was taken) and ``Track`` follows the clusters, with their
speed from the scan stamps. By default (``--policy both``) the script runs the
approximate sync for ``--seconds``, then the latest policy for a second, and prints for
each the per-source statistics and the sync's: sets per second, the |stamp skew| of the
pairs, ``decide_wait`` (how long a set waited after its last member arrived: the
latency the sync adds) and the samples in no set.

Run: ``python examples/sensor_fusion.py [--seconds 3] [--policy both] [--max-wait 0.06]``.
Needs numpy.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

import pystream_actors as ps

FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]

CAMERA_PERIOD = 1 / 30
LIDAR_PERIOD = 0.1
CAMERA_DELAY = 0.012  # seconds from capture to read (exposure and readout)
LIDAR_DELAY = 0.004  # seconds from capture to read (the driver assembling the scan)
JITTER = 0.0015  # standard deviation of both sensors' stamps, seconds

HEIGHT, WIDTH = 375, 1242  # a KITTI-sized camera image
FOCAL = 720.0
INTRINSICS = np.array(
    [[FOCAL, 0.0, WIDTH / 2], [0.0, FOCAL, HEIGHT / 2], [0.0, 0.0, 1.0]], dtype=np.float32
)
# Lidar frame (x forward, y left, z up) to camera frame (x right, y down, z forward).
LIDAR_TO_CAMERA = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
CAMERA_OFFSET = np.array([0.0, -0.08, -0.27], dtype=np.float32)  # metres, in the camera frame
LIDAR_HEIGHT = 1.73  # metres above the ground
MAX_RANGE = 40.0
VOXEL = 0.2
GRID_CELL = 1.0  # metres per tracking cell


@dataclass(frozen=True)
class Frame:
    """One camera image and its sensor stamp (``time.monotonic()`` seconds)."""

    index: int
    stamp: float
    image: Image


@dataclass(frozen=True)
class Scan:
    """One lidar point cloud and its sensor stamp."""

    index: int
    stamp: float
    points: FloatArray


@dataclass(frozen=True)
class Gray:
    """The camera chain's output: the image as blurred brightness 0..1."""

    index: int
    image: FloatArray


@dataclass(frozen=True)
class Cloud:
    """The lidar chain's output: the scan's cleaned, downsampled points."""

    index: int
    points: FloatArray


@dataclass(frozen=True)
class Fused:
    """The points the camera sees, each with the brightness under it."""

    stamp: float
    """The set's stamp (the anchor's, or the trigger's under ``latest``)."""
    scanned: float
    """The lidar scan's stamp (under ``latest`` several sets share one scan)."""
    offset: float
    """Camera stamp minus lidar stamp, seconds (how far apart the pair was taken)."""
    points: FloatArray
    """Visible points: x, y, z, brightness."""


@dataclass(frozen=True)
class Tracked:
    """A fused set with its tracks: id -> (x, y, speed in m/s)."""

    stamp: float
    offset: float
    tracks: dict[int, tuple[float, float, float]] = field(default_factory=dict)


# -- the synthetic sensors ------------------------------------------------------------------------


class Scene:
    """Ground, and boxes moving around the vehicle at constant speed (metres, seconds)."""

    def __init__(self, objects: int = 5, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        self.started = time.monotonic()
        self.objects = [
            (rng.uniform(8, 30), rng.uniform(-8, 8), rng.uniform(-3, 3), rng.uniform(-2, 2))
            for _ in range(objects)
        ]
        ground_points = 30_000
        radius = np.sqrt(rng.uniform(1, MAX_RANGE**2 * 1.4, ground_points))
        angle = rng.uniform(-math.pi, math.pi, ground_points)
        self.ground = np.stack(
            [
                radius * np.cos(angle),
                radius * np.sin(angle),
                rng.normal(-LIDAR_HEIGHT, 0.03, ground_points),
                rng.uniform(0.0, 0.3, ground_points),
            ],
            axis=1,
        ).astype(np.float32)
        self.background = rng.integers(20, 70, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)

    def centres(self, stamp: float) -> list[FloatArray]:
        """Each box's centre at sensor time ``stamp``."""
        t = stamp - self.started
        return [
            np.array([x0 + vx * t, y0 + vy * t, -LIDAR_HEIGHT + 0.8], dtype=np.float32)
            for x0, y0, vx, vy in self.objects
        ]


class Camera:
    """Reads a frame of the scene: called by its own input loop thread, 30 times a second."""

    def __init__(self, scene: Scene, seed: int = 1) -> None:
        self.scene = scene
        self.rng = np.random.default_rng(seed)  # one generator per thread: numpy's are not shared
        self.index = 0

    def read(self) -> Frame:
        stamp = time.monotonic() - CAMERA_DELAY + self.rng.normal(0.0, JITTER)
        image = self.scene.background.copy()
        for centre in self.scene.centres(stamp):
            corners = centre + np.array(
                [[dx, dy, dz] for dx in (-0.9, 0.9) for dy in (-0.9, 0.9) for dz in (-0.8, 0.8)],
                dtype=np.float32,
            )
            _, pixels = project(corners)
            if len(pixels) == len(corners):  # the whole box is in view
                left, top = pixels.min(axis=0).astype(int)
                right, bottom = pixels.max(axis=0).astype(int)
                image[top:bottom, left:right] = 220
        self.index += 1
        return Frame(self.index - 1, stamp, image)


class Lidar:
    """Reads a scan of the scene: called by its own input loop thread, 10 times a second."""

    def __init__(self, scene: Scene, seed: int = 2) -> None:
        self.scene = scene
        self.rng = np.random.default_rng(seed)
        self.index = 0

    def read(self) -> Scan:
        stamp = time.monotonic() - LIDAR_DELAY + self.rng.normal(0.0, JITTER)
        clouds = [self.scene.ground]
        for centre in self.scene.centres(stamp):
            box = self.rng.uniform(-0.9, 0.9, size=(400, 3)).astype(np.float32)
            box[:, 2] *= 0.9
            intensity = self.rng.uniform(0.5, 1.0, (400, 1)).astype(np.float32)
            clouds.append(np.concatenate([box + centre, intensity], axis=1))
        self.index += 1
        return Scan(self.index - 1, stamp, np.concatenate(clouds))


def project(xyz: FloatArray) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Which lidar points the camera sees, and their pixel coordinates (u, v)."""
    camera = xyz @ LIDAR_TO_CAMERA.T + CAMERA_OFFSET
    depth = np.maximum(camera[:, 2:3], np.float32(1e-3))
    uv = (camera @ INTRINSICS.T)[:, :2] / depth
    visible = (
        (camera[:, 2] > 0.5)
        & (uv[:, 0] >= 0)
        & (uv[:, 0] < WIDTH)
        & (uv[:, 1] >= 0)
        & (uv[:, 1] < HEIGHT)
    )
    return visible, uv[visible].astype(np.float32)


# -- each source's own preprocessing chain --------------------------------------------------------


def rectify(frame: Frame) -> Gray:
    """Grayscale 0..1 and a separable 5x5 box blur against sensor noise, into a new array."""
    image = frame.image
    gray = (
        image[..., 0] * np.float32(0.114 / 255)
        + image[..., 1] * np.float32(0.587 / 255)
        + image[..., 2] * np.float32(0.299 / 255)
    )
    padded = np.pad(gray, 2, mode="edge")
    rows = padded[:, :-4] + padded[:, 1:-3] + padded[:, 2:-2] + padded[:, 3:-1] + padded[:, 4:]
    blurred = (rows[:-4] + rows[1:-3] + rows[2:-2] + rows[3:-1] + rows[4:]) / np.float32(25)
    return Gray(frame.index, blurred)


def crop(scan: Scan) -> Cloud:
    """Keep the points within range and above the ground."""
    points = scan.points
    distance = np.hypot(points[:, 0], points[:, 1])
    return Cloud(scan.index, points[(distance < MAX_RANGE) & (points[:, 2] > -LIDAR_HEIGHT + 0.2)])


def voxelize(cloud: Cloud) -> Cloud:
    """One point per 20 cm voxel, into a new array."""
    points = cloud.points
    voxels = np.floor(points[:, :3] / VOXEL).astype(np.int64) + 1024  # 0..2047 per axis
    keys = (voxels[:, 0] << 22) | (voxels[:, 1] << 11) | voxels[:, 2]
    _, first = np.unique(keys, return_index=True)
    return Cloud(cloud.index, points[np.sort(first)])


def camera_chain() -> ps.Chain:
    """The camera's own chain and window: up to six frames inside (three may wait at the
    sync for a scan); past that the oldest one not started is dropped."""
    return ps.Chain(capacity=6, on_full="drop_oldest").add(rectify, "Rectify")


def lidar_chain() -> ps.Chain:
    """The lidar's own chain of two stages and its window of three scans."""
    return ps.Chain(capacity=3, on_full="drop_oldest").add(crop, "Crop").add(voxelize, "Voxelize")


def sensor_stamp(sample: Frame | Scan) -> float:
    """The stamp the sync matches on: the sensor's own, carried by the sample."""
    return sample.stamp


def make_sync(policy: str, max_wait: float | None = 0.06) -> ps.Sync:
    """The sync of the two sources under ``policy`` ("approximate" or "latest")."""
    if policy == "latest":  # every frame, with the freshest scan at most 150 ms older
        return ps.Sync(
            camera=camera_chain(),
            lidar=lidar_chain(),
            policy="latest",
            on="camera",
            tolerance=0.15,
            stamp=sensor_stamp,
        )
    return ps.Sync(  # every scan, with the frame nearest to it
        camera=camera_chain(),
        lidar=lidar_chain(),
        policy="approximate",
        anchor="lidar",
        tolerance=0.02,  # |t_camera - t_lidar| <= 20 ms of sensor time
        max_wait=max_wait,  # wait at most this long (processing time) for certainty
        stamp=sensor_stamp,
    )


# -- after the sync: fuse, track ------------------------------------------------------------------


def fuse(joined: ps.Joined) -> Fused:
    """Keep the points the camera sees, each with the image brightness at its pixel."""
    cloud: Cloud = joined["lidar"]
    gray: Gray = joined["camera"]
    xyz = cloud.points[:, :3]
    visible, uv = project(xyz)
    pixels = uv.astype(np.int32)
    brightness = gray.image[pixels[:, 1], pixels[:, 0]]
    points = np.concatenate([xyz[visible], brightness[:, None]], axis=1).astype(np.float32)
    assert joined.stamp is not None
    scanned = joined.stamps["lidar"]
    return Fused(joined.stamp, scanned, joined.stamps["camera"] - scanned, points)


class Tracker(ps.Stage):
    """Clusters bright points on a ground grid and follows the clusters from set to set."""

    def __init__(self, gate: float = 2.0, min_points: int = 20) -> None:
        self.gate = gate
        self.min_points = min_points
        self.tracks: dict[int, tuple[float, float, float]] = {}
        self.scanned: float | None = None
        self.next_id = 0

    def __call__(self, fused: Fused) -> Tracked:
        """Detect clusters, match each to the nearest free track; speed from the scan stamps.

        Under ``latest`` several frames come with the same scan: the tracks stay as they are.
        """
        if fused.scanned == self.scanned:
            return Tracked(fused.stamp, fused.offset, dict(self.tracks))
        detections = self.detect(fused.points[fused.points[:, 3] > 0.6])
        elapsed = fused.scanned - self.scanned if self.scanned is not None else 0.0
        updated: dict[int, tuple[float, float, float]] = {}
        for x, y in detections:
            distance, track_id = min(
                (
                    (math.hypot(x - tx, y - ty), known)
                    for known, (tx, ty, _) in self.tracks.items()
                    if known not in updated
                ),
                default=(math.inf, -1),
            )
            if distance > self.gate:
                track_id, self.next_id, distance = self.next_id, self.next_id + 1, 0.0
            speed = distance / elapsed if elapsed > 0 else 0.0
            updated[track_id] = (float(x), float(y), speed)
        self.tracks, self.scanned = updated, fused.scanned
        return Tracked(fused.stamp, fused.offset, dict(updated))

    def detect(self, points: FloatArray) -> FloatArray:
        """Centres of the groups of touching occupied grid cells with enough points."""
        cells = np.floor(points[:, :2] / GRID_CELL).astype(np.int64)
        keys, inverse = np.unique(cells, axis=0, return_inverse=True)
        members = {(int(a), int(b)): i for i, (a, b) in enumerate(keys)}
        group = list(range(len(keys)))

        def root(i: int) -> int:
            while group[i] != i:
                group[i] = group[group[i]]
                i = group[i]
            return i

        for (a, b), i in members.items():  # merge each cell with its occupied neighbours
            for da, db in ((1, -1), (1, 0), (1, 1), (0, 1)):
                j = members.get((a + da, b + db))
                if j is not None:
                    group[root(i)] = root(j)
        labels = np.array([root(i) for i in range(len(keys))], dtype=np.int64)[inverse.ravel()]
        centres = [
            points[labels == label, :2].mean(axis=0)
            for label in np.unique(labels)
            if np.count_nonzero(labels == label) >= self.min_points
        ]
        return np.array(centres, dtype=np.float32).reshape(-1, 2)

    def cleanup(self) -> None:
        """Forget the tracks: a new run starts from scratch."""
        self.tracks, self.scanned, self.next_id = {}, None, 0


# -- running ------------------------------------------------------------------------------------------


def build_pipeline(policy: str, max_wait: float | None = 0.06) -> ps.Pipeline:
    """Sync{camera: Rectify, lidar: Crop -> Voxelize} -> Fuse -> Track, fed by two sensors."""
    scene = Scene()
    pipeline = ps.Pipeline(
        input_generator={"camera": Camera(scene).read, "lidar": Lidar(scene).read}
    )
    pipeline.add(make_sync(policy, max_wait), "Sync")
    pipeline.add(fuse, "Fuse")
    pipeline.add(Tracker(), "Track")
    return pipeline


def run(
    policy: str, seconds: float, max_wait: float | None = 0.06
) -> tuple[ps.PipelineStatistics, list[Tracked]]:
    """Feed both sensors in real time for ``seconds``; the final statistics and outputs."""
    pipeline = build_pipeline(policy, max_wait)
    outputs: list[Tracked] = []
    with pipeline.parallelize(max_age=0.5):
        reader = pipeline.handle.results()
        collected = threading.Thread(target=lambda: outputs.extend(reader), daemon=True)
        collected.start()  # the reader ends when the pipeline stops
        pipeline.start_loop({"camera": CAMERA_PERIOD, "lidar": LIDAR_PERIOD})
        time.sleep(seconds)  # the sensors run on their own loops meanwhile
        pipeline.stop_loop()
    collected.join(timeout=5)  # leaving the block drained the pipeline: every sample settled
    return pipeline.statistics(), outputs


def report(policy: str, stats: ps.PipelineStatistics, outputs: list[Tracked]) -> bool:
    """Print the per-source and sync statistics; True if every sample has its outcome."""
    print(f"\npolicy={policy!r}: {len(outputs)} fused outputs")
    print(
        f"  {'source':<8}{'accepted':>9}{'completed':>10}{'dropped':>8}"
        f"{'unmatched':>10}{'late':>5}{'evicted':>8}{'rejected':>9}{'capacity':>9}"
    )
    for source in stats.sources:
        print(
            f"  {source.name:<8}{source.accepted:>9}{source.completed:>10}{source.dropped:>8}"
            f"{source.unmatched:>10}{source.late:>5}{source.evicted:>8}{source.rejected:>9}"
            f"{source.capacity:>9}"
        )
    sync = stats.junction("Sync")
    print(
        f"  Sync: {sync.sets} sets, {sync.sets_per_second:.1f}/s; |skew| p50 "
        f"{sync.skew.p50 * 1000:.1f} ms, p99 {sync.skew.p99 * 1000:.1f} ms; decide_wait p50 "
        f"{sync.decide_wait.p50 * 1000:.1f} ms, p99 {sync.decide_wait.p99 * 1000:.1f} ms"
    )
    print(
        f"  in no set: unmatched {dict(sync.unmatched)}, late {dict(sync.late)}, "
        f"evicted {dict(sync.evicted)}; cached scans reused {sync.reused} times"
    )
    for stage in stats.stages:
        print(
            f"  {stage.path:<22} mean {stage.service_time.mean * 1000:5.2f} ms, "
            f"busy {stage.utilization:4.0%}"
        )
    print(
        f"  end-to-end latency (acceptance to output) p50 {stats.latency.p50 * 1000:.1f} ms, "
        f"p99 {stats.latency.p99 * 1000:.1f} ms"
    )
    if outputs:
        last = outputs[-1]
        tracks = ", ".join(
            f"#{key} ({x:.0f}, {y:.0f}) m at {speed:.1f} m/s"
            for key, (x, y, speed) in sorted(last.tracks.items())
        )
        print(f"  last set: camera - lidar {last.offset * 1000:+.1f} ms; tracks: {tracks}")
    settled = all(
        s.accepted == s.completed + s.failed + s.dropped and s.in_flight == 0 for s in stats.sources
    )
    return settled and sync.sets > 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--seconds`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="seconds of sensor data (default 3)"
    )
    parser.add_argument(
        "--policy",
        choices=("approximate", "latest", "both"),
        default="both",
        help="which sync to run; both: approximate for --seconds, then latest briefly",
    )
    parser.add_argument(
        "--max-wait",
        type=lambda text: None if text.lower() == "none" else float(text),
        default=0.06,
        help="the approximate sync's max_wait in seconds, or none (default 0.06)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.max_wait is not None and args.max_wait < 0:
        parser.error("--max-wait must be 0 or more, or none")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sync policies in real time and print what each did."""
    args = parse_args(argv)
    runs = {
        "approximate": [("approximate", args.seconds)],
        "latest": [("latest", args.seconds)],
        "both": [("approximate", args.seconds), ("latest", min(args.seconds, 1.0))],
    }[args.policy]
    print(
        f"camera {1 / CAMERA_PERIOD:.0f} Hz ({WIDTH}x{HEIGHT}), lidar {1 / LIDAR_PERIOD:.0f} Hz, "
        f"stamps jittered by {JITTER * 1000:g} ms"
    )
    settled = []
    for policy, seconds in runs:
        stats, outputs = run(policy, seconds, args.max_wait)
        settled.append(report(policy, stats, outputs))
    if not all(settled):
        print("ERROR: a sample has no outcome, or no set was made", file=sys.stderr)
        return 1
    print(
        "\nevery sample accounted for: accepted = completed + failed + dropped, for each "
        "source of each run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
