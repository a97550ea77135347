"""The run layer's two kinds of failure, which the CLI maps to its exit codes.

A user's mistake in the config or the data raises :class:`mlgrad.config.ConfigError` or
:class:`mlgrad.data.DataError` (both ``ValueError``, both with a ``key``); the run layer adds:
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterator


class UsageError(ValueError):
    """A run asked for in a way that cannot work (exit code 2; nothing was written): a run
    directory that is not empty, ``resume`` with nothing to resume, a bad process setup."""


class RunError(RuntimeError):
    """A failure while the run trains or writes (exit code 1): divergence, a disk error."""


class Interrupted(KeyboardInterrupt):
    """A run or sweep stopped on request (Ctrl-C or SIGTERM) after saving its progress.

    ``str(e)`` says how to continue; :attr:`exit_code` is the shell's ``128 + signal``
    (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT, step: int | None = None) -> None:
        super().__init__(message)
        self.signum = int(signum)
        self.step = step  # the step the run stopped at (its checkpoint), when known

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def out_of_memory_is_a_run_error() -> Iterator[None]:
    """XLA's RESOURCE_EXHAUSTED (a model, batch or sweep larger than the device's memory) as
    a :class:`RunError` that says so and how much was asked for, instead of an unexpected
    error. (JAX's runtime error carries its status only as the message's first word.)"""
    try:
        yield
    except MemoryError as e:  # a program found too large before it ran
        raise RunError(f"out of memory: {e}") from None
    except Exception as e:
        text = str(e)
        if type(e).__name__ not in ("JaxRuntimeError", "XlaRuntimeError") or not text.startswith(
            "RESOURCE_EXHAUSTED"
        ):
            raise
        asked = re.search(r"allocating (\d+) bytes", text)
        size = f" {int(asked.group(1)) / 1e9:.3g} GB" if asked else ""
        raise RunError(
            f"out of memory: the device could not allocate{size} for this run (XLA: "
            f"{text.splitlines()[0][:200]}). Make the model, the batch or the sweep smaller, "
            "or train on a device with more memory."
        ) from None
