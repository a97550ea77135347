"""Figures of a trained model's curvature (:mod:`mlgrad.curvature_report`), as PNG bytes.

* :func:`spectrum_figure`   the Hessian's eigenvalue density, the eigenvalues found (with the
                            flat band and the verdict), and where the run stands against its
                            optimizer's stability limit;
* :func:`landscape_figure`  the loss along lines through the trained parameters (each beside
                            its quadratic Taylor model) and over the plane of two of them: the
                            top eigenvectors', and filter-normalised random directions' (Li et
                            al. 2018);
* :func:`png`               a figure as PNG bytes, for an atomic write.

Figures are matplotlib ``Figure`` objects built without pyplot (no global state).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

from mlgrad.curvature_report import Density, StabilityLimit, Standing
from mlgrad.plots import DPI, LABEL_SIZE, TICK_SIZE, TITLE_SIZE

__all__ = ["Slice", "View", "landscape_figure", "png", "spectrum_figure"]

_KIND_COLOR = {"positive": "C0", "flat": "0.45", "negative": "C3"}


def png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes (write them with ``mlgrad.runs.rundir.write_atomic``).

    Example:
        >>> png(Figure())[:4]
        b'\\x89PNG'
    """
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _title(ax: Any, text: str, width: int = 52) -> None:
    ax.set_title(textwrap.fill(text, width), fontsize=TITLE_SIZE - 1)


def _labels(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)


# --------------------------------------------------------------------------------------------
# The spectrum
# --------------------------------------------------------------------------------------------


def spectrum_figure(
    values: np.ndarray,
    residuals: np.ndarray,
    *,
    complete: bool,
    tolerance: float,
    density: Density,
    verdict: str,
    limit: StabilityLimit | None,
    stand: Standing | None,
    no_limit: str = "",
    title: str = "",
    smallest_found: int | None = None,
) -> Figure:
    """The Hessian's eigenvalues in three panels: their density, the eigenvalues found, and
    the run's sharpness against its optimizer's stability limit.

    Args:
        values: the eigenvalues found, ascending (all, or the extremes).
        residuals: their error bars.
        complete: ``values`` is the whole spectrum.
        tolerance: the flat band's half-width (:attr:`Verdict.tolerance`).
        density: the eigenvalue :class:`Density`.
        verdict: the verdict's sentence.
        limit: the optimizer's :class:`StabilityLimit` (None: none known).
        stand: the sharpness's :class:`Standing` against it.
        no_limit: why there is no limit, shown instead of the gauge.
        title: the figure's title.
        smallest_found: how many of ``values`` are the bottom end's (default: all when
            ``complete``, else half).

    Returns:
        A matplotlib ``Figure``.

    Example:
        >>> from mlgrad.curvature_report import eigenvalue_density, stability_limit, standing
        >>> v = np.array([1.0, 2.0])
        >>> lim = stability_limit("sgd", 0.1)
        >>> fig = spectrum_figure(v, 0 * v, complete=True, tolerance=2e-5,
        ...                       density=eigenvalue_density(v), verdict="cup", limit=lim,
        ...                       stand=standing(lim, 2.0))
        >>> len(fig.axes)
        3
    """
    if smallest_found is None:
        smallest_found = len(values) if complete else len(values) // 2
    fig = Figure(figsize=(16.5, 5.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1.15, 1.15, 1.0])
    _density_panel(axes[0], values, complete, tolerance, density)
    _values_panel(axes[1], values, residuals, complete, tolerance, verdict, smallest_found)
    _gauge_panel(axes[2], limit, stand, no_limit)
    if title:
        fig.suptitle(title, fontsize=TITLE_SIZE + 1)
    return fig


def _density_panel(
    ax: Any, values: np.ndarray, complete: bool, tolerance: float, density: Density
) -> None:
    floor = max(float(density.density.max()) * 1e-7, 1e-300)
    ax.fill_between(density.grid, np.maximum(density.density, floor), floor, color="C0", alpha=0.3)
    ax.plot(density.grid, np.maximum(density.density, floor), color="C0", lw=1.6)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    lo, hi = ax.get_ylim()
    rug = "each eigenvalue" if complete else "the extremes found"
    ax.vlines(values, lo, lo * (hi / lo) ** 0.06, color="k", lw=0.8, label=rug)
    ax.axvspan(
        -tolerance, tolerance, color="0.5", alpha=0.25, label=f"flat band |λ| ≤ {tolerance:.2g}"
    )
    ax.axvline(0.0, color="0.3", lw=0.7, ls=":")
    how = (
        "exact eigenvalues, Gaussian-smoothed"
        if density.method == "exact"
        else "stochastic Lanczos quadrature"
    )
    _title(ax, f"Spectral density of the Hessian ({how}, σ = {density.sigma:.2g})")
    _labels(ax, "eigenvalue λ", "density (log scale)")
    ax.legend(fontsize=9, loc="upper right")
    ax.grid(alpha=0.3)


