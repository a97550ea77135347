"""Reliability, round 2: run directories. One owner at a time (an OS lock), paths that are
data and never patterns, a strict resume, nothing of the user's deleted, names that fit.

Each class of the adversarial probe has its own cases here; the kill-point suite
(tests/test_reliability.py) covers crashes at exact moments.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mlgrad.runs import prepare, restore_latest, rundir
from mlgrad.training.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT / "configs" / "linear_regression.yaml"
SHORT = ["train.steps=40", "train.checkpoint_every=20", "--no-plots", "-q"]
LONGER = ["train.steps=60", "train.checkpoint_every=20", "--no-plots", "-q"]

pytestmark = pytest.mark.usefixtures("cache_dir")


def _params(run_dir: Path, step: int | None = None):
    setup = prepare(run_dir / "config.yaml")
    return restore_latest(setup, run_dir, step, warn=lambda _: None).params


# ---------------------------------------------------------------------------------------------
# paths are data, never patterns

# The characters of the adversarial probe: glob patterns, URL-like prefixes, quoting, spaces,
# non-ASCII; each as part of a run directory's name.
NAMES = ["lr[0.1]", "a*b", "what?", "{x,y}", "gs:bucket", "s3:x", "sp ace", "é ü", "#%&'\"", "a\\b"]


@pytest.mark.parametrize("name", NAMES)
def test_checkpoints_save_and_restore_under_any_directory_name(name, tmp_path):
    from mlgrad.training import TrainState

    state = TrainState({"w": np.arange(3.0, dtype=np.float32)}, (), np.int32(7), np.uint32([1, 2]))
    directory = tmp_path / name / "checkpoints"
    with Checkpointer(directory) as ckpt:
        ckpt.save(state)
    with Checkpointer(directory) as ckpt:
        assert ckpt.all_steps() == [7]
        np.testing.assert_array_equal(ckpt.restore(state).params["w"], [0.0, 1.0, 2.0])
    assert sorted(p.name for p in directory.iterdir()) == ["7"]


def test_a_run_under_a_bracketed_path_resumes_bit_identically(cli, tmp_path):
    res = cli("train", LR, "--out", "runs/lr[0.1]", *SHORT)
    assert res.code == 0 and "Skipping merge" not in res.err, res.err
    ref = cli("train", LR, "--out", "ref", *SHORT)
    assert ref.code == 0
    res = cli("train", LR, "--out", "runs/lr[0.1]", "--resume", *LONGER)
    assert res.code == 0, res.err
    assert cli("train", LR, "--out", "ref", "--resume", *LONGER).code == 0
    for a, b in zip(
        jax.tree.leaves(_params(Path("runs/lr[0.1]"))),
        jax.tree.leaves(_params(Path("ref"))),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert cli("eval", "runs/lr[0.1]").code == 0


# ---------------------------------------------------------------------------------------------
# one owner per run directory


def test_a_second_writer_is_refused_with_the_owners_pid(cli):
    with rundir.RunDirLock(Path("busy"), what="mlgrad train"):
        res = cli("train", LR, "--out", "busy", *SHORT)
        res.assert_user_error()
        assert f"PID {os.getpid()}, mlgrad train" in res.err
        assert sorted(p.name for p in Path("busy").iterdir()) == [rundir.LOCK]  # untouched
    res = cli("train", LR, "--out", "busy", *SHORT)
    assert res.code == 0, res.err
    assert not (Path("busy") / rundir.LOCK).exists()  # released and removed


def test_eval_shares_the_directory_with_readers_but_not_with_a_writer(cli):
    assert cli("train", LR, "--out", "r", *SHORT).code == 0
    with rundir.RunDirLock(Path("r"), what="mlgrad eval", shared=True):
        assert cli("eval", "r").code == 0  # two readers
        cli("train", LR, "--out", "r", "--resume", *SHORT).assert_user_error()
    with rundir.RunDirLock(Path("r"), what="mlgrad train"):
        res = cli("eval", "r")
        res.assert_user_error()
        assert "in use by another mlgrad process" in res.err
    assert cli("eval", "r").code == 0
    assert not (Path("r") / rundir.LOCK).exists()  # eval writes nothing


def test_a_lock_file_left_by_a_killed_process_is_no_claim(cli):
    """The kernel releases the lock with its process: the file alone claims nothing."""
    Path("left").mkdir()
    (Path("left") / rundir.LOCK).write_text("PID 999999, mlgrad train\n")
    res = cli("train", LR, "--out", "left", *SHORT)
    assert res.code == 0, res.err


def test_default_run_names_never_collide(cli, monkeypatch):
    monkeypatch.setattr(rundir, "utc_stamp", lambda: "20260101T000000Z")
    assert cli("train", LR, *SHORT).code == 0
    assert cli("train", LR, *SHORT).code == 0
    base = "linear_regression-20260101T000000Z"
    assert sorted(p.name for p in Path("runs").iterdir()) == [base, f"{base}-2"]
    # a default directory another process owns (it chose the same second): the next name
    with rundir.RunDirLock(Path("runs") / f"{base}-3", what="mlgrad train"):
        monkeypatch.setattr(rundir, "default_run_dir", _names([f"runs/{base}-3", "runs/x"]))
        res = cli("train", LR, *SHORT)
        assert res.code == 0, res.err
        assert "-> runs/x" in res.out


def _names(names):
    it = iter(names)
    return lambda name: Path(next(it))


# ---------------------------------------------------------------------------------------------
# resume is strict about what it continues


def test_resume_refuses_a_run_whose_checkpoints_are_gone(cli):
    assert cli("train", LR, "--out", "r", *SHORT).code == 0
    import shutil

    shutil.rmtree("r/checkpoints")
    res = cli("train", LR, "--out", "r", "--resume", *SHORT)
    res.assert_user_error()
    assert "metrics reach step 40" in res.err and "nothing to resume" in res.err
    Path("r/checkpoints").write_text("not a directory")
    res = cli("train", LR, "--out", "r", "--resume", *SHORT)
    res.assert_user_error()
    assert "not a directory" in res.err


def test_resume_refuses_a_sweep_directory(cli):
    assert (
        cli("sweep", LR, "seed=0,1", "train.steps=2", "--out", "sw", "-q", "--no-plots").code == 0
    )
    res = cli("train", Path("sw/config.yaml"), "--out", "sw", "--resume", *SHORT)
    res.assert_user_error()
    assert "directory of a sweep" in res.err


def test_resume_refuses_when_the_data_changed(cli):
    Path("d.csv").write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(20)))
    args = [LR, "data={path: d.csv, target: y, features: [x]}", "--out", "r", *SHORT]
    assert cli("train", *args).code == 0
    assert json.loads(Path("r/run.json").read_text())["data_fingerprint"]
    assert cli("train", *args, "--resume", "train.steps=60").code == 0  # same data: fine
    Path("d.csv").write_text(Path("d.csv").read_text().replace("3,7", "3,8"))
    res = cli("train", *args, "--resume", "train.steps=80")
    res.assert_user_error()
    assert "the data changed" in res.err


def test_optimizer_states_with_typed_keys_checkpoint_and_resume(cli):
    import warnings

    args = ["optimizer={name: noisy_sgd, learning_rate: 0.05}", "--out", "r", *SHORT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # optax: "Specifying a key will be ..."
        assert cli("train", LR, *args).code == 0
        assert cli("eval", "r").code == 0
        assert cli("train", LR, *args, "--resume", "train.steps=60").code == 0


def _damage(step_dir: Path) -> None:
    """Zeroes every data file of a checkpoint (its metadata and commit marker stay)."""
    for f in step_dir.rglob("*"):
        if f.is_file() and "METADATA" not in f.name and "commit" not in f.name:
            f.write_bytes(b"\0" * max(f.stat().st_size, 1))


def _mlgrad(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """The real command in a fresh process: orbax's failed reads of a damaged checkpoint
    finish on tensorstore's threads after the error, and must not reach this test process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mlgrad", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(cli):
    assert cli("train", LR, "--out", "r", "train.keep_checkpoints=3", *SHORT).code == 0
    _damage(Path("r/checkpoints/40"))
    res = _mlgrad("eval", "r", cwd=Path.cwd())
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if "damaged" in line]
    assert len(warning) == 1 and "step 40" in warning[0] and "step 20" in warning[0]
    assert re.search(r"checkpoints/40/\S+ cannot be read", warning[0]) and len(warning[0]) < 400
    assert "step 20 of 40" in res.stdout
    res = _mlgrad(
        "train", LR, "--out", "r", "--resume", "train.keep_checkpoints=3", *LONGER, cwd=Path.cwd()
    )
    assert res.returncode == 0, res.stderr
    assert "resuming from the newest intact checkpoint (step 20)" in res.stderr


