"""Helpers for the Ray test modules: which processes a Ray session started, and that they end."""

from __future__ import annotations

import time
from pathlib import Path


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (Ray's daemons and workers), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_gone(pids: set[int], timeout: float = 20.0) -> None:
    """None of ``pids`` (this session's Ray processes) is still running."""
    deadline = time.monotonic() + timeout
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {p for p in left if alive(p)}
    names = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left if alive(p)}
    assert not left, f"Ray processes left after ray.shutdown(): {names}"
