"""The example models' figures, drawn from NumPy arrays: no JAX here, so the figure worker
(:mod:`mlgrad._figure_worker`) renders them without importing it.

Each model's ``plots`` computes what its figures show (predictions, the parameters in data
units) and hands these functions to :func:`mlgrad._figure_worker.render`, which draws them in
the worker process while one runs (``mlgrad train``), else at once. Each writes one PNG
atomically and returns its path.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

TITLE_SIZE = 13
LABEL_SIZE = 12
TICK_SIZE = 10
DPI = 150

_UNIT = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")


def split_label(label: str) -> tuple[str, str | None]:
    """Splits "mean temperature (°F)" into ("mean temperature", "°F")."""
    m = _UNIT.match(label)
    return (m.group(1), m.group(2)) if m else (label, None)


def figure(width: float = 6.4, height: float = 4.8) -> Any:
    """A matplotlib Figure that needs no pyplot and no global backend."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def style(ax: Any, title: str | None, xlabel: str, ylabel: str) -> None:
    """Sets a title and axis labels in legible sizes."""
    if title:
        # One line in a font down to 3/4 size, else wrapped: never off a 6.4-inch figure.
        from mlgrad.plots import fitted_title

        text, size = fitted_title(title)
        ax.set_title(text, fontsize=size)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)


def save(fig: Any, out_dir: Path | str, name: str) -> Path:
    """Writes ``fig`` as ``out_dir/name`` (PNG, atomically: :func:`mlgrad._atomic.save_figure`)
    and returns the path."""
    from mlgrad._atomic import save_figure

    return save_figure(fig, Path(out_dir) / name, "png")


def eval_split(data: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """The validation split if there is one, else the training split, and its name."""
    if data.x_val is not None:
        return np.asarray(data.x_val), np.asarray(data.y_val), "validation"
    return np.asarray(data.x_train), np.asarray(data.y_train), "training"


def subsample(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices of ``range(n)``, spread evenly, always the first and last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.geomspace(1, n, max_points)).astype(int) - 1)


# -------------------------------------------------------------------------------------------
# The models' figures


def fitted_line(data: Any, a: float, b: float, out_dir: Path) -> Path:
    """fit.png: the data of the one feature and the fitted line a x + b."""
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


def loss_surface(data: Any, a: float, b: float, path: np.ndarray | None, out_dir: Path) -> Path:
    """loss_surface.png: the mean squared error over (slope, intercept) with the
    gradient-descent ``path`` (rows of slope, intercept), the fit and the least-squares optimum."""
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


def predicted_vs_observed(
    ylabel: str, splits: list[tuple[str, np.ndarray, np.ndarray]], out_dir: Path
) -> Path:
    """predicted_vs_observed.png: the predictions against the observed targets, one
    ``(name, observed, predicted)`` per split (training first, then validation); ``ylabel``
    is the target's axis label."""
    fig = figure()
    ax = fig.add_subplot()
    values = []
    styles = (("o", "C0"), ("^", "C2"))
    for (name, y, pred), (marker, color) in zip(splits, styles, strict=False):
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


def probabilities(
    p: np.ndarray, y: np.ndarray, split: str, names: dict[int, str], out_dir: Path
) -> Path:
    """probabilities.png: histograms of the predicted probabilities ``p`` by true class
    ``y`` (0/1); ``names`` are the classes' names."""
    fig = figure()
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 26)
    accuracy = float(np.mean((p > 0.5) == (y > 0.5)))
    for cls, color in ((0, "C0"), (1, "C1")):
        sel = p[y == cls]
        ax.hist(
            sel,
            bins=bins,
            color=color,
            alpha=0.6,
            edgecolor="black",
            linewidth=0.5,
            label=f"true class {cls} ({names[cls]}), {len(sel)} examples",
        )
    ax.axvline(
        0.5, color="black", ls="--", lw=1.5, label=f"threshold 0.5 (accuracy {accuracy:.3f})"
    )
    ax.legend(fontsize=10, loc="upper center")
    ax.grid(alpha=0.3)
    style(
        ax,
        f"Predicted probabilities by true class ({split} split)",
        f"predicted probability of class 1 ({names[1]})",
        "number of examples",
    )
    return save(fig, out_dir, "probabilities.png")


def reconstructions(
    x: np.ndarray, recon: np.ndarray, split: str, whole: float, out_dir: Path
) -> Path:
    """reconstructions.png: the images ``x`` above their reconstructions ``recon``."""
    n, p = x.shape
    side = math.isqrt(p)
    cols = 8
    pairs = -(-n // cols)
    fig = figure(1.3 * cols, 2.7 * pairs + 0.9)
    err = float(np.mean((recon - x) ** 2))
    fig.suptitle(
        f"Originals (upper) and reconstructions (lower) of {n} {split} images\n"
        f"mean squared error {err:.4f} (on the whole {split} split: {whole:.4f})",
        fontsize=13,
    )
    grid = fig.add_gridspec(2 * pairs, cols)
    vmin, vmax = min(float(x.min()), 0.0), max(float(x.max()), 1.0)
    for i in range(n):
        r, c = 2 * (i // cols), i % cols
        for row, img, name in ((r, x[i], "original"), (r + 1, recon[i], "reconstruction")):
            ax = fig.add_subplot(grid[row, c])
            if side * side == p:
                ax.imshow(
                    img.reshape(side, side),
                    cmap="gray_r",
                    vmin=vmin,
                    vmax=vmax,
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.plot(img, lw=1)
                ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    return save(fig, out_dir, "reconstructions.png")
