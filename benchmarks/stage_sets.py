"""Stages and payloads by name, so a workload is plain data that both sides can build.

The suite runs our pipeline and the plain baselines here and PyStream in
``.venv-pystream``; a workload names its stages (``"noop"``, ``"cv_blur"``, ...) and its
payload kind, and each side looks the names up here, so both run the same functions on
the same items. Every payload carries its input index (``key``), so whoever receives an
output can tell which item it was and whether outputs came in order. Standard library
only; OpenCV and numpy are imported by ``cpu_stages`` when an OpenCV stage is built.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import cpu_stages

Stage = Callable[[Any], Any]


def noop(data: Any) -> Any:
    """A stage that does nothing."""
    return data


def sleep_1ms(data: Any) -> Any:
    """A simulated 1 ms I/O stage (a sleep releases the GIL)."""
    time.sleep(0.001)
    return data


def sleep_2ms(data: Any) -> Any:
    """A simulated 2 ms I/O stage."""
    time.sleep(0.002)
    return data


def sleep_8ms(data: Any) -> Any:
    """A simulated 8 ms I/O stage."""
    time.sleep(0.008)
    return data


class Indexed:
    """Runs a frame stage on an ``(index, frame)`` item and keeps the index.

    A module-level class, so it pickles by reference for a worker process.
    """

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def __call__(self, item: tuple[int, Any]) -> tuple[int, Any]:
        return item[0], self.stage(item[1])


@functools.cache
def frame() -> Any:
    """The one 480x720 frame every OpenCV payload carries (OpenCV single-threaded)."""
    cpu_stages.single_threaded_opencv()
    return cpu_stages.make_frame()


@functools.cache
def blur_repeats() -> int:
    """How many 15x15 blurs take 8 ms here (calibrated once per process)."""
    return cpu_stages.calibrate_opencv_repeats(0.008, frame())


@functools.cache
def spin_iterations() -> int:
    """How many ``spin`` rounds take 20 ms here (calibrated once, travels with the item)."""
    return cpu_stages.calibrate_spin(0.020)


def _opencv(name: str) -> Callable[[], Stage]:
    return lambda: Indexed(getattr(cpu_stages, name))


STAGES: dict[str, Callable[[], Stage]] = {
    "noop": lambda: noop,
    "sleep_1ms": lambda: sleep_1ms,
    "sleep_2ms": lambda: sleep_2ms,
    "sleep_8ms": lambda: sleep_8ms,
    "cv_blur": _opencv("cv_blur"),
    "cv_color": _opencv("cv_color"),
    "cv_smooth": _opencv("cv_smooth"),
    "cv_edges": _opencv("cv_edges"),
    "cv_8ms": lambda: functools.partial(cpu_stages.cv_work, repeats=blur_repeats()),
    "spin_20ms": lambda: cpu_stages.spin,
}
"""Stage name -> a function making the stage."""

PAYLOADS: dict[str, Callable[[int], Any]] = {
    "int": lambda i: i,
    "frame": lambda i: (i, frame()),
    "spin": lambda i: (i, spin_iterations()),
    "none": lambda i: (i, None),
}
"""Payload kind -> the ``i``-th payload."""


def stage(name: str) -> Stage:
    """The stage called ``name``."""
    return STAGES[name]()


def key(item: Any) -> Any:
    """An output's input index: the item itself for ``int``, else its first element."""
    return item if isinstance(item, int) else item[0]


def describe(names: tuple[str, ...]) -> str:
    """What the calibrated stages among ``names`` do on this machine ('' if none)."""
    notes = []
    if "cv_8ms" in names:
        notes.append(f"{blur_repeats()} x GaussianBlur 15x15")
    if "spin_20ms" in names:
        notes.append(f"cpu_stages.spin, {spin_iterations():,} rounds")
    return "; ".join(notes)
