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
from mlgrad.models._common import affine, figure, save, split_label, style, subsample

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
            return [
                _plot_fit(data, float(a[0]), float(b), out_dir),
                _plot_loss_surface(data, float(a[0]), float(b), path, out_dir),
            ]
        return [_plot_predicted(data, params, apply, out_dir)]

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


def _plot_fit(data: Any, a: float, b: float, out_dir: Path) -> Path:
    feature, target = data.feature_names[0], data.target_name
    xlabel, ylabel = data.label(feature), data.label(target)
    fig = figure()
    ax = fig.add_subplot()
    ax.scatter(data.x_train[:, 0], data.y_train, s=28, color="C0", label="training data", zorder=3)
    xs = [np.asarray(data.x_train[:, 0])]
    if data.x_val is not None:
        ax.scatter(
            data.x_val[:, 0],
            data.y_val,
            s=34,
            marker="^",
            color="C2",
            label="validation data",
            zorder=3,
        )
        xs.append(np.asarray(data.x_val[:, 0]))
    lo, hi = min(v.min() for v in xs), max(v.max() for v in xs)
    grid = np.linspace(lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo), 2)
    ax.plot(
        grid,
        a * grid + b,
        color="C3",
        lw=2,
        label=f"fit: {target} = {a:.4g} {feature} {'+' if b >= 0 else '-'} {abs(b):.4g}",
    )
    ax.legend(fontsize=10)
    ax.grid(alpha=0.3)
    title = f"{split_label(ylabel)[0]} against {split_label(xlabel)[0]}"
    style(ax, title[:1].upper() + title[1:] + ": fitted line", xlabel, ylabel)
    return save(fig, out_dir, "fit.png")


def _plot_loss_surface(
    data: Any, a: float, b: float, path: np.ndarray | None, out_dir: Path
) -> Path:
    from matplotlib.colors import LogNorm

    x = np.asarray(data.x_train[:, 0], np.float64)
    y = np.asarray(data.y_train, np.float64)
    # MSE(a, b) = a^2 <x^2> + 2ab <x> + b^2 - 2a <xy> - 2b <y> + <y^2>, exact on the grid.
    sxx, sx, sxy, sy, syy = (x * x).mean(), x.mean(), (x * y).mean(), y.mean(), (y * y).mean()
    design = np.stack([x, np.ones_like(x)], axis=1)
    a_ls, b_ls = np.linalg.lstsq(design, y, rcond=None)[0]
    pts = np.array([[a, b], [a_ls, b_ls], *([] if path is None else path)])
    # A box centred on the optimum that holds every point, so the whole valley is in view.
    centre = np.array([a_ls, b_ls])
    half = np.maximum(np.abs(pts - centre).max(axis=0), 0.5 * np.abs(centre) + 1e-12) * 1.12
    lo, hi = centre - half, centre + half
    aa, bb = np.meshgrid(np.linspace(lo[0], hi[0], 241), np.linspace(lo[1], hi[1], 241))
    mse = aa**2 * sxx + 2 * aa * bb * sx + bb**2 - 2 * aa * sxy - 2 * bb * sy + syy
    mse = np.maximum(mse, 1e-300)
    levels = np.geomspace(max(mse.min(), 1e-12 * mse.max()), mse.max(), 25)

    fig = figure(7.0, 5.2)
    ax = fig.add_subplot()
    filled = ax.contourf(aa, bb, mse, levels=levels, norm=LogNorm(), cmap="viridis")
    ax.contour(aa, bb, mse, levels=levels[::3], colors="white", linewidths=0.5, alpha=0.6)
    _, yunit = split_label(data.label(data.target_name))
    _, xunit = split_label(data.label(data.feature_names[0]))
    bar = fig.colorbar(filled, ax=ax, format="%.3g")
    bar.set_label("mean squared error" + (f" (({yunit})²)" if yunit else ""), fontsize=11)
    if path is not None and len(path):
        keep = subsample(len(path), 400)
        ax.plot(
            path[keep, 0],
            path[keep, 1],
            "-",
            color="C3",
            lw=1.5,
            marker="o",
            ms=2.5,
            label=f"gradient-descent path ({len(path) - 1} steps)",
        )
        ax.plot(*path[0], "s", color="white", mec="black", ms=8, label="start")
    ax.plot(a, b, "*", color="C1", mec="black", ms=15, label="fitted parameters")
    ax.plot(a_ls, b_ls, "+", color="red", ms=14, mew=2, label="least-squares optimum")
    ax.legend(fontsize=9, loc="best")
    slope_unit = f" ({yunit} per {xunit})" if yunit and xunit else ""
    style(
        ax,
        "Loss for different model parameters (training data)",
        f"slope a{slope_unit}",
        "intercept b" + (f" ({yunit})" if yunit else ""),
    )
    return save(fig, out_dir, "loss_surface.png")


def _plot_predicted(data: Any, params: Any, apply: Any, out_dir: Path) -> Path:
    ylabel = data.label(data.target_name)
    fig = figure()
    ax = fig.add_subplot()
    splits = [("training", data.x_train, data.y_train, "o", "C0")]
    if data.x_val is not None:
        splits.append(("validation", data.x_val, data.y_val, "^", "C2"))
    values = []
    for name, x, y, marker, color in splits:
        pred = np.asarray(apply(params, jnp.asarray(x)))
        ax.scatter(y, pred, s=28, marker=marker, color=color, label=f"{name} data", zorder=3)
        values += [np.asarray(y), pred]
    lo, hi = min(v.min() for v in values), max(v.max() for v in values)
    ax.plot([lo, hi], [lo, hi], "--", color="gray", label="perfect prediction")
    ax.legend(fontsize=10)
    ax.grid(alpha=0.3)
    name, unit = split_label(ylabel)
    u = f" ({unit})" if unit else ""
    style(
        ax,
        f"Predicted against observed {name}",
        f"observed {name}{u}",
        f"predicted {name}{u}",
    )
    return save(fig, out_dir, "predicted_vs_observed.png")
