"""Generic training figures, written as PNG without pyplot (no global backend, thread-safe).

:func:`loss_curve` draws the training loss against the optimizer step, with the validation
loss where it was evaluated, on a logarithmic y axis when the loss spans more than a decade;
:func:`loss_curves` draws the curves of many runs (a sweep) on one axes.
Model-specific figures (fitted line, loss surface, reconstructions...) live with the models.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["loss_curve", "loss_curves", "use_log_scale"]

TITLE_SIZE = 13
LABEL_SIZE = 12
TICK_SIZE = 10
DPI = 150


def use_log_scale(*series: Sequence[float] | np.ndarray, decades: float = 1.0) -> bool:
    """Whether a log y axis shows these values better: all positive, spanning > ``decades``.

    Example:
        >>> use_log_scale([1.0, 0.5, 0.01]), use_log_scale([1.0, 0.5])
        (True, False)
    """
    values = np.concatenate([np.asarray(s, np.float64).ravel() for s in series] or [np.empty(0)])
    values = values[np.isfinite(values)]
    if values.size == 0 or np.any(values <= 0):
        return False
    return bool(np.log10(values.max() / values.min()) > decades)


#: Characters of a title line that fit the default figure's width at TITLE_SIZE.
TITLE_CHARS = 56


def fitted_title(title: str, chars: int = TITLE_CHARS) -> tuple[str, float]:
    """A title on one line where a font down to 3/4 of ``TITLE_SIZE`` lets it fit (a run's
    name and optimizer, for example), else wrapped at that size: ``(text, font size)``."""
    if len(title) <= chars:
        return title, TITLE_SIZE
    if len(title) <= chars / 0.75:  # one line in a smaller font
        return title, TITLE_SIZE * chars / len(title)
    return textwrap.fill(title, int(chars / 0.75)), 0.75 * TITLE_SIZE


def loss_curve(
    path: str | Path,
    steps: Sequence[int] | np.ndarray,
    train_loss: Sequence[float] | np.ndarray,
    val_steps: Sequence[int] | np.ndarray = (),
    val_loss: Sequence[float] | np.ndarray = (),
    *,
    title: str = "Loss curve",
    loss_label: str = "loss",
    minibatch: bool = False,
    diverged_at: int | None = None,
) -> Path:
    """Writes the loss curve (training and, if given, validation) as a PNG.

    Args:
        path: the PNG file to write.
        steps: the optimizer steps of the training losses (1-based).
        train_loss: the training loss at each of ``steps`` (the loss of that step's batch at
            the parameters before its update).
        val_steps: the steps at which the validation loss was evaluated.
        val_loss: the validation loss after each of ``val_steps`` steps.
        title: the figure's title.
        loss_label: what the loss is, e.g. ``"mean squared error"``; the y axis reads
            ``"<loss_label>"`` with ``"(log scale)"`` appended when the axis is logarithmic.
        minibatch: the training losses are of mini-batches (drawn thinner, labelled so).
        diverged_at: the step at which training diverged (a dashed red line there; the
            losses are the finite ones before it).

    Returns:
        ``path``.

    Example:
        >>> loss_curve("loss.png", [1, 2, 3], [1.0, 0.1, 0.01])  # doctest: +SKIP
        PosixPath('loss.png')
    """
    from matplotlib.figure import Figure

    path = Path(path)
    steps, train_loss = np.asarray(steps), np.asarray(train_loss, np.float64)
    val_steps, val_loss = np.asarray(val_steps), np.asarray(val_loss, np.float64)
    fig = Figure(figsize=(6.4, 4.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    label = "training loss" + (" (mini-batch)" if minibatch else "")
    marker = "o" if len(steps) <= 30 else None
    ax.plot(
        steps,
        train_loss,
        color="C0",
        lw=1.0 if minibatch else 1.8,
        marker=marker,
        ms=3,
        alpha=0.8 if minibatch else 1.0,
        label=label,
    )
    if len(val_steps):
        ax.plot(val_steps, val_loss, color="C1", lw=1.8, marker="o", ms=4, label="validation loss")
    if diverged_at is not None:
        ax.axvline(
            diverged_at, color="C3", ls="--", lw=1.5, label=f"diverged at step {diverged_at}"
        )
    log = use_log_scale(train_loss, val_loss)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both" if log else "major")
    ax.legend(fontsize=10)
    final = f"final training loss {train_loss[-1]:.4g}" if len(train_loss) else "no steps"
    if len(val_loss):
        final += f", validation {val_loss[-1]:.4g}"
    if diverged_at is not None:
        last = f"; last finite loss {train_loss[-1]:.4g}" if len(train_loss) else ""
        final = f"diverged at step {diverged_at}{last}"
    head, size = fitted_title(title)
    ax.set_title(f"{head}\n{final}", fontsize=size)
    ax.set_xlabel("optimizer step", fontsize=LABEL_SIZE)
    ax.set_ylabel(loss_label + (" (log scale)" if log else ""), fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    return _save(fig, path)


def sharpness_curve(
    path: str | Path,
    steps: Sequence[int] | np.ndarray,
    sharpness: Sequence[float] | np.ndarray,
    limit_steps: Sequence[int] | np.ndarray = (),
    limit: Sequence[float] | np.ndarray = (),
    *,
    limit_label: str = "stability limit 2/η",
    title: str = "Sharpness",
) -> Path:
    r"""Writes the sharpness :math:`\lambda_{\max}` of the training loss during training, beside
    the optimizer's stability limit (gradient descent: :math:`2/\eta`), as a PNG: the picture of
    the edge of stability (Cohen et al. 2021), where :math:`\lambda_{\max}` rises to the limit
    and stays there.

    Args:
        path: the PNG file to write.
        steps: the steps of the measurements (the loss of that step's batch, before its
            update, as the loss curve's).
        sharpness: the top Hessian eigenvalue at each of ``steps``.
        limit_steps, limit: the stability limit over the steps (a schedule moves it); empty
            when the optimizer has none to compare (Adam's applies to the preconditioned
            sharpness).
        limit_label: the limit's legend entry.
        title: the figure's title.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    steps, sharpness = np.asarray(steps), np.asarray(sharpness, np.float64)
    fig = Figure(figsize=(6.4, 4.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    marker = "o" if len(steps) <= 60 else None
    ax.plot(steps, sharpness, color="C0", lw=1.6, marker=marker, ms=3, label="sharpness λ_max")
    if len(limit_steps):
        ax.plot(limit_steps, limit, color="C3", ls="--", lw=1.5, label=limit_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10)
    last = f"last λ_max {sharpness[-1]:.4g}" if len(sharpness) else "no measurements"
    if len(limit):
        last += f", limit {np.asarray(limit)[-1]:.4g}"
    head, size = fitted_title(title)
    ax.set_title(f"{head}\n{last}", fontsize=size)
    ax.set_xlabel("optimizer step", fontsize=LABEL_SIZE)
    ax.set_ylabel("top Hessian eigenvalue", fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    return _save(fig, path)


#: A sweep's curves are drawn with at most this many points each (a stride beyond it).
MAX_POINTS = 2000
#: Up to this many distinct labels get a legend entry each.
MAX_LEGEND = 20
#: Colour families of the groups of a sweep (shaded by learning rate within each).
FAMILIES = ("Blues", "Oranges", "Greens", "Reds", "Purples", "Greys")


def loss_curves(
    path: str | Path,
    histories: Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    diverged: Sequence[bool] | None = None,
    color_values: Sequence[float] | None = None,
    color_groups: Sequence[int] | None = None,
    best: int | None = None,
    title: str = "Loss curves",
    subtitle: str = "",
    loss_label: str = "loss",
    minibatch: bool = False,
    smooth: int = 1,
) -> Path:
    """Writes the training loss curves of many runs on one axes as a PNG.

    Runs with the same label (e.g. the seeds of one learning rate) share a colour and one
    legend entry. The y range is that of the runs that did not diverge, so a blow-up does not
    flatten the others; a diverged run is drawn up to its last finite loss and marked there
    with an x (on the upper edge if it left the range). The y axis is logarithmic when the
    losses are positive and span more than a decade.

    Args:
        path: the PNG file to write.
        histories: one sequence of per-step training losses per run (step 1 first).
        labels: one legend label per run.
        diverged: per run, whether it diverged (default: a non-finite loss in its history).
        color_values: per run, a positive number (a learning rate) to colour by on a
            sequential, logarithmic colour scale; default: one qualitative colour per label.
        color_groups: with ``color_values``, per run a group (a configuration the values were
            swept within): each group gets its own colour family (blues, oranges, ...) shaded
            by the value; beyond six groups, one qualitative colour per label.
        best: the index of the run to emphasise (drawn on top, black dashed), or None.
        title: the figure's title; ``subtitle`` a second line under it.
        loss_label: what the loss is; the y axis reads ``"<loss_label>"`` (``"(log scale)"``
            appended when logarithmic).
        minibatch: the losses are of mini-batches (the y label says so).
        smooth: draw the trailing mean of this many steps (of fewer at the start), e.g. to
            see the trend of noisy mini-batch losses; 1 draws the losses themselves.

    Returns:
        ``path``.

    Example:
        >>> loss_curves("curves.png", [[1.0, 0.5], [1.0, 0.2]], ["lr 0.1", "lr 0.3"])
        ... # doctest: +SKIP
        PosixPath('curves.png')
    """
    from matplotlib import colormaps
    from matplotlib.colors import Colormap, ListedColormap, LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    path = Path(path)
    curves = [_trailing_mean(np.asarray(h, np.float64), smooth) for h in histories]
    if len(labels) != len(curves):
        raise ValueError(f"loss_curves: {len(curves)} histories but {len(labels)} labels")
    if diverged is None:
        diverged = [not np.all(np.isfinite(c)) for c in curves]
    diverged = [bool(d) for d in diverged]

    # The y range: the finite losses of the runs that did not diverge (else of all runs).
    kept = [c[np.isfinite(c)] for c, d in zip(curves, diverged, strict=True) if not d]
    if not any(k.size for k in kept):
        kept = [c[np.isfinite(c)] for c in curves]
    values = np.concatenate([*kept, np.empty(0)])
    log = use_log_scale(values)
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        if log:
            lo, hi = lo / 1.3, hi * 1.3
        else:
            pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 1.0
            lo, hi = lo - pad, hi + pad
    else:
        lo, hi = (0.0, 1.0)

    top = hi / 1.12 if log else hi - 0.03 * (hi - lo)  # an x off the range: just inside it
    distinct = list(dict.fromkeys(labels))
    families = None if color_groups is None else list(dict.fromkeys(color_groups))
    if color_values is not None:
        cvals = np.asarray(color_values, np.float64)
        vmin, vmax = float(cvals.min()), float(cvals.max())
        vmax = vmax if vmax > vmin else vmin * 1.0001 + 1e-12
        norm = (LogNorm if vmin > 0 else Normalize)(vmin, vmax)
        if families is not None and color_groups is not None and len(families) <= len(FAMILIES):
            # A colour family per group, darker for larger values.
            maps = {g: colormaps[FAMILIES[i]] for i, g in enumerate(families)}
            colors = [
                maps[g](0.4 + 0.55 * float(norm(v)))
                for g, v in zip(color_groups, cvals, strict=True)
            ]
        else:
            # viridis without its yellow end
            cmap: Colormap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))
            colors = [cmap(float(norm(v))) for v in cvals]
    if color_values is None or (families is not None and len(families) > len(FAMILIES)):
        cmap = colormaps["tab10" if len(distinct) <= 10 else "tab20"]
        palette = {
            label: cmap(i % cmap.N)
            if len(distinct) <= 20
            else colormaps["turbo"](i / max(len(distinct) - 1, 1))
            for i, label in enumerate(distinct)
        }
        colors = [palette[label] for label in labels]

    many = len(curves) > 12
    fig = Figure(figsize=(8.4, 5.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    legend_done: set[str] = set()
    marks = []
    for i, c in enumerate(curves):
        steps = np.arange(1, len(c) + 1)
        stride = max(1, -(-len(c) // MAX_POINTS))
        idx = np.unique(np.r_[np.arange(0, len(c), stride), len(c) - 1]) if len(c) else np.arange(0)
        label = labels[i] if labels[i] not in legend_done else None
        legend_done.add(labels[i])
        ax.plot(
            steps[idx],
            c[idx],
            color=colors[i],
            lw=0.9 if many else 1.4,
            alpha=0.75 if many else 0.95,
            label=label,
            ls="--" if diverged[i] else "-",
        )
        if diverged[i]:
            finite = np.flatnonzero(np.isfinite(c))
            k = int(finite[-1]) if finite.size else 0
            value = float(c[k]) if finite.size else hi
            marks.append((k + 1, min(max(value, lo), top), colors[i]))
    if best is not None and 0 <= best < len(curves):
        c = curves[best]
        ax.plot(np.arange(1, len(c) + 1), c, color="black", lw=1.6, ls=(0, (4, 2)), zorder=5)
    for step, value, color in marks:
        ax.plot([step], [value], marker="X", ms=8, color=color, mec="black", mew=0.8, zorder=6)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ax.set_xlim(1, max((len(c) for c in curves), default=1))
    ax.grid(alpha=0.3, which="both" if log else "major")

    extra = []
    if best is not None:
        extra.append(
            Line2D([], [], color="black", lw=1.6, ls=(0, (4, 2)), label=f"best (run {best})")
        )
    if any(diverged):
        extra.append(
            Line2D(
                [],
                [],
                color="grey",
                ls="--",
                marker="X",
                mec="black",
                ms=7,
                label=f"diverged ({sum(diverged)}; x: last finite loss)",
            )
        )
    handles, names = ax.get_legend_handles_labels()
    if color_values is not None and color_groups is not None and families is not None:
        # One colour family after the other, lighter (smaller values) first.
        first = {label: labels.index(label) for label in distinct}
        rank = {
            label: (families.index(color_groups[i]), float(color_values[i]))
            for label, i in first.items()
        }
        order = sorted(range(len(names)), key=lambda k: rank.get(names[k], (0, 0.0)))
        handles, names = [handles[k] for k in order], [names[k] for k in order]
    colorbar = color_values is not None and color_groups is None and len(distinct) > 10
    if colorbar:
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
        bar.set_label("learning rate", fontsize=LABEL_SIZE)
        handles, names = [], []
    elif len(distinct) > MAX_LEGEND:
        handles, names = [], []
        ax.text(
            0.99,
            0.99,
            f"{len(distinct)} configurations, too many to list (see the table)",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    handles += extra
    names += [h.get_label() for h in extra]
    if handles and colorbar:  # the colour bar is on the right: the few entries go inside
        ax.legend(handles, names, fontsize=8, loc="best", framealpha=0.9)
    elif handles:
        ax.legend(
            handles,
            names,
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            frameon=False,
            ncols=1 if len(handles) <= 16 else 2,
        )
    head = textwrap.fill(title, 70)
    ax.set_title(f"{head}\n{subtitle}" if subtitle else head, fontsize=TITLE_SIZE)
    ax.set_xlabel("optimizer step", fontsize=LABEL_SIZE)
    what = "mini-batch loss" if minibatch else "training loss"
    if smooth > 1:
        what += f", mean of {smooth} steps"
    if loss_label != "loss":
        what += f": {loss_label}"
    ax.set_ylabel(what + (" (log scale)" if log else ""), fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    return _save(fig, path)


def _trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last ``window`` values at each step (of all so far at the start);
    NaN from the first non-finite value on (a diverged run ends there)."""
    if window <= 1 or x.size == 0:
        return x
    bad = np.flatnonzero(~np.isfinite(x))
    end = int(bad[0]) if bad.size else x.size
    total = np.concatenate([[0.0], np.cumsum(x[:end])])
    k = np.arange(1, end + 1)
    lo = np.maximum(k - window, 0)
    out = np.full(x.shape, np.nan)
    out[:end] = (total[k] - total[lo]) / (k - lo)
    return out


def _save(fig: Any, path: Path) -> Path:
    """The PNG written atomically (:func:`mlgrad._atomic.save_figure`: a complete file or
    none); a path without the ``.png`` suffix is a caller's own temporary file, written as it
    is."""
    if path.suffix.lower() != ".png":
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        return path
    from mlgrad._atomic import save_figure

    return save_figure(fig, path, "png")
