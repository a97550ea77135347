"""The logistic unit: f(x) = sigmoid(w . z + b) with an L2 penalty on w.

The features are standardised with the training split's statistics, z = (x - m) / s (unless
``standardize=False``). The loss is the mean log-loss, computed stably from the logits
t = w . z + b, plus (l2 / 2) ||w||^2 (the intercept is not penalised):

    L(w, b) = (1/n) sum_i [ -y_i log sigmoid(t_i) - (1 - y_i) log sigmoid(-t_i) ] + (l2/2) ||w||^2
            = (1/n) sum_i [ softplus(t_i) - y_i t_i ] + (l2/2) ||w||^2

This is scikit-learn's ``LogisticRegression(C=1 / (n * l2))`` objective divided by C n. On
separable data (such as the standardised breast-cancer data) the unpenalised optimum does not
exist, so keep ``l2 > 0`` there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from mlgrad.models import _figures
from mlgrad.models._common import affine, eval_split

from mlgrad._figure_worker import render
from mlgrad.registry import Model, ModelConfigError

__all__ = ["Config", "build"]


@dataclasses.dataclass
class Config:
    """Logistic-unit settings.

    Attributes:
        l2: the penalty strength lambda in (lambda / 2) ||w||^2; must be >= 0.
        standardize: standardise the features with training-split statistics inside the model.
    """

    l2: float = 1e-2
    standardize: bool = True


def build(cfg: Config, data: Any) -> Model:
    """Builds the logistic unit for binary targets in {0, 1}.

    Args:
        cfg: the model's :class:`Config`.
        data: a :class:`mlgrad.data.Dataset` with a 1-D target of zeros and ones.

    Returns:
        A :class:`mlgrad.Model`: ``apply`` gives the probability of class 1; ``metrics`` adds
        ``accuracy`` (threshold 0.5); ``params = {"w": (features,), "b": ()}`` in standardised
        units; ``report`` gives the coefficients in both standardised and data units.

    Example:
        >>> from mlgrad.data import load
        >>> import mlgrad.models.logistic as logistic
        >>> model = logistic.build(logistic.Config(l2=0.01), load("breast_cancer"))
        >>> float(model.apply(model.init(None), load("breast_cancer").x_train[:1])[0])
        0.5
    """
    if not (isinstance(cfg.l2, int | float) and np.isfinite(cfg.l2) and cfg.l2 >= 0):
        raise ModelConfigError(
            f"logistic: l2 must be a finite number >= 0; got {cfg.l2!r}", "model.l2"
        )
    y = np.asarray(data.y_train)
    if y.ndim != 1:
        raise ModelConfigError(
            f"logistic: the target {data.target_name!r} must be one column of "
            f"0/1 labels; got shape {y.shape}",
            "data.target",
        )
    labels = np.unique(y)
    if not set(labels.tolist()) <= {0.0, 1.0}:
        raise ModelConfigError(
            f"logistic: the target {data.target_name!r} must hold only 0 and 1; "
            f"found {labels[:10].tolist()}",
            "data.target",
        )
    dtype = np.asarray(data.x_train).dtype
    names = tuple(data.feature_names)
    l2 = float(cfg.l2)
    init, logits, to_data_units = affine(data.x_train, cfg.standardize)  # w . std(x) + b

    def apply(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(logits(params, x))

    def loss(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        t = logits(params, x)
        # -y log sigma(t) - (1 - y) log(1 - sigma(t)) = softplus(t) - y t: one softplus per
        # example (half the work of optax.sigmoid_binary_cross_entropy's two log-sigmoids).
        log_loss = jax.nn.softplus(t) - y * t
        return jnp.mean(log_loss) + 0.5 * l2 * jnp.sum(params["w"] ** 2)

    def metrics(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> dict:
        x, y = batch
        correct = (logits(params, x) > 0) == (y > 0.5)
        return {"loss": loss(params, batch), "accuracy": jnp.mean(correct.astype(dtype))}

    def report(params: dict[str, jax.Array]) -> dict[str, Any]:
        w = np.asarray(params["w"], np.float64)
        b = float(params["b"])
        a, intercept = to_data_units(w, b)
        return {
            "coefficients": {n: float(v) for n, v in zip(names, a, strict=True)},
            "intercept": float(intercept),
            "standardized_coefficients": {n: float(v) for n, v in zip(names, w, strict=True)},
            "standardized_intercept": b,
        }

    def plots(params: dict[str, jax.Array], data: Any, fit_result: Any, out_dir: Path) -> list:
        del fit_result
        x, y, split = eval_split(data)
        p = np.asarray(apply(params, jnp.asarray(x)), np.float64)
        target = data.target_name
        names = {
            c: data.labels.get(f"{target}={c}", ("not " if c == 0 else "") + target) for c in (0, 1)
        }
        return [
            render(
                out_dir / "probabilities.png",
                _figures.probabilities,
                p,
                np.asarray(y),
                split,
                names,
                out_dir,
            )
        ]

    return Model(init=init, apply=apply, loss=loss, metrics=metrics, report=report, plots=plots)
