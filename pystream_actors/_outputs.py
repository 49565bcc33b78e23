"""What a pipeline's readers see: the latest output, the results and the dead letters.

The handle owns one ``Outputs`` from a start to the final stop, so readers keep reading
across a rebuild in another mode; the final stop ends every reader.
"""

from __future__ import annotations

import threading
from typing import Any

from ._latest import LatestResult
from ._result_stream import Broadcast


class Outputs:
    """The readers' side of a pipeline, written by the coordinator."""

    def __init__(self) -> None:
        self.latest = LatestResult()
        self.results = Broadcast()
        self.dead_letters = Broadcast()
        self._named: dict[str, tuple[LatestResult, Broadcast]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def publish(self, value: Any) -> None:
        """One more output, in input order (the coordinator's hot path)."""
        self.latest.put(value)
        if self.results.active:
            self.results.publish(value)

    def named(self, output: str) -> tuple[LatestResult, Broadcast]:
        """The latest slot and the results of a side output (a tap branch), made on first use."""
        with self._lock:
            pair = self._named.get(output)
            if pair is None:
                pair = self._named[output] = (LatestResult(), Broadcast())
                if self._closed:
                    pair[0].close()
                    pair[1].close()
            return pair

    def publish_named(self, output: str, value: Any) -> None:
        """One more output of a tap branch."""
        latest, results = self.named(output)
        latest.put(value)
        if results.active:
            results.publish(value)

    def close(self) -> None:
        """The pipeline stopped for good: wake and end every reader."""
        with self._lock:
            self._closed = True
            named = list(self._named.values())
        for latest, results in [(self.latest, self.results), *named]:
            latest.close()
            results.close()
        self.dead_letters.close()
