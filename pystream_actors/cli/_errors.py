"""The command line's one error type."""

from __future__ import annotations

from .._errors import PyStreamError


class CliError(PyStreamError):
    """A mistake in the command line or the target; printed without a traceback."""
