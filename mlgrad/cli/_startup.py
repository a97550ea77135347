"""The program's start-up: the cyclic garbage collector is held off until the command's
imports are done (:func:`mlgrad.cli.console`)."""

from __future__ import annotations

import gc

_starting = False


def hold_collector() -> None:
    """Disables the collector until :func:`started_up`."""
    global _starting
    gc.disable()
    _starting = True


def started_up() -> None:
    """The program's start-up is over (its imports are done): the objects made so far are
    frozen (they live until the end; collections skip them) and the collector runs again."""
    global _starting
    if _starting:
        _starting = False
        gc.freeze()
        gc.enable()
