"""PyStream's ``get_results`` semantics: the newest unread output, each read at most once."""

from __future__ import annotations

import threading
from typing import Any

_EMPTY = object()


class LatestResult:
    """Holds only the newest finished output; reading it consumes it.

    Written for every output on the coordinator's hot path, so a write only notifies
    when a reader is actually waiting. ``close()`` wakes every waiting reader.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._value: Any = _EMPTY
        self._waiting = 0
        self._closed = False

    def put(self, value: Any) -> None:
        """Replace any unread output with ``value``."""
        with self._ready:
            self._value = value
            if self._waiting:
                self._ready.notify_all()

    def take(self, timeout: float | None = 0.0, default: Any = None) -> Any:
        """The newest unread output, waiting up to ``timeout`` seconds; else ``default``.

        ``timeout=0`` never waits, ``None`` waits until an output arrives or the pipeline
        stops.
        """
        with self._ready:
            if self._value is _EMPTY and timeout != 0.0 and not self._closed:
                self._waiting += 1
                try:
                    self._ready.wait_for(lambda: self._value is not _EMPTY or self._closed, timeout)
                finally:
                    self._waiting -= 1
            value, self._value = self._value, _EMPTY
        return default if value is _EMPTY else value

    def close(self) -> None:
        """The pipeline stopped: wake every reader (they get the default)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
