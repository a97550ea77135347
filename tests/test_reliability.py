"""Reliability: killed processes, fuzzed configs, bad data, divergence, safe loading, disk faults.

What is already covered elsewhere (and only referenced here):

* an output path under a regular file exits 2 before training:
  ``tests/test_cli.py::test_output_path_under_a_regular_file_exits_2``;
* a direct ``checkpoint.restore`` whose shapes do not match names the arrays:
  ``tests/test_checkpoint.py::test_shape_mismatch_names_the_arrays_and_shapes``;
* a failed orbax write at the checkpoint layer keeps the previous checkpoint:
  ``tests/test_checkpoint.py::test_a_failed_write_keeps_the_previous_checkpoint``;
* the loader's bad CSV files: ``tests/test_data.py`` (here: the same through the CLI, and NPZ);
* ``load_config`` fuzzing: ``tests/test_config.py`` (here: the CLI entry with ``--dry-run``).

Crash safety: a real ``python -m mlgrad train`` subprocess is SIGKILLed, either by the test
hook ``MLGRAD_TEST_KILL_AT=EVENT:N`` (:func:`mlgrad._faults.kill_point`: an exact moment, e.g. a
checkpoint written to orbax's temporary directory but not yet committed) or from outside after a
random delay. The latest complete checkpoint must then load, and ``--resume`` (in-process, to
save an interpreter start) must end with a train state and metrics bit-identical to an
uninterrupted run. A few kill points run by default, all of them under ``-m slow``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from mlgrad import runs
from mlgrad._faults import KILL_ENV
from mlgrad.cli import main
from mlgrad.runs import initial_state, prepare, rundir
from mlgrad.runs.metrics_log import MetricsLog, without_timing
from mlgrad.training.checkpoint import all_steps, restore

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
LR = CONFIGS / "linear_regression.yaml"
MULTI = CONFIGS / "linear_regression_multi.yaml"

#: 200 mini-batch steps with momentum (the optimizer state and the batch order matter for
#: bit-identity), a checkpoint every 20 steps (11 saves, 50 chunks of 4 steps).
CRASH = [
    str(LR),
    "train.steps=200",
    "train.checkpoint_every=20",
    "train.keep_checkpoints=2",
    "train.batch_size=8",
    "train.log_every=1",
    "optimizer.momentum=0.9",
]


# The CLI caches compiled programs in a temporary directory (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


def _train(*argv: object) -> int:
    return main(["train", *map(str, argv), "--no-plots", "-q"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """The uninterrupted run that every crashed-and-resumed run must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _train(*CRASH, "--out", out) == 0
    return out


def _state(run_dir: Path, step: int | None = None):
    """The train state of a run directory's checkpoint (default: the latest)."""
    setup = prepare(run_dir / "config.yaml")
    return restore(run_dir / "checkpoints", initial_state(setup), step)


def _assert_same_run(run: Path, ref: Path) -> None:
    """Bit-identical final train state (params, optimizer state, step, key) and metrics."""
    a, b = _state(run), _state(ref)
    assert int(a.step) == int(b.step) == 200
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    a, b = (without_timing(MetricsLog.read(d / "metrics.jsonl")) for d in (run, ref))
    assert a == b  # every record and value but the wall-clock steps_per_s
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (run, ref))
    assert sa["metrics"] == sb["metrics"] and sa["coefficients"] == sb["coefficients"]


