"""What a pipeline's readers see: the latest output, the results and the dead letters.

The handle owns one ``Outputs`` from a start to the final stop, so readers keep reading
across a rebuild in another mode; the final stop ends every reader.
"""

from __future__ import annotations

from typing import Any

from ._latest import LatestResult
from ._result_stream import Broadcast


class Outputs:
    """The readers' side of a pipeline, written by the coordinator."""

    def __init__(self) -> None:
        self.latest = LatestResult()
        self.results = Broadcast()
        self.dead_letters = Broadcast()

    def publish(self, value: Any) -> None:
        """One more output, in input order (the coordinator's hot path)."""
        self.latest.put(value)
        if self.results.active:
            self.results.publish(value)

    def close(self) -> None:
        """The pipeline stopped for good: wake and end every reader."""
        self.latest.close()
        self.results.close()
        self.dead_letters.close()
