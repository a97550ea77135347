"""Linear regression: f(x) = a . x + b, fitted by minimising the mean squared error.

With ``standardize=True`` (the default) the features are standardised inside ``apply`` with the
training split's mean and standard deviation, z = (x - m) / s, and the parameters are the
weights and intercept of the standardised problem, f(x) = w . z + c. Gradient descent is then
well conditioned. ``report`` converts back to the data's own units:
a_j = w_j / s_j and b = c - sum_j w_j m_j / s_j.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from mlgrad.models import _figures
from mlgrad.models._common import affine

from mlgrad._figure_worker import render
from mlgrad.registry import Model, ModelConfigError

__all__ = ["Config", "build"]


@dataclasses.dataclass
class Config:
    """Linear regression settings.

    Attributes:
        standardize: standardise the features with training-split statistics inside the model.
    """

    standardize: bool = True


def build(cfg: Config, data: Any) -> Model:
    """Builds linear regression for ``data`` (a :class:`mlgrad.data.Dataset`).

    Loss: L(w, c) = (1/n) sum_i (f(x_i) - y_i)^2, the mean squared error of the batch.

    Args:
        cfg: the model's :class:`Config`.
        data: the data set; its training split fixes the number of features and the scaling.

    Returns:
        A :class:`mlgrad.Model`; ``params = {"w": (features,), "b": ()}`` in standardised units
        (identical to data units when ``standardize=False``).

    Example:
        >>> from mlgrad.data import load
        >>> import mlgrad.models.linear_regression as lr
        >>> model = lr.build(lr.Config(), load("ice_cream"))
        >>> sorted(model.report(model.init(None)))
        ['coefficients', 'intercept']
    """
    if np.ndim(data.y_train) != 1:
        raise ModelConfigError(
            f"linear_regression predicts one target per example; the target "
            f"{data.target_name!r} has shape {np.shape(data.y_train)}",
            "data.target",
        )
    names = tuple(data.feature_names)
    init, apply, to_data_units = affine(data.x_train, cfg.standardize)

    def loss(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        return jnp.mean((apply(params, x) - y) ** 2)

    def metrics(params: dict[str, jax.Array], batch: tuple[jax.Array, jax.Array]) -> dict:
        return {"loss": loss(params, batch)}

    def report(params: dict[str, jax.Array]) -> dict[str, Any]:
        a, b = to_data_units(params["w"], params["b"])
        return {
            "coefficients": {n: float(v) for n, v in zip(names, a, strict=True)},
            "intercept": float(b),
        }

    def plots(params: dict[str, jax.Array], data: Any, fit_result: Any, out_dir: Path) -> list:
        a, b = to_data_units(params["w"], params["b"])
        if data.n_features == 1:
            path = _trace_in_data_units(params, fit_result, init, to_data_units)
            slope, intercept = float(a[0]), float(b)
            return [
                render(out_dir / "fit.png", _figures.fitted_line, data, slope, intercept, out_dir),
                render(
                    out_dir / "loss_surface.png",
                    _figures.loss_surface,
                    data,
                    slope,
                    intercept,
                    path,
                    out_dir,
                ),
            ]
        splits = [("training", data.x_train, data.y_train)]
        if data.x_val is not None:
            splits.append(("validation", data.x_val, data.y_val))
        predicted = [
            (name, np.asarray(y), np.asarray(apply(params, jnp.asarray(x))))
            for name, x, y in splits
        ]
        ylabel = data.label(data.target_name)
        return [
            render(
                out_dir / "predicted_vs_observed.png",
                _figures.predicted_vs_observed,
                ylabel,
                predicted,
                out_dir,
            )
        ]

    return Model(init=init, apply=apply, loss=loss, metrics=metrics, report=report, plots=plots)


def _trace_in_data_units(params, fit_result, init, to_data_units) -> np.ndarray | None:
    """The gradient-descent path as an array of (slope, intercept) rows in data units."""
    trace = getattr(fit_result, "param_trace", None)
    if trace is None:
        return None
    a, b = to_data_units(np.asarray(trace["w"]), np.asarray(trace["b"]))  # a: (steps, 1)
    path = np.stack([a[:, 0], b], axis=1)
    state = getattr(fit_result, "state", None)
    if state is not None and int(np.asarray(state.step)) == len(path):
        # The trace covers every step from 0, so the run started at init (which is zeros).
        w0 = init(None)
        a0, b0 = to_data_units(w0["w"], w0["b"])
        path = np.concatenate([[[a0[0], b0]], path])
    return path