# ---------------------------------------------------------------------------------------------
# nothing of the user's is deleted; names that fit; links


def test_a_users_file_that_looks_temporary_is_never_deleted(cli):
    Path("out").mkdir()
    mine = Path("out/.notes.txt.tmp-123")
    mine.write_text("mine")
    res = cli("train", LR, "--out", "out", *SHORT)
    res.assert_user_error()
    assert "not empty" in res.err and mine.read_text() == "mine"
    ours = rundir.temporary(Path("out2/config.yaml"))  # a killed write of ours
    Path("out2").mkdir()
    ours.write_text("half")
    assert cli("train", LR, "--out", "out2", *SHORT).code == 0
    assert not ours.exists()


@pytest.mark.parametrize("where", ["out", "name"])
def test_names_longer_than_the_file_system_allows_exit_2(cli, where):
    long = "x" * 300
    args = ["--out", long] if where == "out" else [f"name={long}"]
    res = cli("train", LR, *args, *SHORT)
    res.assert_user_error()
    assert "the file system allows" in res.err
    assert list(Path.cwd().iterdir()) == []


def test_a_dangling_symlink_as_out_exits_2(cli):
    Path("link").symlink_to("nowhere/run")
    res = cli("train", LR, "--out", "link", *SHORT)
    res.assert_user_error()
    assert "symbolic link" in res.err and "nowhere/run" in res.err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_model_too_large_for_memory_is_exit_1_saying_how_much(cli, command):
    """Found before the program runs (a sweep used to deadlock in XLA's CPU runtime), with
    nothing written."""
    args = ["autoencoder", "model.encoder_sizes=[1000000000]", "train.steps=2", "--out", "big"]
    args.append("optimizer.learning_rate.warmup_steps=1")  # the schedule follows train.steps
    res = cli(command, *args, *(["seed=0,1"] if command == "sweep" else []), "--no-plots")
    assert res.code == 1, res
    assert "out of memory" in res.err and "GB" in res.err and "likely a bug" not in res.err
    assert not Path("big").exists()
