"""Training progress: a bar on a terminal, a line every few seconds in a log (H, item 3)."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
import time

import pytest

from mlgrad.training import progress as progress_module
from mlgrad.training.progress import Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_few_seconds_with_rate_and_eta_after_the_compilation(monkeypatch):
    compiled = [0.0]
    monkeypatch.setattr(progress_module, "compile_seconds", lambda: compiled[0])
    clock, out = Clock(), io.StringIO()
    with Progress(True, 0, 10_000, stream=out, clock=clock) as bar:
        compiled[0] = 3.0  # the first chunk compiled for 3 s, then ran 1000 steps in 1 s
        clock.now += 4.0
        bar.update(1000, 0.5, None)
        for step in range(2000, 10_001, 1000):  # 1000 steps a second
            clock.now += 1.0
            bar.update(step, 0.25, 0.3 if step == 10_000 else None)
    lines = out.getvalue().splitlines()
    assert lines[0] == "compiling the training program ..."
    assert lines[1] == "compiled in 3.0 s"
    # a line for the first chunk, then one every LINE_SECONDS (5 s), and the last step's
    assert lines[2] == "step 1000/10000 (10%)  loss 0.5"  # no rate yet: the chunk compiled
    assert lines[3].startswith("step 6000/10000 (60%)") and lines[3].endswith("ETA 0:00:04")
    assert lines[4] == "step 10000/10000 (100%)  loss 0.25  val 0.3  1,000 steps/s  ETA 0:00:00"
    assert len(lines) == 5


def test_disabled_or_nothing_to_do_says_nothing():
    for enabled, start in ((False, 0), (True, 50)):
        out = io.StringIO()
        with Progress(enabled, start, 50, stream=out) as bar:
            bar.update(50, 1.0, None)
        assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00:00"), (59.6, "0:01:00"), (3725, "1:02:05")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_compile_seconds_counts_jax_compilations():
    import jax
    import jax.numpy as jnp

    before = progress_module.compile_seconds()
    jax.jit(lambda x: jnp.sin(x) * 3.0 + x**2.5).lower(jnp.ones(7)).compile()
    assert progress_module.compile_seconds() > before


def _run_piped(args: list[str], cwd) -> list[tuple[float, str]]:
    """The stderr lines of ``mlgrad`` run with stderr a pipe, with when each arrived."""
    env = dict(os.environ, MLGRAD_CACHE_DIR=str(cwd / "cache"))
    command = [sys.executable, "-m", "mlgrad", *args]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    with subprocess.Popen(command, cwd=cwd, env=env, text=True, **pipes) as proc:
        assert proc.stderr is not None
        lines = [(time.monotonic(), line.rstrip("\n")) for line in proc.stderr]
    assert proc.returncode == 0, lines
    return lines


def test_a_piped_run_prints_progress_lines(tmp_path):
    lines = _run_piped(["train", "linear_regression", "--out", "r", "--no-plots"], tmp_path)
    text = [line for _, line in lines]
    assert "compiling the training program ..." in text
    assert any(re.fullmatch(r"compiled in \d+\.\d s", line) for line in text)
    last = [line for line in text if line.startswith("step ")][-1]
    pattern = r"step (\d+)/\1 \(100%\)  loss [0-9.e+-]+  [0-9,.]+ steps/s  ETA 0:00:00"
    assert re.fullmatch(pattern, last), last


@pytest.mark.slow
def test_a_long_piped_run_prints_a_line_at_least_every_ten_seconds(tmp_path):
    """The issue's acceptance: a 10,000-step autoencoder run piped to a file."""
    args = ["train", "autoencoder", "train.steps=10000", "--out", "r", "--no-plots"]
    lines = _run_piped(args, tmp_path)
    start = next(t for t, line in lines if line.startswith("compiled in"))
    times = [start] + [t for t, line in lines if line.startswith("step ")]
    assert len(times) >= 3
    assert max(b - a for a, b in itertools.pairwise(times)) < 10.0
