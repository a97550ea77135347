"""Info lines fit the terminal without breaking words (H, item 9), and stay whole in logs."""

from __future__ import annotations

import io

from mlgrad.runs.console import Console

LINE = "data: ice_cream: US ice-cream consumption per head, 30 four-week periods 1951-1953"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_lines_wrap_at_word_boundaries(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("COLUMNS", "40")
    Console().info(LINE)
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 3 and all(len(line) <= 40 for line in lines)
    assert lines[1].startswith("  ") and " ".join(w for ln in lines for w in ln.split()) == LINE


def test_in_a_log_a_message_stays_one_line(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setenv("COLUMNS", "40")
    Console().warning(LINE)
    assert log.getvalue() == LINE + "\n"
