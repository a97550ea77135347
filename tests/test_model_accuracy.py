"""The example configs train to the optimum an independent solver finds on the same data.

References: numpy.linalg.lstsq (linear regression), scikit-learn's LogisticRegression
(the penalised logistic unit) and PCA (autoencoders), each fitted on the same training
split with the same scaling. The configs are the shipped ones in ``configs/``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from mlgrad import fit
from mlgrad.config import build_model, build_optimizer, load_config
from mlgrad.data import load

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def train(config: str, *overrides: str):
    """Trains a shipped config as the CLI does, without writing a run directory."""
    cfg, module = load_config(CONFIGS / config, list(overrides))
    d = cfg.data
    data = load(
        d.name,
        path=d.path,
        features=None if d.features is None else list(d.features),
        target=d.target,
        val_split=d.val_split,
        split_seed=d.split_seed,
    )
    model = build_model(cfg, module, data)
    optimizer = build_optimizer(cfg.optimizer, steps=cfg.train.steps)
    init_key, train_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
    result = fit(
        model.loss,
        model.init(init_key),
        (data.x_train, data.y_train),
        optimizer=optimizer,
        steps=cfg.train.steps,
        batch_size=cfg.train.batch_size,
        key=train_key,
    )
    return cfg, data, model, result


def test_linear_regression_reaches_least_squares_on_ice_cream():
    _, data, model, result = train("linear_regression.yaml")
    report = model.report(result.params)
    x = np.c_[np.asarray(data.x_train, np.float64), np.ones(len(data.x_train))]
    (slope, intercept), *_ = np.linalg.lstsq(x, np.asarray(data.y_train, np.float64), rcond=None)
    np.testing.assert_allclose(report["coefficients"]["temp"], slope, rtol=1e-4)
    np.testing.assert_allclose(report["intercept"], intercept, rtol=1e-4)
    # ... which are the published ordinary-least-squares figures for these data.
    np.testing.assert_allclose([slope, intercept], [0.0031074, 0.20686], rtol=5e-5)


def test_linear_regression_on_three_features_reaches_the_least_squares_error():
    _, data, model, result = train("linear_regression_multi.yaml")
    x = np.c_[np.asarray(data.x_train, np.float64), np.ones(len(data.x_train))]
    y = np.asarray(data.y_train, np.float64)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    best_mse = np.mean((x @ coef - y) ** 2)
    np.testing.assert_allclose(best_mse, 0.0011758, rtol=1e-4)  # the published figure
    mse = float(model.loss(result.params, (data.x_train, data.y_train)))
    assert best_mse <= mse * (1 + 1e-6) and mse <= best_mse * 1.005
    report = model.report(result.params)
    fitted = [report["coefficients"][n] for n in ("temp", "price", "income")]
    np.testing.assert_allclose([*fitted, report["intercept"]], coef, rtol=2e-2)


def test_logistic_unit_matches_scikit_learn_with_the_same_penalty():
    cfg, data, model, result = train("logistic.yaml")
    lam, n = cfg.model.l2, len(data.x_train)
    x = np.asarray(data.x_train, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)  # training-split statistics, as the model uses
    reference = LogisticRegression(C=1 / (n * lam), tol=1e-10, max_iter=100_000)
    reference.fit((x - mean) / std, np.asarray(data.y_train))
    np.testing.assert_allclose(result.params["w"], reference.coef_[0], atol=1e-3)
    np.testing.assert_allclose(result.params["b"], reference.intercept_[0], atol=1e-3)
    accuracy = float(model.metrics(result.params, (data.x_val, data.y_val))["accuracy"])
    assert accuracy >= 0.95


def _pca_error(x_fit: np.ndarray, x_eval: np.ndarray, k: int = 8) -> float:
    pca = PCA(n_components=k).fit(x_fit)
    return float(np.mean((pca.inverse_transform(pca.transform(x_eval)) - x_eval) ** 2))


def test_linear_autoencoder_reaches_the_pca_reconstruction_error():
    _, data, model, result = train("autoencoder_linear.yaml")
    x = np.asarray(data.x_train, np.float64)
    pca = _pca_error(x, x)
    error = float(model.loss(result.params, (data.x_train, data.x_train)))
    assert pca * (1 - 1e-4) <= error <= pca * 1.02  # PCA is the optimum of a linear autoencoder


@pytest.mark.slow  # long for CI; run with -m slow
def test_autoencoder_beats_pca_on_validation_digits():
    _, data, model, result = train("autoencoder.yaml")
    pca = _pca_error(np.asarray(data.x_train, np.float64), np.asarray(data.x_val, np.float64))
    error = float(model.loss(result.params, (data.x_val, data.x_val)))
    assert error <= 0.55 * pca
