"""The command line's own error: a command given something it can't use (one line, exit 2)."""

from __future__ import annotations


class UsageError(Exception):
    """A command given something it can't use: one line, exit 2."""
