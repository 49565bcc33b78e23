"""What a stage does when it raises: skip the item, restart the stage, or stop the pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from . import _arguments as check

OnError = Literal["skip", "restart", "stop"]
ON_ERROR_POLICIES: tuple[OnError, ...] = ("skip", "restart", "stop")


@dataclass(frozen=True)
class FailurePolicy:
    """A stage's failure policy, given to ``Pipeline.add``.

    ``retries`` re-runs a failing item that many times before the policy applies.
    ``"restart"`` replaces the stage's actor (and instance, when a class or factory was
    given) after an exponential back-off between ``restart_backoff`` seconds; more than
    ``max_restarts`` restarts within ``restart_window`` seconds escalate to ``"stop"``.
    """

    on_error: OnError = "skip"
    retries: int = 0
    restart_backoff: tuple[float, float] = (0.01, 1.0)
    max_restarts: int = 5
    restart_window: float = 60.0

    def __post_init__(self) -> None:
        check.one_of("on_error", self.on_error, ON_ERROR_POLICIES)
        check.whole_number("retries", self.retries, 0)
        object.__setattr__(
            self, "restart_backoff", check.seconds_range("restart_backoff", self.restart_backoff)
        )
        check.whole_number("max_restarts", self.max_restarts, 0)
        check.positive_seconds("restart_window", self.restart_window)

    def backoff(self, recent_restarts: int) -> float:
        """Seconds to wait before the next restart, doubling with each recent one."""
        low, high = self.restart_backoff
        return min(high, low * math.pow(2, recent_restarts))
