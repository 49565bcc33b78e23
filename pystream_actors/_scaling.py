"""How many workers run a stage, on threads or in processes, and whether order is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import _arguments as check

Executor = Literal["thread", "process"]
EXECUTORS: tuple[Executor, ...] = ("thread", "process")


@dataclass(frozen=True)
class Scaling:
    """A stage's workers, given to ``Pipeline.add``.

    ``workers`` actors run the stage behind its one name, each with its own instance
    (from the class or factory; a single instance is shared only if ``thread_safe``).
    ``ordered`` lets outputs leave in input order; ``executor="process"`` gives each
    worker its own process for GIL-bound Python code.
    """

    workers: int = 1
    ordered: bool = True
    executor: Executor = "thread"
    thread_safe: bool = False

    def __post_init__(self) -> None:
        check.whole_number("workers", self.workers, 1)
        check.flag("ordered", self.ordered)
        check.one_of("executor", self.executor, EXECUTORS)
        check.flag("thread_safe", self.thread_safe)

    @property
    def pooled(self) -> bool:
        """True when the stage runs behind a worker pool rather than one actor."""
        return self.workers > 1 or self.executor == "process"
