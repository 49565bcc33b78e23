"""Lidar and camera fusion: preprocess both at once, fuse, track, map; find the bottleneck.

Every tick a synthetic vehicle sensor rig produces a lidar-like point cloud (an
``N x 4`` numpy array: x, y, z, intensity) and a camera image of the same scene, with a
few objects moving around the vehicle. Four steps process each tick:

1. ``Preprocess``, a ``ps.Parallel`` with two branches that get the same tick at the
   same time: ``lidar`` (range crop, ground removal, voxel downsampling: stage
   ``Lidar``) and ``camera`` (grayscale and box blur: stage ``Camera``). Each branch
   reads the tick without changing it and *returns* a new value; the junction joins the
   two outputs of one tick into a ``ps.Joined`` mapping;
2. ``Fuse``: project the points into the image with the camera's intrinsics and
   extrinsics, and give each visible point the image brightness under it;
3. ``Track``: cluster the points on a ground grid and associate the clusters with the
   tracks of the previous ticks (a ``Stage`` that keeps state between items);
4. ``Map``: accumulate the points into an occupancy grid (allocated in ``setup()``).

No stage changes its input: each returns a new value, so the two branches never share
anything they write.

The script runs the same ticks in serial mode (one tick inside at a time, its two
branches still at once), then in parallel mode, checks that both give the same
outputs, and prints for each run every stage's cost, utilization and queue, which
branch the join waited on, the end-to-end latency, the bottleneck and the critical
path. A parallel pipeline goes no faster than its slowest stage: that is the stage to
make cheaper or to scale next (``--workers N`` gives the ``Camera`` stage N workers in
the parallel run).

Run: ``python examples/sensor_fusion.py [--frames 60] [--workers 1]``. Needs numpy.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

import pystream_actors as ps

FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]

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
MAP_CELL = 0.5  # metres per occupancy cell
MAP_SIZE = 200  # cells per side: 100 m x 100 m around the start


@dataclass(frozen=True)
class Tick:
    """One tick of the sensor rig: what both preprocessing branches read."""

    index: int
    points: FloatArray
    image: Image


@dataclass(frozen=True)
class Cloud:
    """The ``lidar`` branch's output: the tick's cleaned, downsampled points."""

    index: int
    points: FloatArray


@dataclass(frozen=True)
class Gray:
    """The ``camera`` branch's output: the tick's image as blurred brightness 0..1."""

    index: int
    image: FloatArray


@dataclass(frozen=True)
class Fused:
    """The points the camera sees, each with the brightness under it."""

    index: int
    points: FloatArray
    """Visible points: x, y, z, brightness."""


@dataclass(frozen=True)
class Tracked:
    """A fused tick with its detections and the tracks after it."""

    index: int
    points: FloatArray
    detections: FloatArray
    tracks: dict[int, tuple[float, float]] = field(default_factory=dict)


# -- the synthetic sensors ------------------------------------------------------------------------


class SensorRig:
    """A deterministic scene: ground, a wall, and boxes moving around the vehicle."""

    def __init__(self, objects: int = 5, ground_points: int = 30_000, seed: int = 11) -> None:
        self.rng = np.random.default_rng(seed)
        self.objects = [
            (
                self.rng.uniform(8, 30),
                self.rng.uniform(-8, 8),
                self.rng.uniform(-0.3, 0.3),
                self.rng.uniform(-0.2, 0.2),
            )
            for _ in range(objects)
        ]
        radius = np.sqrt(self.rng.uniform(1, MAX_RANGE**2 * 1.4, ground_points))
        angle = self.rng.uniform(-math.pi, math.pi, ground_points)
        self.ground = np.stack(
            [
                radius * np.cos(angle),
                radius * np.sin(angle),
                self.rng.normal(-LIDAR_HEIGHT, 0.03, ground_points),
                self.rng.uniform(0.0, 0.3, ground_points),
            ],
            axis=1,
        ).astype(np.float32)
        self.background = self.rng.integers(20, 70, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        self.index = 0

    def read(self) -> Tick:
        """The next tick: a point cloud and an image of the same scene."""
        t = self.index
        self.index += 1
        clouds = [self.ground]
        image = self.background.copy()
        for x0, y0, vx, vy in self.objects:
            centre = np.array([x0 + vx * t, y0 + vy * t, -LIDAR_HEIGHT + 0.8], dtype=np.float32)
            box = self.rng.uniform(-0.9, 0.9, size=(400, 3)).astype(np.float32)
            box[:, 2] *= 0.9
            cloud = np.concatenate(
                [box + centre, self.rng.uniform(0.5, 1.0, (400, 1)).astype(np.float32)], axis=1
            )
            clouds.append(cloud)
            _, pixels = project(cloud[:, :3])
            if pixels.size:
                left, top = pixels.min(axis=0).astype(int)
                right, bottom = pixels.max(axis=0).astype(int)
                image[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = 220
        return Tick(t, np.concatenate(clouds), image)


def project(xyz: FloatArray) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Which lidar points the camera sees, and their pixel coordinates (u, v).

    Returns a mask over ``xyz`` and the ``(u, v)`` of the points it selects.
    """
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


