"""What a run says while it works: info lines on stderr, silenced by ``quiet``."""

from __future__ import annotations

import shutil
import sys
import textwrap


class Console:
    """Info lines on stderr (none when ``quiet``), and training progress: a bar on a
    terminal, a line every few seconds otherwise (:mod:`mlgrad.training.progress`).

    Args:
        quiet: say nothing (``--quiet``, and every process but 0 of a multi-process run).
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, text: str) -> None:
        """Prints one info line on stderr, unless quiet."""
        if not self.quiet:
            print(_fit_terminal(text), file=sys.stderr, flush=True)

    def warning(self, text: str) -> None:
        """Prints a warning on stderr, even when quiet (something the user must know)."""
        print(_fit_terminal(text), file=sys.stderr, flush=True)

    @property
    def progress(self) -> bool:
        """Whether to report training progress (unless quiet: a bar on a terminal, lines in
        a log file or pipe)."""
        return not self.quiet


def _fit_terminal(text: str) -> str:
    """``text`` wrapped at word boundaries to the terminal's width (continuation lines
    indented), so that a terminal never breaks a word; unchanged in a log file or pipe, where
    one line per message is easier to search."""
    if not sys.stderr.isatty():
        return text
    width = shutil.get_terminal_size().columns
    return "\n".join(
        textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False)
        for line in text.splitlines() or [""]
    )