def _spawn(out: Path, kill_at: str | None) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(rundir.__file__).resolve().parents[2]),
    }  # this mlgrad
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.Popen(
        [sys.executable, "-m", "mlgrad", "train", *CRASH, "--out", str(out), "--no-plots", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# Kill points: EVENT:N of the test hook, or "after:SECONDS" (a SIGKILL from outside).
# A run of CRASH makes 11 checkpoint saves, 50 chunks and about 14 atomic file writes
# (config.yaml, metrics.jsonl at the start and at each checkpoint, summary.json).
# checkpoint_async: killed inside an asynchronous save, in orbax's background thread (files
# written, not committed) while the run trains the next chunk.
KILLS_CI = ["write:1", "chunk:23", "checkpoint_async:3"]
_rng = random.Random(5)
KILLS_SLOW = [
    "checkpoint_tmp:3",
    "checkpoint_saved:11",
    *(f"checkpoint_tmp:{n}" for n in (1, 2, 6, 10, 11)),
    *(f"checkpoint_async:{n}" for n in (1, 2, 7, 11)),
    *(f"write:{n}" for n in (2, 3, 7, 12, 13)),
    *(f"chunk:{n}" for n in (1, 5, 38, 50)),
    *(f"checkpoint_saved:{n}" for n in (1, 2, 7)),
    # Best effort: a fresh process starts (imports JAX) in about 1.5-2 s and trains in about
    # 0.5 s, so these mostly land in training or a write; one that finishes first still must
    # leave a complete run. The 26 hook points (these and KILLS_CI) are the deterministic ones.
    *(f"after:{_rng.uniform(1.6, 2.9):.2f}" for _ in range(6)),
]
assert len(KILLS_CI) + len(KILLS_SLOW) >= 20


@pytest.mark.parametrize(
    "kill_at", KILLS_CI + [pytest.param(k, marks=pytest.mark.slow) for k in KILLS_SLOW]
)
def test_sigkill_leaves_a_loadable_run_and_resume_is_bit_identical(kill_at, tmp_path, reference):
    out = tmp_path / "run"
    proc = _spawn(out, None if kill_at.startswith("after:") else kill_at)
    if kill_at.startswith("after:"):
        try:
            proc.wait(float(kill_at.split(":")[1]))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    if not kill_at.startswith("after:"):
        assert proc.returncode == -signal.SIGKILL, err  # the hook fired
    assert "Traceback" not in err

    # The latest complete checkpoint loads (a half-written one is never listed).
    if (out / "checkpoints").is_dir() and all_steps(out / "checkpoints"):
        state = _state(out)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))
        assert int(state.step) % 20 == 0
        assert main(["eval", str(out)]) == 0  # and the user-facing reader agrees
    # A killed run is continued with --resume; one killed before its config was written
    # (nothing to resume yet) is simply started again in the same directory.
    if (out / "config.yaml").is_file():
        assert _train(*CRASH, "--out", out, "--resume") == 0
    else:
        assert _train(*CRASH, "--out", out) == 0
    _assert_same_run(out, reference)
    assert not list(out.rglob("*tmp*"))  # leftovers of the killed writes are cleaned up


@pytest.mark.slow  # a kill point (CI budget)
def test_two_writers_racing_for_one_directory_one_is_refused_and_the_killed_winner_resumes(
    tmp_path, reference
):
    """Two runs started at once into the same --out: exactly one owns it (the other exits 2
    naming the owner's PID, writing nothing); the owner is killed mid-run and resumes to the
    uninterrupted run, bit for bit."""
    out = tmp_path / "run"
    procs = [_spawn(out, "chunk:30"), _spawn(out, "chunk:30")]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [-signal.SIGKILL, 2], results
    refused = next(err for code, err in results if code == 2)
    # refused while the owner trains (its PID named), or after it was killed (not empty)
    assert "in use by another mlgrad process (PID" in refused or "not empty" in refused
    assert "Traceback" not in refused
    assert _train(*CRASH, "--out", out, "--resume") == 0
    _assert_same_run(out, reference)


