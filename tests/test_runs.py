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
    assert sum(name.startswith("events.out.tfevents.") for name in files) == 1  # TensorBoard's
    files = [name for name in files if not name.startswith("events.out.tfevents.")]
    assert files == [
        "checkpoints",
        "config.yaml",
        "fit.png",
        "loss.png",
        "loss_surface.png",
        "metrics.jsonl",
        "report.html",
        "run.json",
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
    # a run written before a key joined the schema resumes while that key is at its default
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("  dtype: float32\n", ""))
    prepare_run(LR, run, overrides=["train.steps=40"], resume=True)
    with pytest.raises(UsageError, match="train.dtype"):
        prepare_run(LR, run, overrides=["train.steps=40", "train.dtype=float64"], resume=True)


def test_sweep_and_evaluate(tmp_path, cache_dir):
    plan = prepare_sweep(LR, ["seed=0,1", "train.steps=30"], tmp_path / "sw")
    assert [r.seed for r in plan.runs] == [0, 1] and len(plan.groups) == 1
    report = sweep_and_evaluate(
        LR, ["seed=0,1", "train.steps=30"], tmp_path / "sw", plots=False, console=QUIET
    )
    assert report.summary()["runs"][1]["seed"] == 1
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["best_run"] == report.best
    assert "done: 2 runs in 1 group" in report.text() and report.failure is None


def test_a_float64_run_of_the_logistic_config_matches_scikit_learn_to_1e_8(tmp_path, cache_dir):
    """``train.dtype: float64``: the data, the parameters and the arithmetic in double
    precision (L-BFGS to the optimum), equal to scikit-learn's solution of the same penalised
    problem, min_w mean log-loss + (l2 / 2) ||w||^2, i.e. ``C = 1 / (n l2)``."""
    from sklearn.linear_model import LogisticRegression

    from mlgrad.runs import prepare, restore_latest
    from mlgrad.runs.setup import precision

    overrides = ["train.dtype=float64", "optimizer={name: lbfgs}", "train.steps=150"]
    summary = train_and_evaluate(
        "logistic", tmp_path / "run", overrides=overrides, plots=False, console=QUIET
    )
    assert summary["dtype"] == "float64"
    setup = prepare(tmp_path / "run" / "config.yaml")
    with precision(setup.cfg):
        params = restore_latest(setup, tmp_path / "run").params
        assert params["w"].dtype == np.float64
    x, y = setup.data.x_train, setup.data.y_train
    assert x.dtype == np.float64
    z = (x - x.mean(axis=0)) / x.std(axis=0)  # the model's standardisation
    # newton-cg: scikit-learn's default lbfgs solver stops 3e-7 short of this optimum
    reference = LogisticRegression(
        C=1 / (len(x) * setup.cfg.model.l2), solver="newton-cg", tol=1e-14, max_iter=10**5
    )
    reference.fit(z, y)
    np.testing.assert_allclose(params["w"], reference.coef_[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(params["b"], reference.intercept_[0], rtol=0, atol=1e-8)
    # ... and the rest of the process is still in float32
    import jax.numpy as jnp

    assert jnp.zeros(1).dtype == jnp.float32


def test_a_sweep_over_a_chains_learning_rate_is_one_program_equal_to_single_runs(
    tmp_path, cache_dir
):
    chain = (
        "optimizer={chain: [{name: clip_by_global_norm, max_norm: 1.0}, "
        "{name: adamw, learning_rate: 0.05, weight_decay: 0.001}]}"
    )
    axes = [chain, "optimizer.chain.1.learning_rate=0.01,0.1", "train.steps=60"]
    plan = prepare_sweep(LR, axes, tmp_path / "sw")
    assert len(plan.groups) == 1 and [r.learning_rate for r in plan.runs] == [0.01, 0.1]
    report = sweep_and_evaluate(LR, axes, tmp_path / "sw", plots=False, console=QUIET)
    assert report.groups[0]["compiled_as"] == "one vmapped program"
    for run, outcome in zip(plan.runs, report.outcomes, strict=True):
        single = train_and_evaluate(
            LR, tmp_path / f"run{run.index}", overrides=run.overrides, plots=False, console=QUIET
        )
        assert outcome.metrics["train_loss"] == pytest.approx(
            single["metrics"]["train_loss"], rel=1e-5
        )


def test_metrics_are_appended_not_rewritten(tmp_path):
    """Each flush appends the new records (the file is the same file, its earlier bytes
    untouched), so logging costs the same per step however long a run is; a resumed log's
    first flush rewrites the file with the records it kept."""
    import json

    from mlgrad.runs.metrics_log import MetricsLog

    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(1, 4):
        log.record(step, train_loss=1.0 / step)
    log.flush(force=True)
    first = path.read_bytes()
    inode = path.stat().st_ino
    log.record(4, train_loss=0.25, val_loss=float("nan"))
    log.flush(force=True)
    assert path.stat().st_ino == inode and path.read_bytes().startswith(first)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4] and lines[3]["val_loss"] is None
    # A change to a record already on disk rewrites the file (atomically) instead.
    log.record(2, val_loss=0.5)
    log.flush(force=True)
    assert json.loads(path.read_text().splitlines()[1]) == {
        "step": 2,
        "train_loss": 0.5,
        "val_loss": 0.5,
    }
    # Resumed at step 2, with a torn line past it: the kept records, then appends.
    with open(path, "a") as f:
        f.write('{"step": 5, "train_lo')
    kept = [r for r in MetricsLog.read(path) if r["step"] <= 2]
    resumed = MetricsLog(path, kept)
    resumed.record(3, train_loss=1 / 3)
    resumed.flush(force=True)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]