def _values_panel(
    ax: Any,
    values: np.ndarray,
    residuals: np.ndarray,
    complete: bool,
    tolerance: float,
    verdict: str,
    smallest_found: int,
) -> None:
    values = np.asarray(values, np.float64)
    kinds = np.where(
        values - residuals > tolerance,
        "positive",
        np.where(values + residuals < -tolerance, "negative", "flat"),
    )
    if complete:
        x = np.arange(1, len(values) + 1)
        xlabel = "eigenvalue index (ascending)"
    else:
        low = smallest_found
        x = np.concatenate([np.arange(1, low + 1), np.arange(low + 2, len(values) + 2)])
        smallest = "the smallest" if low == 1 else f"the {low} smallest"
        xlabel = f"{smallest} found, then the {len(values) - low} largest"
    for kind, color in _KIND_COLOR.items():
        pick = kinds == kind
        if pick.any():
            ax.errorbar(
                x[pick],
                values[pick],
                yerr=residuals[pick] if not complete else None,
                fmt="o",
                ms=4 if len(values) > 60 else 6,
                color=color,
                label=f"{kind} ({int(pick.sum())})",
            )
    span = float(np.abs(values).max())
    linthresh = max(tolerance, span * 1e-12, 1e-300)
    ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    ax.axhspan(-tolerance, tolerance, color="0.5", alpha=0.25)
    ax.axhline(0.0, color="0.3", lw=0.7, ls=":")
    if not complete:
        ax.set_xticks([])
    _title(ax, verdict, width=60)
    _labels(ax, xlabel, f"eigenvalue λ (symlog, linear within ±{linthresh:.2g})")
    ax.legend(fontsize=9, loc="lower right")
    ax.grid(alpha=0.3)


def _gauge_panel(
    ax: Any, limit: StabilityLimit | None, stand: Standing | None, no_limit: str
) -> None:
    if limit is None or stand is None:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            textwrap.fill(no_limit or "no stability limit", 40),
            ha="center",
            va="center",
            fontsize=LABEL_SIZE,
            transform=ax.transAxes,
        )
        return
    right = max(1.25 * limit.limit, 1.1 * stand.sharpness)
    ax.barh(0, limit.limit, height=0.5, color="C2", alpha=0.35, label="stable")
    ax.barh(
        0,
        right - limit.limit,
        left=limit.limit,
        height=0.5,
        color="C3",
        alpha=0.3,
        label="unstable",
    )
    ax.axvline(limit.limit, color="C3", lw=2, label=f"limit {limit.formula} = {limit.limit:.4g}")
    ax.plot(
        [stand.sharpness],
        [0],
        marker="D",
        ms=13,
        color="k",
        ls="none",
        label=f"{limit.quantity} = {stand.sharpness:.4g}",
    )
    where = stand.sharpness / right
    ax.text(
        stand.sharpness,
        -0.45,
        f"{stand.ratio:.0%} of the limit",
        ha="left" if where < 0.2 else "right" if where > 0.8 else "center",
        va="top",
        fontsize=LABEL_SIZE,
    )
    ax.set_xlim(0, right)
    ax.set_ylim(-1, 1.2)
    ax.set_yticks([])
    _title(ax, f"{limit.rule}, η = {limit.learning_rate:.4g}: {stand.kind}", width=44)
    _labels(ax, f"sharpness {limit.quantity}", "")
    ax.legend(fontsize=9, loc="upper right", ncols=2)
    ax.grid(alpha=0.3, axis="x")


# --------------------------------------------------------------------------------------------
# The landscape
# --------------------------------------------------------------------------------------------


class Slice(NamedTuple):
    """The loss along one line through the trained parameters.

    Attributes:
        label: what the direction is (``"top eigenvector v1 (λ = 2.6)"``).
        losses: the loss at each step.
        model: the quadratic Taylor model at the same steps (None for none).
        style: a matplotlib line style.
    """

    label: str
    losses: np.ndarray
    model: np.ndarray | None = None
    style: str = "-"