# -- step 1: preprocess both sensors at once, one branch each ----------------------------------------


def preprocess_lidar(tick: Tick) -> Cloud:
    """Range crop, ground removal and voxel downsampling, into a new array."""
    points = tick.points
    distance = np.hypot(points[:, 0], points[:, 1])
    points = points[(distance < MAX_RANGE) & (points[:, 2] > -LIDAR_HEIGHT + 0.2)]
    voxels = np.floor(points[:, :3] / VOXEL).astype(np.int64) + 1024  # 0..2047 per axis
    keys = (voxels[:, 0] << 22) | (voxels[:, 1] << 11) | voxels[:, 2]
    _, first = np.unique(keys, return_index=True)  # one point per voxel
    return Cloud(tick.index, points[np.sort(first)])


def preprocess_image(tick: Tick) -> Gray:
    """Grayscale 0..1 and a separable 5x5 box blur against sensor noise, into a new array."""
    image = tick.image
    gray = (
        image[..., 0] * np.float32(0.114 / 255)
        + image[..., 1] * np.float32(0.587 / 255)
        + image[..., 2] * np.float32(0.299 / 255)
    )
    padded = np.pad(gray, 2, mode="edge")
    rows = padded[:, :-4] + padded[:, 1:-3] + padded[:, 2:-2] + padded[:, 3:-1] + padded[:, 4:]
    blurred = (rows[:-4] + rows[1:-3] + rows[2:-2] + rows[3:-1] + rows[4:]) / np.float32(25)
    return Gray(tick.index, blurred)


def preprocess(camera_workers: int = 1) -> ps.Parallel:
    """Both preprocessors on the same tick at the same time, one branch each.

    Each branch is a chain of one named stage, with its own thread, statistics and
    supervision; ``camera_workers`` runs the camera's stage on that many workers.
    """
    return ps.Parallel(
        lidar=ps.Chain().add(preprocess_lidar, "Lidar"),
        camera=ps.Chain().add(preprocess_image, "Camera", workers=camera_workers),
    )


# -- step 2: fuse the joined outputs -----------------------------------------------------------------


def fuse(joined: ps.Joined) -> Fused:
    """Keep the points the camera sees, each with the image brightness at its pixel.

    ``joined`` holds both branches' outputs for the same tick (the join is by item).
    """
    cloud: Cloud = joined["lidar"]
    gray: Gray = joined["camera"]
    assert cloud.index == gray.index, "a join mixed two ticks"
    xyz = cloud.points[:, :3]
    visible, uv = project(xyz)
    pixels = uv.astype(np.int32)
    brightness = gray.image[pixels[:, 1], pixels[:, 0]]
    points = np.concatenate([xyz[visible], brightness[:, None]], axis=1).astype(np.float32)
    return Fused(cloud.index, points)


