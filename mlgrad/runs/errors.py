"""The run layer's two kinds of failure, which the CLI maps to its exit codes.

A user's mistake in the config or the data raises :class:`mlgrad.config.ConfigError` or
:class:`mlgrad.data.DataError` (both ``ValueError``, both with a ``key``); the run layer adds:
"""

from __future__ import annotations


class UsageError(ValueError):
    """A run asked for in a way that cannot work (exit code 2; nothing was written): a run
    directory that is not empty, ``resume`` with nothing to resume, a bad process setup."""


class RunError(RuntimeError):
    """A failure while the run trains or writes (exit code 1): divergence, a disk error."""