class View(NamedTuple):
    """One row of :func:`landscape_figure`: lines through the trained parameters, and the
    plane of the first two directions.

    Attributes:
        lines: the :class:`Slice` s.
        steps: the steps along every line.
        xlabel: what a step is.
        plane: ``(a, a)`` losses over ``α d₁ + β d₂`` (rows along ``β``), or None.
        plane_steps: the ``(a,)`` steps on both of the plane's axes.
        plane_title: the plane's title, ending in its directions' names, ``"... (d₁, d₂)"``.
    """

    lines: Sequence[Slice]
    steps: np.ndarray
    xlabel: str
    plane: np.ndarray | None = None
    plane_steps: np.ndarray | None = None
    plane_title: str = ""


def landscape_figure(views: Sequence[View], *, loss0: float, title: str = "") -> Figure:
    """The loss landscape around trained parameters: one row per :class:`View`, its lines
    (each beside its quadratic Taylor model, dotted) and its plane.

    Args:
        views: the rows (e.g. the top eigenvectors', and filter-normalised random ones').
        loss0: the loss at the trained parameters.
        title: the figure's title.

    Returns:
        A matplotlib ``Figure``.

    Example:
        >>> a = np.linspace(-1, 1, 5)
        >>> bowl = 1 + a[None] ** 2 + a[:, None] ** 2
        >>> view = View([Slice("u", a**2 + 1, a**2 + 1)], a, "step", bowl, a, "plane (u, v)")
        >>> len(landscape_figure([view], loss0=1.0).axes)  # lines, plane, colour bar
        3
    """
    fig = Figure(figsize=(13.0, 5.0 * len(views)), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(views), 2, width_ratios=[1.1, 1.0]))
    for row, view in zip(axes, views, strict=True):
        _lines_panel(row[0], view, loss0)
        if view.plane is None or view.plane_steps is None:
            row[1].axis("off")
        else:
            _plane_panel(fig, row[1], view.plane_steps, view.plane, view.plane_title)
    if title:
        fig.suptitle(title, fontsize=TITLE_SIZE + 1)
    return fig


def _lines_panel(ax: Any, view: View, loss0: float) -> None:
    steps = np.asarray(view.steps)
    for i, s in enumerate(view.lines):
        color = f"C{i}"
        ax.plot(steps, s.losses, s.style, color=color, lw=1.8, label=s.label)
        if s.model is not None:
            ax.plot(steps, s.model, ":", color=color, lw=1.8)
    if any(s.model is not None for s in view.lines):
        ax.plot([], [], ":", color="0.3", label="quadratic model L₀ + t g·d + ½t² dᵀHd")
    ax.plot([0], [loss0], "*", color="k", ms=12, label=f"trained, L₀ = {loss0:.4g}", zorder=5)
    low = min(loss0, *(float(np.nanmin(s.losses)) for s in view.lines))
    top = max(float(np.nanmax(s.losses)) for s in view.lines)
    pad = top - low if top > low else max(abs(top), 1.0)
    ax.set_ylim(low - 0.03 * pad, top + 0.5 * pad)
    ax.ticklabel_format(axis="y", useOffset=False)
    _title(ax, "Loss along lines through the trained parameters")
    _labels(ax, view.xlabel, "training loss")
    ax.legend(fontsize=8.5, loc="upper center")
    ax.grid(alpha=0.3)


def _plane_panel(fig: Any, ax: Any, alphas: np.ndarray, grid: np.ndarray, name: str) -> None:
    from matplotlib.colors import LogNorm

    grid = np.asarray(grid, np.float64)
    finite = grid[np.isfinite(grid)]
    lo, hi = float(finite.min()), float(finite.max())
    log = lo > 0 and hi / lo > 10
    if log:
        levels = np.geomspace(lo, hi, 30)
        filled = ax.contourf(alphas, alphas, grid, levels=levels, norm=LogNorm(), cmap="viridis")
    else:
        levels = np.linspace(lo, hi if hi > lo else lo + 1.0, 30)
        filled = ax.contourf(alphas, alphas, grid, levels=levels, cmap="viridis")
    ax.contour(alphas, alphas, grid, levels=levels[::3], colors="white", linewidths=0.5, alpha=0.6)
    ax.plot([0], [0], "*", color="C1", mec="k", ms=14)
    bar = fig.colorbar(filled, ax=ax, format="%.3g")
    bar.set_label("training loss" + (" (log scale)" if log else ""), fontsize=LABEL_SIZE - 1)
    ax.set_aspect("equal")
    _title(ax, name, width=48)
    first, second = _axis_names(name)
    _labels(ax, f"α along {first}", f"β along {second}")


def _axis_names(name: str) -> tuple[str, str]:
    """The two directions of a plane's title ``"... (d₁, d₂)"``."""
    if name.endswith(")") and "(" in name:
        inner = name[name.rindex("(") + 1 : -1].split(",")
        if len(inner) == 2:
            return inner[0].strip(), inner[1].strip()
    return "d₁", "d₂"
