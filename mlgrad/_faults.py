"""Fault injection for the reliability tests: kill this process at an exact moment.

``MLGRAD_TEST_KILL_AT=EVENT:N`` makes the process SIGKILL itself at the N-th occurrence of
EVENT, to simulate a crash there; unset (always, outside the tests) every kill point is one
environment lookup. Events: ``write`` (an atomic file write: temporary file complete, not yet
renamed), ``chunk`` (a compiled chunk done, before its metrics and checkpoint),
``checkpoint_tmp`` (orbax wrote a checkpoint's temporary directory, not yet committed),
``checkpoint_async`` (the same moment of an asynchronous save, in orbax's background thread
while the run trains on: its files written and finalized, the commit next),
``checkpoint_saved`` (a checkpoint committed), ``figure`` (a figure's temporary file complete,
not yet renamed) and ``figures`` (the run's figures handed to the figure worker, being
rendered).

This module imports nothing of mlgrad, so any layer can call it without knowing the tests.
"""

from __future__ import annotations

import os
import signal
import sys

KILL_ENV = "MLGRAD_TEST_KILL_AT"
_counts: dict[str, int] = {}


def armed(event: str) -> bool:
    """Whether ``$MLGRAD_TEST_KILL_AT`` names ``event`` (so its kill point may fire)."""
    return os.environ.get(KILL_ENV, "").partition(":")[0] == event


def kill_point(event: str) -> None:
    """SIGKILLs this process at the N-th ``event`` if ``$MLGRAD_TEST_KILL_AT`` is ``event:N``.

    Args:
        event: the name of the moment reached (see the module docstring).

    Example:
        >>> kill_point("write")  # unset: nothing happens
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != event:
        return
    _counts[event] = _counts.get(event, 0) + 1
    if _counts[event] == int(n or 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
