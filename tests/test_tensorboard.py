"""TensorBoard event files: TensorBoard's own reader (``EventAccumulator``, and the
``EventMultiplexer`` that ``tensorboard --logdir`` uses) reads back every scalar of
``metrics.jsonl``, as float32, with the same keys as tags: for a finished run, a run killed
and resumed (no step twice) and a sweep (one TensorBoard run per run of the sweep)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from mlgrad._faults import KILL_ENV
from mlgrad.cli import main
from mlgrad.runs import rundir
from mlgrad.runs.event_log import EventLog, event_files, write_events
from mlgrad.runs.metrics_log import MetricsLog

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT / "configs" / "linear_regression.yaml"
LOGISTIC = ROOT / "configs" / "logistic.yaml"

pytestmark = pytest.mark.usefixtures("cache_dir")

#: No sampling: TensorBoard keeps every scalar event (its default keeps 10,000 per tag).
ALL = {"scalars": 0}


def _train(*argv: object) -> int:
    return main(["train", *map(str, argv), "--no-plots", "-q"])


def _from_tensorboard(accumulator: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def _read_events(run_dir: Path, *, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
    return _from_tensorboard(EventAccumulator(str(run_dir), ALL, purge_orphaned_data=purge))


def _from_jsonl(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every number of metrics.jsonl by key, rounded to float32 as TensorBoard keeps it."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key != "step" and value is not None:
                out.setdefault(key, []).append((record["step"], float(np.float32(value))))
    return out


def _assert_events_equal_jsonl(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events, jsonl = _read_events(run_dir), _from_jsonl(run_dir / "metrics.jsonl")
    assert events == jsonl
    return events


def test_a_finished_run_has_every_metric_as_events(tmp_path):
    out = tmp_path / "run"
    assert _train(LOGISTIC, "train.steps=60", "train.eval_every=20", "--out", out) == 0
    scalars = _assert_events_equal_jsonl(out)
    assert set(scalars) == {
        "train_loss",
        "lr",
        "grad_norm",
        "steps_per_s",
        "val_loss",
        "val_accuracy",
    }
    assert [s for s, _ in scalars["train_loss"]] == [1, 10, 20, 30, 40, 50, 60]
    assert [s for s, _ in scalars["val_loss"]] == [20, 40, 60]
    assert all(v > 0 for _, v in scalars["steps_per_s"])
    assert len(event_files(out)) == 1


AUX_MODEL = """
import dataclasses
import jax.numpy as jnp
from mlgrad.models import linear_regression


@dataclasses.dataclass
class Config:
    pass


def build(cfg, data):
    base = linear_regression.build(linear_regression.Config(standardize=True), data)

    def loss(params, batch):
        value = base.loss(params, batch)
        return value, {"mean_y": jnp.mean(batch[1]), "loss": 2 * value}

    return base._replace(loss=loss, has_aux=True)