# -- step 3: track ---------------------------------------------------------------------------------


class Tracker(ps.Stage):
    """Clusters bright points on a ground grid and follows the clusters from tick to tick."""

    def __init__(self, gate: float = 2.0, min_points: int = 20) -> None:
        self.gate = gate
        self.min_points = min_points
        self.tracks: dict[int, tuple[float, float]] = {}
        self.next_id = 0

    def __call__(self, fused: Fused) -> Tracked:
        """Detect clusters, then match each to the nearest free track within the gate."""
        detections = self.detect(fused.points[fused.points[:, 3] > 0.6])
        updated: dict[int, tuple[float, float]] = {}
        for x, y in detections:
            distance, track_id = min(
                (
                    (math.hypot(x - tx, y - ty), known)
                    for known, (tx, ty) in self.tracks.items()
                    if known not in updated
                ),
                default=(math.inf, -1),
            )
            if distance > self.gate:
                track_id, self.next_id = self.next_id, self.next_id + 1
            updated[track_id] = (float(x), float(y))
        self.tracks = updated
        return Tracked(fused.index, fused.points, detections, dict(updated))

    def detect(self, points: FloatArray) -> FloatArray:
        """Centres of the groups of touching occupied grid cells with enough points."""
        cells = np.floor(points[:, :2] / GRID_CELL).astype(np.int64)
        keys, inverse = np.unique(cells, axis=0, return_inverse=True)
        members: dict[tuple[int, int], int] = {(int(a), int(b)): i for i, (a, b) in enumerate(keys)}
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
        centres = []
        for label in np.unique(labels):
            cluster = points[labels == label, :2]
            if len(cluster) >= self.min_points:
                centres.append(cluster.mean(axis=0))
        return np.array(centres, dtype=np.float32).reshape(-1, 2)

    def cleanup(self) -> None:
        """Forget the tracks: a new run starts from scratch."""
        self.tracks = {}
        self.next_id = 0


# -- step 4: map -------------------------------------------------------------------------------------


class OccupancyMap(ps.Stage):
    """Counts lidar hits per cell of a grid around the start position."""

    def __init__(self) -> None:
        self.grid: npt.NDArray[np.int32] | None = None

    def setup(self) -> None:
        """Allocate the grid on the stage's own thread."""
        self.grid = np.zeros((MAP_SIZE, MAP_SIZE), dtype=np.int32)

    def __call__(self, tick: Tracked) -> dict[str, Any]:
        """Add the visible points to the map; return the tick's small summary."""
        assert self.grid is not None
        cells = np.floor(tick.points[:, :2] / MAP_CELL).astype(np.int32) + MAP_SIZE // 2
        keep = ((cells >= 0) & (cells < MAP_SIZE)).all(axis=1)
        np.add.at(self.grid, (cells[keep, 0], cells[keep, 1]), 1)
        return {
            "index": tick.index,
            "points": len(tick.points),
            "detections": len(tick.detections),
            "tracks": sorted(tick.tracks),
            "occupied_cells": int(np.count_nonzero(self.grid)),
        }

    def cleanup(self) -> None:
        """Release the grid."""
        self.grid = None


# -- running ------------------------------------------------------------------------------------------


def build_pipeline(camera_workers: int = 1) -> ps.Pipeline:
    """Preprocess{lidar, camera} -> Fuse -> Track -> Map; ``camera_workers`` scales ``Camera``."""
    pipeline = ps.Pipeline()
    pipeline.add(preprocess(camera_workers), "Preprocess")
    pipeline.add(fuse, "Fuse")
    pipeline.add(Tracker(), "Track")
    pipeline.add(OccupancyMap(), "Map")
    return pipeline


