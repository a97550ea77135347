"""What a run says while it works: info lines on stderr, silenced by ``quiet``."""

from __future__ import annotations

import sys


class Console:
    """Info lines on stderr (none when ``quiet``); the progress bar only on a terminal.

    Args:
        quiet: say nothing (``--quiet``, and every process but 0 of a multi-process run).
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, text: str) -> None:
        """Prints one info line on stderr, unless quiet."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def warning(self, text: str) -> None:
        """Prints a warning on stderr, even when quiet (something the user must know)."""
        print(text, file=sys.stderr, flush=True)

    @property
    def progress(self) -> bool:
        """Whether to draw a progress bar (not quiet, and stderr is a terminal)."""
        return not self.quiet and sys.stderr.isatty()
