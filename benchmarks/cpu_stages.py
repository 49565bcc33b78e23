"""CPU-bound stages shared by the benchmark suite and its PyStream side.

Every stage here is a module-level function or class, so it pickles by reference and a
worker process (``executor="process"``) can import it: ``suite.py`` puts this folder on
``sys.path`` (and ``PYTHONPATH``) before it starts any. Two kinds of work:

- OpenCV stages on a 480x720 colour frame: native code that releases the GIL while it
  runs, like real image processing. Call ``single_threaded_opencv()`` first so OpenCV
  does not spread one call over its own thread pool (that would hide the pipeline's
  own parallelism).
- ``spin``: pure-Python integer arithmetic that holds the GIL for its whole run, so
  threads cannot overlap it and only worker processes can.

``numpy`` and ``cv2`` are imported lazily: a worker process that only runs ``spin`` needs
neither.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

FRAME_SHAPE = (480, 720, 3)
"""Height, width, channels of the synthetic frame."""


def single_threaded_opencv() -> None:
    """Make every OpenCV call run on the calling thread only."""
    import cv2

    cv2.setNumThreads(1)


def make_frame(seed: int = 0) -> Any:
    """A deterministic noisy 480x720 BGR frame (uint8)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)


# -- four OpenCV stages, a few ms each: frame in, frame out -------------------------------


def cv_blur(frame: Any) -> Any:
    """GaussianBlur with a 21x21 kernel (about 2.5 ms single-threaded)."""
    import cv2

    return cv2.GaussianBlur(frame, (21, 21), 0)


def cv_color(frame: Any) -> Any:
    """cvtColor BGR -> Lab -> BGR (about 3.5 ms)."""
    import cv2

    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2Lab), cv2.COLOR_Lab2BGR)


def cv_smooth(frame: Any) -> Any:
    """bilateralFilter, diameter 5 (about 4 ms)."""
    import cv2

    return cv2.bilateralFilter(frame, 5, 50, 50)


def cv_edges(frame: Any) -> Any:
    """cvtColor to grey, Canny, then a 31x31 GaussianBlur of the edge map (about 3 ms)."""
    import cv2

    edges = cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 50, 150)
    return cv2.GaussianBlur(edges, (31, 31), 0)


OPENCV_STAGES: tuple[Callable[[Any], Any], ...] = (cv_blur, cv_color, cv_smooth, cv_edges)
"""The four GIL-releasing stages of workload (4), in pipeline order."""


def cv_work(item: tuple[int, Any], repeats: int = 1) -> tuple[int, Any]:
    """A GIL-releasing stage of tunable length: ``repeats`` 15x15 GaussianBlurs.

    Takes and returns ``(index, frame)`` so the output order can be checked. Bind
    ``repeats`` with ``functools.partial`` (which stays picklable and shareable).
    """
    import cv2

    index, frame = item
    out = frame
    for _ in range(max(1, repeats)):
        out = cv2.GaussianBlur(out, (15, 15), 0)
    return index, out


def calibrate_opencv_repeats(target_seconds: float, frame: Any) -> int:
    """How many 15x15 blurs of ``frame`` take about ``target_seconds`` here.

    Warms up for about 0.1 s first (a cold core runs slower), then takes the median of
    five rounds of ten blurs.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < 0.1:
        cv_work((0, frame))
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10):
            cv_work((0, frame))
        rounds.append((time.perf_counter() - started) / 10)
    return max(1, round(target_seconds / statistics.median(rounds)))


# -- pure-Python CPU work -----------------------------------------------------------------


def spin(item: tuple[int, int]) -> tuple[int, int]:
    """Hold the GIL for ``iterations`` rounds of integer arithmetic.

    Takes ``(index, iterations)`` and returns ``(index, checksum)``: the iteration count
    travels with the item, so worker processes need no calibration of their own.
    """
    index, iterations = item
    acc = index
    for i in range(iterations):
        acc = (acc * 1_103_515_245 + i) & 0x7FFFFFFF
    return index, acc


def calibrate_spin(target_seconds: float) -> int:
    """The ``spin`` iteration count that takes about ``target_seconds`` here.

    Warms up for about 0.1 s, then takes the median of five timed runs.
    """
    probe = 200_000
    started = time.perf_counter()
    while time.perf_counter() - started < 0.1:
        spin((0, probe // 10))
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        spin((0, probe))
        runs.append(time.perf_counter() - started)
    return max(1, round(probe * target_seconds / statistics.median(runs)))