@pytest.mark.slow  # a kill point (CI budget)
def test_sigterm_stops_a_run_at_its_next_chunk_with_a_checkpoint(tmp_path):
    """SIGTERM (a batch system's time limit) or Ctrl-C while a run trains: it saves a
    checkpoint at the end of the chunk in flight, with the metrics up to it, and says how to
    continue (exit 143)."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(rundir.__file__).resolve().parents[2])}
    env.pop(KILL_ENV, None)
    # (logged every 100,000 steps: the config's every step would make a record a step, about
    # a second of host work per 40,000-step chunk, which a busy CI machine stretches past 5 s)
    long_run = [str(LR), "train.steps=200000000", "train.checkpoint_every=100000000"]
    long_run.append("train.log_every=100000")
    argv = [sys.executable, "-m", "mlgrad", "train", *long_run, "--out", str(out), "--no-plots"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("devices:"):  # training starts (after the compilation)
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and time.monotonic() - t0 < 5.0, err
    assert f"continue with: mlgrad train {' '.join(long_run)} --out {out} --resume" in err
    step = max(all_steps(out / "checkpoints"))
    assert 0 < step < 200_000_000 and "Traceback" not in err
    logged = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) == step  # the metrics are never behind the checkpoint
    runs.prepare_run(long_run[0], out, overrides=long_run[1:], resume=True)  # and it resumes


# ---------------------------------------------------------------------------------------------
# killed while the figures are drawn (by the figure worker): no half figure, resume redraws

_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _figure_workers_of(pid: int) -> list[int]:
    """The figure worker processes (and their children) started by process ``pid``."""
    from mlgrad._figure_worker import MARKER

    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if MARKER.encode() in words and str(pid).encode() in words:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="lists processes in /proc")
@pytest.mark.parametrize(
    "kill_at",
    [
        "figures:1",  # the main process, its figures handed to the worker and being drawn
        "figure:1",  # the processes drawing the figures, each with its PNG written to a
        # temporary file not yet renamed
    ],
)
def test_killed_while_drawing_figures_leaves_no_half_figure_and_resume_redraws(kill_at, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(rundir.__file__).resolve().parents[2])}
    env[KILL_ENV] = kill_at
    argv = [sys.executable, "-m", "mlgrad", "train", str(LR), "--out", str(out), "-q"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err_bytes = proc.communicate(timeout=300)
    err = err_bytes.decode()
    assert "Traceback" not in err
    if kill_at == "figures:1":
        assert proc.returncode == -signal.SIGKILL, err
    else:  # the figures' processes died: a write failure of the run (exit 1), said plainly
        assert proc.returncode == 1, err
        assert "figure's process stopped (killed by signal 9)" in err, err
    deadline = time.monotonic() + 30  # an orphaned worker finishes the figure in hand, exits
    while _figure_workers_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _figure_workers_of(proc.pid)  # no stray process
    for png in out.glob("*.png"):  # any figure there is whole
        data = png.read_bytes()
        assert data.startswith(_PNG_START) and data.endswith(_PNG_END), png
    assert not (out / "report.html").exists()  # written only once the figures are

    assert main(["train", str(LR), "--out", str(out), "-q", "--resume"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"loss.png", "fit.png", "loss_surface.png", "report.html", "summary.json"} <= names
    for name in ("loss.png", "fit.png", "loss_surface.png"):
        data = (out / name).read_bytes()
        assert data.startswith(_PNG_START) and data.endswith(_PNG_END), name
    assert not list(out.rglob("*tmp*"))  # the killed writes' temporary files are removed


# ---------------------------------------------------------------------------------------------
# stopping and killing a sweep: it continues with --resume, bit for bit

#: Four runs of 20,000 mini-batch steps (about a second of training; two or three chunks), a
#: checkpoint every 64 steps (the first chunk's end, then at most every 10 s).
SWEEP = [
    str(LR),
    "seed=0,1",
    "optimizer.learning_rate=0.05,0.1",
    "optimizer.momentum=0.9",
    "train.batch_size=8",
    "train.checkpoint_every=64",
]
STEPS = "train.steps=20000"
#: The same sweep made long enough (minutes) that a signal always lands while it trains.
LONG = "train.steps=2000000"


def _spawn_sweep(out: Path, steps: str, kill_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(rundir.__file__).resolve().parents[2])}
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    argv = [sys.executable, "-m", "mlgrad", "sweep", *SWEEP, steps, "--out", str(out)]
    return subprocess.Popen(
        [*argv, "--no-plots"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _signal_once_training(proc: subprocess.Popen, signum: int) -> tuple[str, float]:
    """Sends ``signum`` a second after the sweep starts its group; its stderr and how long
    it took to exit after the signal."""
    for line in proc.stderr:  # training starts after this line (and the compilation)
        if line.startswith("group 1/1"):
            break
    time.sleep(1.0)
    proc.send_signal(signum)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    return err, time.monotonic() - t0


def _resume_sweep(out: Path, steps: str = STEPS) -> int:
    return main(["sweep", *SWEEP, steps, "--out", str(out), "--no-plots", "-q", "--resume"])


def _sweep_rows(out: Path) -> list[dict]:
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    return [{k: r[k] for k in ("metrics", "min_loss", "diverged")} for r in runs]


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    assert main(["sweep", *SWEEP, STEPS, "--out", str(out), "--no-plots", "-q"]) == 0
    return _sweep_rows(out)


def test_sigterm_stops_a_sweep_within_seconds_leaving_it_resumable(tmp_path):
    from mlgrad.runs.sweep_progress import check_resumable

    out = tmp_path / "sw"
    err, waited = _signal_once_training(_spawn_sweep(out, LONG), signal.SIGTERM)
    assert "Traceback" not in err
    assert f"--out {out} --resume" in err and "progress is saved" in err
    assert waited < 5.0, waited  # the chunk in flight (about 1 s), a checkpoint, the exit
    # What --resume continues from: the plan matches, the group's state is saved part-way.
    plan = runs.prepare_sweep(LR, [*SWEEP[1:], LONG], out, resume=True)
    check_resumable(plan)
    group = out / "progress" / "group-0"
    assert (group / "state.npz").is_file()
    assert 0 < (group / "losses.bin").stat().st_size // (4 * 4) < 2_000_000  # steps x 4 runs
    assert not (out / "sweep.json").exists()
    # Another sweep into it is refused, and so is resuming it with other values.
    assert main(["sweep", *SWEEP, LONG, "--out", str(out), "--no-plots", "-q"]) == 2
    assert _resume_sweep(out, "train.steps=30000") == 2


@pytest.mark.slow
def test_a_stopped_sweep_resumes_bit_identically(tmp_path, sweep_reference):
    out = tmp_path / "sw"
    proc = _spawn_sweep(out, STEPS)
    err, _ = _signal_once_training(proc, signal.SIGINT)
    if proc.returncode == 0:  # finished before the signal (a fast machine): nothing to test
        pytest.fail("the sweep finished before Ctrl-C; make SWEEP longer")
    assert proc.returncode == 130, err
    assert _resume_sweep(out) == 0
    assert _sweep_rows(out) == sweep_reference


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    # in the first group's chunks, after its progress, while writing the results (the third
    # write and later: the runs' logs, the report, sweep.json), and at random moments
    ["sweep_chunk:1", "sweep_chunk:2", "sweep_chunk:3", "write:2", "write:4", "write:7"]
    + [f"after:{random.Random(7 + i).uniform(2.0, 4.0):.2f}" for i in range(3)],
)
def test_a_sweep_killed_mid_group_resumes_bit_identically(kill_at, tmp_path, sweep_reference):
    out = tmp_path / "sw"
    at = None if kill_at.startswith("after:") else kill_at
    proc = _spawn_sweep(out, STEPS, at)
    if at is None:
        try:
            proc.wait(float(kill_at.split(":")[1]))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    if at is not None:
        assert proc.returncode == -signal.SIGKILL, err  # the hook fired
    assert "Traceback" not in err
    if proc.returncode == 0:  # a random kill that came after the end: nothing to resume
        assert _sweep_rows(out) == sweep_reference
        return
    if not (out / "progress" / "plan.json").is_file():  # killed before it began: start again
        assert main(["sweep", *SWEEP, STEPS, "--out", str(out), "--no-plots", "-q"]) == 0
    else:
        assert _resume_sweep(out) == 0
    assert _sweep_rows(out) == sweep_reference
    assert not list(out.rglob("*tmp*")) and not (out / "progress").exists()


# ---------------------------------------------------------------------------------------------
# fuzzed configs and overrides through the CLI entry (test_config.py fuzzes load_config)

_BASE = LR.read_text(encoding="utf-8")
_LINES = [i for i, line in enumerate(_BASE.splitlines()) if re.match(r"^\s*\w+: ", line)]
_KEYS = [
    "name",
    "seed",
    "model",
    "model.name",
    "model.standardize",
    "model.width",
    "data",
    "data.name",
    "data.features",
    "data.val_split",
    "data.split_seed",
    "optimizer",
    "optimizer.name",
    "optimizer.learning_rate",
    "optimizer.momentum",
    "train",
    "train.steps",
    "train.steps.x",
    "train.batch_size",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "bogus",
    "model.bogus",
    "a.b.c.d",
]
_VALUES = [
    "",
    "0",
    "-1",
    "-5.5",
    "3",
    "1e400",
    "-1e400",
    "99999999999999999999",
    "2147483648",
    "4294967296",
    ".nan",
    ".inf",
    "true",
    "abc",
    "[1, 2]",
    "[temp]",
    "[[temp]]",
    "{}",
    "{a: 1}",
    "{name: sgd}",
    "null",
    "~",
    "'5'",
    "${seed}",
    "${nope}",
    "!!python/object/apply:os.system [echo pwned]",
    "!!binary aGk=",
    "&a [1]",
    "*a",
    "{unclosed",
    "a: b: c",
    "\t1",
]


def _mutate(line_index: int, value: str, indent: int) -> str:
    """The shipped config with one ``key: value`` line's value replaced and its indent shifted."""
    lines = _BASE.splitlines()
    key = lines[line_index].split(":")[0]
    lines[line_index] = " " * indent + key.strip() + ": " + value
    return "\n".join(lines) + "\n"


