"""One command for preemptible machines (H, item 5): ``--auto-resume`` starts a run or
continues it, bit-identically to an uninterrupted run; the resume hint is the exact command;
a schedule that follows train.steps cannot be stretched by a resume (H, item 6)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_reliability import CRASH, _assert_same_run, reference  # noqa: F401 (a fixture)

from mlgrad.runs import rundir
from mlgrad.runs.setup import prepare
from mlgrad.runs.train import RunPlan, resume_command

pytestmark = pytest.mark.usefixtures("cache_dir")


def _spawn(out: Path, *extra: str, kill_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(rundir.__file__).resolve().parents[2])}
    env.pop("MLGRAD_TEST_KILL_AT", None)
    if kill_at:
        env["MLGRAD_TEST_KILL_AT"] = kill_at
    argv = [sys.executable, "-m", "mlgrad", "train", *CRASH, "--out", str(out), *extra, "-q"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _auto(out: Path, kill_at: str | None = None) -> tuple[int, str]:
    proc = _spawn(out, "--auto-resume", "--no-plots", kill_at=kill_at)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def test_auto_resume_starts_a_run_then_leaves_it_finished(cli):
    args = ["train", "linear_regression", "train.steps=30", "--out", "r", "--auto-resume", "-q"]
    assert cli(*args).code == 0
    first = Path("r/metrics.jsonl").read_text()
    res = cli(*args)
    assert res.code == 0 and "done: 30 steps" in res.out
    assert Path("r/metrics.jsonl").read_text() == first


@pytest.mark.slow
def test_auto_resume_starts_continues_and_finishes_with_one_command(tmp_path, reference):  # noqa: F811
    out = tmp_path / "run"
    code, err = _auto(out, kill_at="chunk:23")  # a fresh start, killed mid-run
    assert code == -signal.SIGKILL, err
    code, err = _auto(out)  # the same command continues it
    assert code == 0, err
    _assert_same_run(out, reference)
    code, err = _auto(out)  # and, run again on the finished run, changes nothing
    assert code == 0, err
    _assert_same_run(out, reference)


@pytest.mark.slow
def test_a_preemption_loop_is_bit_identical(tmp_path, reference):  # noqa: F811
    """The acceptance: the same command killed 3 times at random moments, then run to the
    end (a kill may land before anything was written, or after the run finished)."""
    out, rng = tmp_path / "run", random.Random(11)
    for _ in range(3):
        proc = _spawn(out, "--auto-resume", "--no-plots")
        try:
            proc.wait(rng.uniform(1.5, 3.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
        assert "Traceback" not in err
    code, err = _auto(out)
    assert code == 0, err
    _assert_same_run(out, reference)


def test_the_resume_hint_is_the_command_given():
    setup = prepare(CRASH[0], CRASH[1:])
    plan = RunPlan(setup, Path("my runs/a"), command=tuple(CRASH))
    hint = resume_command(plan)
    assert hint == f"mlgrad train {' '.join(CRASH)} --out 'my runs/a' --resume"
    auto = RunPlan(setup, Path("r"), command=("autoencoder", "train.steps=3000"), auto=True)
    assert resume_command(auto) == "mlgrad train autoencoder train.steps=3000 --out r --auto-resume"


def test_a_sigterm_prints_the_exact_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(rundir.__file__).resolve().parents[2])}
    env.pop("MLGRAD_TEST_KILL_AT", None)
    args = [*CRASH, "train.steps=1000000", "--out", str(tmp_path / "run"), "--no-plots"]
    proc = subprocess.Popen([sys.executable, "-m", "mlgrad", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # training has started once the first chunk compiled
        if line.startswith("compiled in"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    expected = f"mlgrad train {' '.join(CRASH)} train.steps=1000000 --out {tmp_path / 'run'}"
    assert f"{expected} --resume" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--resume", "--auto-resume", "--out", "r"], "give --resume or --auto-resume, not both"),
        (["--auto-resume"], "--auto-resume needs --out DIR"),
    ],
)
def test_auto_resume_usage_errors(cli, args, says):
    res = cli("train", "linear_regression", *args)
    assert res.code == 2 and says in res.err


FOLLOWING = """\
model: {name: linear_regression}
data: {name: ice_cream}
optimizer:
  name: sgd
  learning_rate:
    name: cosine_decay_schedule
    init_value: 0.1
    decay_steps: ${train.steps}
train: {steps: 6, checkpoint_every: 6}
"""


def test_a_schedule_that_follows_train_steps_is_not_stretched(cli):
    Path("following.yaml").write_text(FOLLOWING)
    base = ["train", "following.yaml", "--out", "r", "-q", "--no-plots"]
    assert cli(*base).code == 0
    res = cli(*base, "train.steps=12", "--resume")
    assert res.code == 2
    assert "`optimizer.learning_rate.decay_steps` follows train.steps" in res.err
    assert "add optimizer.learning_rate.decay_steps=6 to the command" in res.err
    pinned = cli(*base, "train.steps=12", "optimizer.learning_rate.decay_steps=6", "--resume")
    assert pinned.code == 0, pinned.err


def test_a_schedule_of_another_length_is_warned_about(cli):
    res = cli("train", "autoencoder", "optimizer.learning_rate.decay_steps=500", "--dry-run")
    assert res.code == 0
    assert (
        "warning: `optimizer.learning_rate` (warmup_cosine_decay_schedule) ends at step 500"
        in res.err
    )
