"""How many workers run a stage, on threads, in processes or in Ray actors, and whether
order is kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from . import _arguments as check
from ._errors import InvalidArgument

Executor = Literal["thread", "process", "ray"]
EXECUTORS: tuple[Executor, ...] = ("thread", "process", "ray")

RAY_OPTIONS = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "memory",
        "resources",
        "accelerator_type",
        "runtime_env",
        "scheduling_strategy",
        "label_selector",
        "max_in_flight",  # ours: calls one Ray actor may have queued (default 8)
        "start_timeout",  # ours: seconds a Ray actor may take to be placed and set up
    }
)
"""The ``ray_options`` a Ray stage accepts: placement and environment go to Ray's
``.options()``; ``max_in_flight`` and ``start_timeout`` are the backend's own."""

RAY_OWNED_OPTIONS = frozenset(
    {
        "max_restarts",
        "max_task_retries",
        "max_concurrency",
        "allow_out_of_order_execution",
        "max_pending_calls",
        "lifetime",
        "num_returns",
        "concurrency_groups",
        "name",
        "namespace",
        "get_if_exists",
        "retry_exceptions",
    }
)
"""Options the backend sets itself: Ray restarts and retries would reorder or repeat
items (our supervisor restarts instead), and a stage runs one item at a time, in order."""


@dataclass(frozen=True)
class Scaling:
    """A stage's workers, given to ``Pipeline.add``.

    ``workers`` actors run the stage behind its one name, each with its own instance
    (from the class or factory; a single instance is shared only if ``thread_safe``).
    ``ordered`` lets outputs leave in input order; ``executor="process"`` gives each
    worker its own process for GIL-bound Python code; ``executor="ray"`` runs each worker
    in a Ray actor, placed by ``ray_options``.
    """

    workers: int = 1
    ordered: bool = True
    executor: Executor = "thread"
    thread_safe: bool = False
    ray_options: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        check.whole_number("workers", self.workers, 1)
        check.flag("ordered", self.ordered)
        check.one_of("executor", self.executor, EXECUTORS)
        check.flag("thread_safe", self.thread_safe)
        if self.ray_options is not None:
            if self.executor != "ray":
                raise InvalidArgument(
                    f"ray_options is for executor='ray' stages; this one has "
                    f"executor={self.executor!r}"
                )
            object.__setattr__(self, "ray_options", check_ray_options(self.ray_options))

    @property
    def pooled(self) -> bool:
        """True when the stage runs behind a worker pool rather than one actor."""
        return self.workers > 1 or self.executor == "process"


def check_ray_options(options: object) -> dict[str, Any]:
    """A copy of ``options`` if every key is one a Ray stage accepts, else ``InvalidArgument``."""
    if not isinstance(options, Mapping):
        raise InvalidArgument(f"ray_options must be a dict, got {options!r}")
    owned = sorted(k for k in options if k in RAY_OWNED_OPTIONS)
    if owned:
        raise InvalidArgument(
            f"ray_options {owned} cannot be set: the pipeline owns them (Ray's own restarts "
            "and task retries would run items out of order or twice; use on_error='restart', "
            "max_restarts and retries on add() instead, and workers=N for more actors)"
        )
    unknown = sorted(str(k) for k in options if k not in RAY_OPTIONS)
    if unknown:
        raise InvalidArgument(
            f"unknown ray_options {unknown}; a Ray stage accepts {sorted(RAY_OPTIONS)}"
        )
    checked = dict(options)
    for key in ("num_cpus", "num_gpus", "memory"):
        value = checked.get(key)
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
        ):
            raise InvalidArgument(f"ray_options[{key!r}] must be a number >= 0, got {value!r}")
    resources = checked.get("resources")
    if resources is not None and not isinstance(resources, Mapping):
        raise InvalidArgument(f"ray_options['resources'] must be a dict, got {resources!r}")
    if "max_in_flight" in checked:
        check.whole_number("ray_options['max_in_flight']", checked["max_in_flight"], 1)
    if "start_timeout" in checked:
        check.positive_seconds("ray_options['start_timeout']", checked["start_timeout"])
    return checked