def run(
    mode: str, ticks: Sequence[Tick], camera_workers: int
) -> tuple[list[dict[str, Any]], ps.PipelineStatistics, float]:
    """All ticks through a fresh pipeline in ``mode``: outputs, statistics, seconds."""
    pipeline = build_pipeline(camera_workers)
    started = time.perf_counter()
    if mode == "serial":
        pipeline.serialize()  # one tick inside at a time; its two branches still run at once
    else:  # about one tick per step and worker inside: no queue in front of the first one
        pipeline.parallelize(capacity=len(pipeline.stage_names) + camera_workers)
    with pipeline:
        futures = [pipeline.handle.submit(tick, timeout=60) for tick in ticks]
        outputs = [future.result(timeout=60) for future in futures]
        elapsed = time.perf_counter() - started
        stats = pipeline.statistics()
    return outputs, stats, elapsed


def print_stats(title: str, stats: ps.PipelineStatistics, elapsed: float, frames: int) -> None:
    """One table per run: what each stage costs and how busy it is."""
    print(f"\n{title}: {frames} ticks in {elapsed:.2f} s = {frames / elapsed:.1f} ticks/s")
    print(f"  {'stage':<26}{'mean ms':>8}{'p99 ms':>8}{'busy':>6}{'queue':>6}{'waited p99 ms':>15}")
    for stage in stats.stages:  # in graph order, each branch's stages after their junction
        print(
            f"  {stage.path:<26}{stage.service_time.mean * 1000:8.2f}"
            f"{stage.service_time.p99 * 1000:8.2f}{stage.utilization:6.0%}"
            f"{stage.queue_depth:6d}{stage.wait_time.p99 * 1000:15.2f}"
        )
    join = stats.junction("Preprocess")
    waited = ", ".join(f"{branch} {share:.0%}" for branch, share in sorted(join.waited_on.items()))
    print(
        f"  the join waited on: {waited}; first to last branch p50 "
        f"{join.join_wait.p50 * 1000:.2f} ms"
    )
    print(
        f"  end-to-end latency p50 {stats.latency.p50 * 1000:.1f} ms, "
        f"p99 {stats.latency.p99 * 1000:.1f} ms; bottleneck: {stats.bottleneck}; "
        f"critical path: {' -> '.join(stats.critical_path)}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--frames`` keeps test runs short."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="sensor ticks (default 60)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="workers for the Camera stage in the parallel run (default 1)",
    )
    args = parser.parse_args(argv)
    if args.frames < 1 or args.workers < 1:
        parser.error("--frames and --workers must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the ticks; run them in serial and in parallel mode; compare."""
    args = parse_args(argv)
    rig = SensorRig()
    recorded = [rig.read() for _ in range(args.frames)]
    print(
        f"{args.frames} ticks: about {len(recorded[0].points)} lidar points and a "
        f"{WIDTH}x{HEIGHT} image each"
    )
    scaled = f", Camera on {args.workers} workers" if args.workers > 1 else ""
    runs = [("serial", "serial mode", 1), ("parallel", f"parallel mode{scaled}", args.workers)]
    outputs: list[list[dict[str, Any]]] = []
    speeds: list[float] = []
    for mode, title, workers in runs:
        result, stats, elapsed = run(mode, recorded, workers)  # read-only: no copies needed
        print_stats(title, stats, elapsed, args.frames)
        outputs.append(result)
        speeds.append(args.frames / elapsed)

    last = outputs[0][-1]
    print(
        f"\nlast tick: {last['points']} fused points, {last['detections']} detections, "
        f"tracks {last['tracks']}, {last['occupied_cells']} occupied map cells"
    )
    if any(result != outputs[0] for result in outputs):
        print("ERROR: the runs' outputs differ", file=sys.stderr)
        return 1
    print(f"same outputs in both modes; parallel throughput {speeds[1] / speeds[0]:.2f}x serial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