"""

AUX_CONFIG = """
name: aux
seed: 0
model: {name: userpkg_tb.model}
data: {name: ice_cream, features: [temp], target: cons}
optimizer: {name: sgd, learning_rate: 0.1}
train: {steps: 12, batch_size: null, log_every: 3}
"""


def test_the_loss_aux_metrics_are_tagged_aux(tmp_path, monkeypatch):
    package = tmp_path / "userpkg_tb"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(AUX_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    Path("aux.yaml").write_text(AUX_CONFIG)
    assert _train("aux.yaml", "--out", "run") == 0
    scalars = _assert_events_equal_jsonl(Path("run"))
    # An aux named "loss" is its own tag, apart from the training loss.
    assert {"aux/mean_y", "aux/loss", "train_loss"} <= set(scalars)
    assert [s for s, _ in scalars["aux/mean_y"]] == [1, 3, 6, 9, 12]
    for (_, twice), (_, loss) in zip(scalars["aux/loss"], scalars["train_loss"], strict=True):
        assert twice == pytest.approx(2 * loss, rel=1e-6)


def test_resume_hides_the_events_logged_after_the_checkpoint(tmp_path):
    common = ["train.checkpoint_every=10", "train.keep_checkpoints=5", "train.log_every=1"]
    run = tmp_path / "run"
    assert _train(LR, "train.steps=20", *common, "--out", run) == 0
    first = _read_events(run)
    # As if killed after logging step 20 but before its checkpoint was complete.
    shutil.rmtree(run / "checkpoints" / "20")
    assert _train(LR, "train.steps=30", *common, "--resume", "--out", run) == 0
    scalars = _assert_events_equal_jsonl(run)
    assert [s for s, _ in scalars["train_loss"]] == list(range(1, 31))  # each step once
    assert scalars["train_loss"][:20] == first["train_loss"]  # full batch: the same losses
    assert len(event_files(run)) == 2
    # Without TensorBoard's purge the stopped run's steps 11-20 would show twice.
    raw = _read_events(run, purge=False)
    assert [s for s, _ in raw["train_loss"]] == [*range(1, 21), *range(11, 31)]


@pytest.mark.slow  # a fresh interpreter to kill (about 8 s)
def test_a_killed_and_resumed_run_logs_each_step_once(tmp_path):
    run = tmp_path / "run"
    argv = [str(LR), "train.steps=120", "train.checkpoint_every=20", "train.log_every=1"]
    argv += ["train.keep_checkpoints=2", "train.batch_size=8", "optimizer.momentum=0.9"]
    env = {**os.environ, KILL_ENV: "chunk:18", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-m", "mlgrad", "train", *argv, "--out", str(run), "--no-plots", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILLed at its 18th chunk
    assert not (run / "summary.json").exists()
    assert _train(*argv, "--resume", "--out", run) == 0
    reference = tmp_path / "reference"
    assert _train(*argv, "--out", reference) == 0
    scalars = _assert_events_equal_jsonl(run)
    assert [s for s, _ in scalars["train_loss"]] == list(range(1, 121))
    deterministic = ("train_loss", "lr", "grad_norm")
    want = _read_events(reference)
    assert {k: scalars[k] for k in deterministic} == {k: want[k] for k in deterministic}


def test_a_sweep_has_one_tensorboard_run_per_run(tmp_path):
    out = tmp_path / "sweep"
    argv = [LOGISTIC, "optimizer.learning_rate=0.1,0.3", "seed=0,1", "train.steps=40"]
    assert main(["sweep", *map(str, argv), "train.log_every=5", "--out", str(out), "-q"]) == 0
    multiplexer = EventMultiplexer(size_guidance=ALL).AddRunsFromDirectory(str(out))
    multiplexer.Reload()
    names = sorted(multiplexer.Runs())
    assert names == [
        "runs/run000-learning_rate=0.1-seed=0",
        "runs/run001-learning_rate=0.1-seed=1",
        "runs/run002-learning_rate=0.3-seed=0",
        "runs/run003-learning_rate=0.3-seed=1",
    ]
    rows = json.loads((out / "sweep.json").read_text())["runs"]
    for name, row in zip(names, rows, strict=True):
        scalars = _from_tensorboard(multiplexer.GetAccumulator(name))
        assert scalars == _from_jsonl(out / name / "metrics.jsonl")
        assert set(scalars) == {"train_loss", "lr", "val_loss", "val_accuracy"}
        assert [s for s, _ in scalars["train_loss"]] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
        assert {v for _, v in scalars["lr"]} == {float(np.float32(row["learning_rate"]))}
        final = row["metrics"]
        assert scalars["val_loss"] == [(40, float(np.float32(final["val_loss"])))]
        assert scalars["val_accuracy"] == [(40, float(np.float32(final["val_accuracy"])))]
    # The same run as `mlgrad train`: the same training losses, step by step.
    single = tmp_path / "single"
    assert _train(LOGISTIC, "optimizer.learning_rate=0.3", "seed=1", "train.steps=40",
                  "train.log_every=5", "--out", single) == 0  # fmt: skip
    alone = dict(_read_events(single)["train_loss"])
    swept = dict(_from_tensorboard(multiplexer.GetAccumulator(names[3]))["train_loss"])
    assert swept.keys() == alone.keys()
    for step, value in swept.items():
        assert value == pytest.approx(alone[step], rel=1e-5, abs=1e-7)


def test_events_are_durable_when_metrics_jsonl_is(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", events=EventLog(tmp_path))
    for step in (1, 2, 3):
        log.record(step, train_loss=1.0 / step, lr=0.1)
    log.flush(force=True)
    assert _read_events(tmp_path) == _from_jsonl(tmp_path / "metrics.jsonl")
    log.record(4, train_loss=0.25, grad_norm=float("nan"))  # NaN: null in both, no event
    log.flush()  # within FLUSH_S of the last: neither file is written
    assert [s for s, _ in _read_events(tmp_path)["train_loss"]] == [1, 2, 3]
    assert len(MetricsLog.read(tmp_path / "metrics.jsonl")) == 3
    log.flush(force=True)
    log.close()
    assert _read_events(tmp_path) == _from_jsonl(tmp_path / "metrics.jsonl")
    assert "grad_norm" not in _read_events(tmp_path)


def test_new_event_files_sort_after_the_old_ones_within_a_second(tmp_path):
    names = []
    for purge in (None, 5, 3):
        log = EventLog(tmp_path, purge_step=purge)
        log.write([{"step": 7, "x": 1.0}])
        log.flush()
        log.close()
        names.append(log.path)
    assert event_files(tmp_path) == names  # none overwritten, in the order written
    assert not [p for p in tmp_path.iterdir() if rundir.is_leftover(p)]


def test_a_sweep_run_rewritten_keeps_one_event_file(tmp_path):
    """A sweep killed while writing its results writes them again on --resume: the run's
    event file is replaced, never added to."""
    write_events(tmp_path, [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.0}])
    write_events(tmp_path, [{"step": 1, "train_loss": 3.0}])
    assert len(event_files(tmp_path)) == 1
    assert _read_events(tmp_path, purge=False) == {"train_loss": [(1, 3.0)]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in event_files(tmp_path)]


def test_the_command_line_does_not_import_tensorboardx():
    code = (
        "import sys, mlgrad.cli, mlgrad.runs\n"
        "print(sorted(m for m in sys.modules if m.startswith('tensorboard')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
