"""Where the figures were taken: printed above the table and stored in the JSON."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pystream_actors as ps


def _first(path: str, prefix: str) -> str:
    """The value of the first ``prefix`` line of a /proc file ('' if there is none)."""
    try:
        with open(path, encoding="utf-8") as lines:
            return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(prefix)), "")
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """CPU, cores, memory, load and the versions of everything measured."""
    memory = _first("/proc/meminfo", "MemTotal:")
    versions: dict[str, str] = {"pystream_actors": ps.__version__}
    for package in ("pykka", "numpy", "opencv-python-headless"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_model": _first("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": int(memory.split()[0]) * 1024 if memory else None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def describe(info: dict[str, Any]) -> str:
    """One line for the top of the output."""
    memory, load = info["memory_bytes"], info["load_average"]
    return (
        f"{info['cpu_model']}, {info['usable_cores']} cores, "
        + (f"{memory / 2**30:.1f} GiB; " if memory else "")
        + f"{info['python']} on {info['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + (f"; load average {load[0]:.2f}" if load else "")
    )
