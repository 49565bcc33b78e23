"""The command line's one error type."""

from __future__ import annotations


class CliError(Exception):
    """A mistake in the command line or the target; printed without a traceback."""
