"""Stages defined at module level, so worker processes can import them by name."""

from __future__ import annotations

import os
import threading
import time

import pystream_actors as ps


def tag_with_pid(item: int) -> tuple[int, int]:
    """Return the item with the id of the process that handled it."""
    return item, os.getpid()


def fail_on_three(item: int) -> int:
    if item == 3:
        raise ArithmeticError("three is not allowed here")
    return item


def spin(item: int) -> int:
    """Pure-Python CPU work, holding the GIL throughout."""
    total = 0
    for i in range(20_000):
        total += i * i % 7
    return item + total * 0


class CountingStage(ps.Stage):
    """A stage with state that must live in one process: it counts its own calls."""

    def __init__(self) -> None:
        self.calls = 0

    def setup(self) -> None:
        self.calls = 1000

    def __call__(self, item: int) -> tuple[int, int, int]:
        self.calls += 1
        return item, self.calls, os.getpid()

    def cleanup(self) -> None:
        pass


class BadStr(Exception):
    """An exception whose message cannot even be formatted."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def raise_bad_str_on_one(item: int) -> int:
    if item == 1:
        raise BadStr
    return item


def sleep_seconds(seconds: float) -> float:
    """A stage call that takes ``seconds`` (a long call at interpreter exit)."""
    time.sleep(seconds)
    return seconds


def return_a_lock(item: int) -> object:
    """An output no worker process can send back."""
    return threading.Lock()
