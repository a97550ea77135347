"""The run layer from Python, as the Flax examples test ``train_and_evaluate``: a shrunk
config trains into a run directory, and its numbers match an independent reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlgrad.config import load_config
from mlgrad.data import load
from mlgrad.runs import (
    Console,
    UsageError,
    evaluate,
    prepare_run,
    prepare_sweep,
    sweep_and_evaluate,
    train_and_evaluate,
)

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT / "configs" / "linear_regression.yaml"
QUIET = Console(quiet=True)


def _lstsq() -> tuple[float, float]:
    data = load("ice_cream")
    x, y = data.x_train[:, 0].astype(np.float64), data.y_train.astype(np.float64)
    (slope, intercept), *_ = np.linalg.lstsq(np.c_[x, np.ones_like(x)], y, rcond=None)
    return float(slope), float(intercept)


def test_train_and_evaluate_a_shrunk_config(tmp_path, cache_dir):
    cfg, _ = load_config(LR, ["train.steps=150", "train.checkpoint_every=50"])
    summary = train_and_evaluate(cfg, tmp_path / "run", console=QUIET)
    run = tmp_path / "run"
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 150 and summary["config"] is None
    files = sorted(p.name for p in run.iterdir())
    assert files == [
        "checkpoints",
        "config.yaml",
        "fit.png",
        "loss.png",
        "loss_surface.png",
        "metrics.jsonl",
        "summary.json",
    ]
    slope, intercept = _lstsq()  # gradient descent on standardised data converges to it
    assert summary["coefficients"]["temp"] == pytest.approx(slope, rel=1e-3)
    assert summary["intercept"] == pytest.approx(intercept, rel=1e-3)
    # the final loss is the mean squared error of that line, computed here in NumPy
    data = load("ice_cream")
    pred = summary["coefficients"]["temp"] * data.x_train[:, 0] + summary["intercept"]
    mse = float(np.mean((pred - data.y_train) ** 2))
    assert summary["metrics"]["train_loss"] == pytest.approx(mse, rel=1e-4)
    again = evaluate(run)
    assert again["step"] == 150 and again["metrics"] == summary["metrics"]


def test_resume_continues_and_a_second_run_is_refused(tmp_path, cache_dir):
    run = tmp_path / "run"
    train_and_evaluate(LR, run, overrides=["train.steps=20"], plots=False, console=QUIET)
    with pytest.raises(UsageError, match="not empty"):
        prepare_run(LR, run)
    summary = train_and_evaluate(
        LR, run, overrides=["train.steps=40"], resume=True, plots=False, console=QUIET
    )
    assert summary["steps"] == 40 and summary["resumed_from_step"] == 20
    with pytest.raises(UsageError, match="differs from the saved run"):
        prepare_run(LR, run, overrides=["seed=3"], resume=True)


def test_sweep_and_evaluate(tmp_path, cache_dir):
    plan = prepare_sweep(LR, ["seed=0,1", "train.steps=30"], tmp_path / "sw")
    assert [r.seed for r in plan.runs] == [0, 1] and len(plan.groups) == 1
    report = sweep_and_evaluate(
        LR, ["seed=0,1", "train.steps=30"], tmp_path / "sw", plots=False, console=QUIET
    )
    assert report.summary()["runs"][1]["seed"] == 1
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["best_run"] == report.best
    assert "done: 2 runs in 1 group" in report.text() and report.failure is None
