"""Named pipelines for long-running services: find a running pipeline's handle by name."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ._errors import PipelineInitiationError, PipelineNotFound

if TYPE_CHECKING:
    from ._handle import PipelineHandle

_handles: dict[str, PipelineHandle] = {}
_lock = threading.Lock()


def register(name: str, handle: PipelineHandle) -> None:
    """Publish ``handle`` under ``name``; a running pipeline of that name must not exist."""
    with _lock:
        current = _handles.get(name)
        if current is not None and current is not handle and current.is_running:
            raise PipelineInitiationError(
                f"a running pipeline is already named {name!r}; stop it first or choose another name"
            )
        _handles[name] = handle


def unregister(name: str, handle: PipelineHandle) -> None:
    """Withdraw ``handle`` if it is the one published under ``name``."""
    with _lock:
        if _handles.get(name) is handle:
            del _handles[name]


def get_handle(name: str) -> PipelineHandle:
    """The handle of the running pipeline created with ``Pipeline(..., name=name)``.

    Raises ``PipelineNotFound`` (a ``LookupError``) when no running pipeline has that name.
    """
    with _lock:
        handle = _handles.get(name)
        running = sorted(n for n, h in _handles.items() if h.is_running)
    if handle is None or not handle.is_running:
        raise PipelineNotFound(
            f"no running pipeline is named {name!r}; running pipelines: {running or 'none'}"
        )
    return handle