def test_fuzzed_configs_through_the_cli_exit_0_or_2_and_never_train(tmp_path, monkeypatch, capsys):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = tmp_path / "fuzz.yaml"

    def never_train(*args, **kwargs):
        raise AssertionError("--dry-run must never train")

    monkeypatch.setattr(runs, "train_run", never_train)

    value = st.one_of(st.sampled_from(_VALUES), st.text(max_size=8))
    override = st.one_of(
        st.builds("{}={}".format, st.sampled_from(_KEYS), value),
        st.text(max_size=12),
    )
    content = st.one_of(
        st.just(_BASE.encode()),
        st.builds(_mutate, st.sampled_from(_LINES), value, st.sampled_from([0, 0, 2, 4, 1])).map(
            lambda t: t.encode("utf-8", "surrogatepass")
        ),
        st.just(b""),
        st.just(b"   \n# only a comment\n"),
        st.binary(max_size=40),
        st.just(_BASE.encode() + b"\xff\xfe bad bytes\n"),
        st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )

    @settings(
        max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(content, st.lists(override, max_size=3))
    def check(text, overrides):
        config.write_bytes(text)
        code = main(["train", str(config), *overrides, "--dry-run"])
        out, err = capsys.readouterr()
        assert code in (0, 2), (code, err)
        assert "Traceback" not in out + err
        if code == 2:
            message = err.strip()
            assert message.startswith(("error: ", "usage: ")), message
            assert message.count("error:") == 1 and "\n\n" not in message, message
        else:
            assert out.startswith("name: ")  # the resolved config
        assert list(work.iterdir()) == []  # nothing written
        assert not (tmp_path / "pwned").exists()

    check()


# ---------------------------------------------------------------------------------------------
# bad data files through the CLI (test_data.py covers the loader)


def _csv(text: str):
    def write(path: Path) -> Path:
        path = path.with_suffix(".csv")
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _npz(**arrays):
    def write(path: Path) -> Path:
        path = path.with_suffix(".npz")
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    return write


def _raw(suffix: str, data: bytes):
    def write(path: Path) -> Path:
        path = path.with_suffix(suffix)
        path.write_bytes(data)
        return path

    return write


_X = np.arange(12.0).reshape(6, 2)
_Y = np.arange(6.0)
BAD_DATA = [
    ("csv-empty", _csv(""), [], "empty"),
    ("csv-header-only", _csv("a,y\n"), [], "no data rows"),
    ("csv-missing-feature", _csv("a,y\n1,2\n3,4\n5,6\n"), ["features: [b]"], "'b'"),
    ("csv-missing-target", _csv("a,b\n1,2\n3,4\n5,6\n"), [], "'y'"),
    ("csv-non-numeric", _csv("a,y\n1,2\nx,3\n5,6\n"), [], "numeric|number"),
    ("csv-nan", _csv("a,y\n1,2\nnan,3\n5,6\n"), [], "NaN|finite"),
    ("csv-inf", _csv("a,y\n1,2\n3,-inf\n5,6\n"), [], "inf|finite"),
    ("csv-single-row", _csv("a,y\n1,2\n"), [], "row"),
    ("csv-ragged", _csv("a,b,y\n1,2,3\n4,5\n6,7,8\n"), [], "cells|columns"),
    ("csv-not-utf8", _raw(".csv", b"a,y\n1,2\n\xff\xfe,3\n"), [], "UTF-8|decode|encoding"),
    ("npz-not-a-zip", _raw(".npz", b"PK\x03\x04 not really"), [], "NPZ"),
    ("npz-empty", _npz(), [], "no arrays"),
    ("npz-missing-y", _npz(x=_X), [], "'y'|target"),
    ("npz-row-mismatch", _npz(x=_X, y=_Y[:4]), [], "rows|6|4"),
    ("npz-nan", _npz(x=np.where(_X == 3, np.nan, _X), y=_Y), [], "NaN|finite"),
    ("npz-inf", _npz(x=_X, y=np.where(_Y == 2, np.inf, _Y)), [], "inf|finite"),
    ("npz-single-row", _npz(x=_X[:1], y=_Y[:1]), [], "row"),
    ("npz-strings", _npz(x=np.array([["a", "b"]] * 6), y=_Y), [], "dtype|number"),
    ("npz-pickled-objects", _npz(x=np.array([{"a": 1}] * 6, dtype=object), y=_Y), [], "pickle"),
    ("npz-too-many-features", _npz(x=_X, y=_Y), ["features: [a, b, c]"], "feature"),
]


@pytest.mark.parametrize(
    ("writer", "extra", "problem"),
    [pytest.param(w, e, p, id=i) for i, w, e, p in BAD_DATA],
)
def test_bad_data_files_exit_2_naming_the_file_and_problem(
    writer, extra, problem, tmp_path, monkeypatch, capsys
):
    path = writer(tmp_path / "bad")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    target = "" if path.suffix == ".npz" and "features" not in " ".join(extra) else ", target: y"
    section = "{path: " + str(path) + target + "".join(", " + e for e in extra) + "}"
    code = main(["train", str(LR), f"data={section}", "--out", "run", "--no-plots"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in out + err, err
    assert path.name in err, err
    assert re.search(problem, err, re.IGNORECASE), err
    assert list(work.iterdir()) == []  # nothing written


# ---------------------------------------------------------------------------------------------
# divergence: test_cli.py::test_divergence_exits_1_and_keeps_the_last_good_checkpoint checks the
# exit code, the step, the suggestion and the last good state; here: that state is usable.


def test_diverged_run_can_be_evaluated_and_resumed_to_the_same_failure(tmp_path, capsys):
    out = tmp_path / "d"
    args = [LR, "optimizer.learning_rate=10", "--out", out]
    assert _train(*args) == 1
    err = capsys.readouterr().err
    step = int(err.split("diverged at step ")[1].split(":")[0])
    assert "smaller learning rate" in err and "optimizer.learning_rate=1" in err
    # metrics.jsonl holds every logged step before the failing one (log_every=1 here), the
    # losses of the chunk that diverged included.
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, step))
    assert main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["step"] == step - 1
    # The last good state has finite parameters; its loss (the loss of the diverging step,
    # taken before that step's update) may already overflow, and eval reports it as null.
    assert set(report["metrics"]) == {"train_loss"}
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(_state(out).params))
    # Resuming the same config diverges again at the same step (the run is deterministic),
    # and the last good checkpoint is still there afterwards.
    assert _train(*args, "--resume") == 1
    assert f"diverged at step {step}:" in capsys.readouterr().err
    assert int(_state(out).step) == step - 1


