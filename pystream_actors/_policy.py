"""What a stage does when it raises: skip the item, restart the stage, or stop the pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
        if self.on_error not in ON_ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {ON_ERROR_POLICIES}, got {self.on_error!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {self.retries!r}")
        low, high = self.restart_backoff
        if not 0 <= low <= high:
            raise ValueError(
                f"restart_backoff must be (min, max) seconds with 0 <= min <= max, got {self.restart_backoff!r}"
            )
        if self.max_restarts < 0 or self.restart_window <= 0:
            raise ValueError("max_restarts must be >= 0 and restart_window > 0 seconds")

    def backoff(self, recent_restarts: int) -> float:
        """Seconds to wait before the next restart, doubling with each recent one."""
        low, high = self.restart_backoff
        return min(high, low * math.pow(2, recent_restarts))
