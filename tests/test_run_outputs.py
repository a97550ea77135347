"""What a run leaves behind beyond its metrics: sharpness (G, item 5), report.html (H, item 2),
a diverged run's figures (H, item 7), and a sweep's report and provenance (H, items 2, 8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlgrad.data import load
from mlgrad.runs.metrics_log import MetricsLog


def test_sharpness_of_the_regression_is_its_constant_hessians(cli, cache_dir):
    """The ice-cream regression's loss is mean((Z w - y)^2) over the standardised design Z
    with its column of ones: its Hessian 2 Z^T Z / n at every step, whatever the weights."""
    res = cli("train", "linear_regression", "train.sharpness_every=40", "--out", "r", "-q")
    assert res.code == 0, res.err
    records = MetricsLog.read(Path("r/metrics.jsonl"))
    measured = [(r["step"], r["sharpness"]) for r in records if "sharpness" in r]
    assert [s for s, _ in measured] == [1, 41, 81, 121, 161]  # before steps 40 k + 1
    x = load(name="ice_cream").x_train[:, 0]
    z = np.stack([np.ones_like(x), (x - x.mean()) / x.std()], axis=1)
    exact = np.linalg.eigvalsh(2 * z.T @ z / len(x))[-1]
    np.testing.assert_allclose([v for _, v in measured], exact, rtol=1e-5)
    assert Path("r/sharpness.png").is_file() and Path("r/report.html").is_file()
    assert "sharpness.png" in Path("r/report.html").read_text()


def test_a_diverged_run_writes_its_loss_curve_and_report(cli, cache_dir):
    res = cli("train", "linear_regression", "optimizer.learning_rate=5", "--out", "d", "-q")
    assert res.code == 1 and "training diverged at step" in res.err
    step = int(res.err.split("training diverged at step ")[1].split(":")[0])
    assert Path("d/loss.png").is_file() and not Path("d/summary.json").exists()
    page = Path("d/report.html").read_text()
    assert f"<b>Diverged.</b> training diverged at step {step}:" in page
    assert "loss.png" in page


def test_a_diverged_run_without_plots_still_gets_its_report(cli, cache_dir):
    res = cli("train", "linear_regression", "optimizer.learning_rate=5", "--out", "d", "-q",
              "--no-plots")  # fmt: skip
    assert res.code == 1
    assert Path("d/report.html").is_file() and not Path("d/loss.png").exists()


def test_a_sweep_writes_its_report_and_provenance(cli, cache_dir):
    res = cli("sweep", "linear_regression", "optimizer.learning_rate=0.1,2.5", "--out", "s",
              "-q")  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(Path("s/sweep.json").read_text())
    assert summary["provenance"]["versions"]["jax"]
    page = Path("s/report.html").read_text()
    assert "mlgrad sweep: linear_regression" in page and "loss_curves.png" in page


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_sharpness_every_is_checked(cli, bad):
    res = cli("train", "linear_regression", f"train.sharpness_every={bad}", "--dry-run")
    assert res.code == 2 and "train.sharpness_every" in res.err


@pytest.mark.slow
def test_the_edge_of_stability_config_shows_sharpness_rising_to_two_over_eta(cli, cache_dir):
    """configs/edge_of_stability.yaml (gradient descent, eta = 2): the sharpness starts far
    below 2/eta = 1 and ends within 10% of it (Cohen et al. 2021's picture)."""
    res = cli("train", "edge_of_stability", "--out", "eos", "-q")
    assert res.code == 0, res.err
    values = [
        r["sharpness"] for r in MetricsLog.read(Path("eos/metrics.jsonl")) if "sharpness" in r
    ]
    assert len(values) == 30 and values[0] < 0.2
    assert all(abs(v - 1.0) < 0.1 for v in values[-10:])
    assert Path("eos/sharpness.png").is_file()