# ---------------------------------------------------------------------------------------------
# safe loading


_FORBIDDEN = [
    (r"\bpickle\.|import (cloud)?pickle|from pickle|\bdill\b|\bmarshal\.|\bshelve\.", "pickle"),
    (r"(?<![\w.])(eval|exec|compile)\(|__import__\(", "eval/exec"),
    (r"yaml\.(unsafe_load|full_load)|yaml\.(Unsafe|Full)?Loader\b|UnsafeLoader", "unsafe YAML"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
    (r"\btorch\.load\b|\bjoblib\.load\b", "pickle-based loaders"),
]


def _code_lines(path: Path):
    """Source lines without comments and docstring-only prose (a rough but strict filter)."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip().startswith(("``", '"""', "'''")) or "``" in code:
            continue
        yield n, code


def test_sources_never_unpickle_or_eval():
    sources = sorted((ROOT / "mlgrad").rglob("*.py")) + sorted((ROOT / "models").rglob("*.py"))
    assert len(sources) > 10
    hits = []
    for path in sources:
        for n, code in _code_lines(path):
            for pattern, what in _FORBIDDEN:
                if re.search(pattern, code):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {what}: {code.strip()}")
            if re.search(r"yaml\.load\(", code) and "_yaml_loader()" not in code:
                hits.append(f"{path.relative_to(ROOT)}:{n}: yaml.load without the safe loader")
    assert hits == []


def test_the_yaml_loader_is_safe():
    """OmegaConf's loader is PyYAML's (C) safe loader plus constructors for pathlib paths."""
    import yaml

    from mlgrad.config.files import _yaml_loader

    loader = _yaml_loader()
    assert issubclass(loader, yaml.constructor.SafeConstructor)
    assert not issubclass(loader, yaml.constructor.FullConstructor)
    python_tags = [t for t in loader.yaml_constructors if t and "python" in t]
    python_tags += [t for t in loader.yaml_multi_constructors if t and "python" in t]
    assert all(t.startswith("tag:yaml.org,2002:python/object/apply:pathlib.") for t in python_tags)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['touch {pwned}']\n",
        "name: x\nseed: !!python/object/apply:os.system ['touch {pwned}']\n",
        "name: !!python/name:os.system\n",
        "model: !!python/object:argparse.Namespace {{name: linear_regression}}\n",
        "name: !!python/object/apply:pathlib.Path ['{pwned}']\n",
    ],
    ids=["top", "value", "name", "object", "pathlib"],
)
def test_python_yaml_tags_are_refused(text, tmp_path, monkeypatch, capsys):
    pwned = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(text.format(pwned=pwned))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["train", str(config), "--dry-run"]) == 2
    assert main(["train", str(LR), f"seed=!!python/object/apply:os.system ['touch {pwned}']"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error: ") == 2
    assert not pwned.exists() and list(work.iterdir()) == []


def test_checkpoint_not_matching_the_config_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(MULTI, "train.steps=3", "--out", out) == 0  # w has 3 features
    capsys.readouterr()
    config = out / "config.yaml"
    text = re.sub(r"(?m)^ *- income\n", "", config.read_text())
    assert text != config.read_text()
    config.write_text(text)  # now 2 features
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "does not match" in err and "float32[3]" in err and "float32[2]" in err
    # --resume with the edited config is refused by the config diff before any restore.
    assert _train(MULTI, "train.steps=3", "--out", out, "--resume") == 2
    assert "differs from the saved run" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# disk problems (an output path under a regular file: test_cli.py::
# test_output_path_under_a_regular_file_exits_2)


def test_checkpoint_write_failing_part_way_exits_1_and_resume_is_bit_identical(
    tmp_path, monkeypatch, capsys, reference
):
    import orbax.checkpoint as ocp

    original = ocp.StandardCheckpointHandler.async_save
    calls = []

    async def disk_full_on_the_fourth_save(self, directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) == 4:  # step 60: some files written, then the disk is full
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / "partial-array").write_bytes(b"\0" * 100)
            raise OSError(28, "No space left on device")
        return await original(self, directory, *args, **kwargs)

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(ocp.StandardCheckpointHandler, "async_save", disk_full_on_the_fourth_save)
        assert _train(*CRASH, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    assert "No space left on device" in err and "step 60" in err and "intact" in err
    assert all_steps(out / "checkpoints") == [0, 20, 40]
    assert int(_state(out).step) == 40  # the previous checkpoint is intact
    assert not (out / "summary.json").exists()
    assert _train(*CRASH, "--out", out, "--resume") == 0
    _assert_same_run(out, reference)


def test_metrics_write_failing_exits_1_and_resume_is_bit_identical(
    tmp_path, monkeypatch, capsys, reference
):
    original = rundir.append_durably
    calls = []

    def disk_full_when_metrics_reach_step_60(path, text):
        # The first metrics append that reaches step 60 (the forced flush just before the
        # checkpoint of step 60) fails half-way, whatever throttled flushes came before it.
        if path.name == "metrics.jsonl" and '"step": 60,' in text and not calls:
            calls.append(path)
            with open(path, "a") as f:
                f.write(text[: len(text) // 2])  # a torn line, as a full disk leaves
            raise OSError(28, "No space left on device", str(path))
        original(path, text)

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(rundir, "append_durably", disk_full_when_metrics_reach_step_60)
        assert _train(*CRASH, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    assert "No space left on device" in err and "metrics.jsonl" in err
    assert all_steps(out / "checkpoints") == [0, 20, 40]
    assert not list(out.glob(".*tmp*"))
    assert _train(*CRASH, "--out", out, "--resume") == 0
    _assert_same_run(out, reference)


@pytest.mark.slow  # a fresh interpreter (~3 s)
def test_ctrl_c_exits_130_with_a_hint_and_resume_is_bit_identical(tmp_path, reference):
    out = tmp_path / "run"
    proc = _spawn(out, None)
    metrics = out / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and '"step": 30,' in metrics.read_text()):
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (130, 0), err  # 0: it finished before the signal arrived
    assert "Traceback" not in err
    if proc.returncode == 130:
        assert "interrupted at step" in err and "continue with: mlgrad train" in err
        assert "--resume" in err
    assert _train(*CRASH, "--out", out, "--resume") == 0
    _assert_same_run(out, reference)
