"""Generic training figures, written as PNG without pyplot (no global backend, thread-safe).

:func:`loss_curve` draws the training loss against the optimizer step, with the validation
loss where it was evaluated, on a logarithmic y axis when the loss spans more than a decade.
Model-specific figures (fitted line, loss surface, reconstructions...) live with the models.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["loss_curve", "use_log_scale"]

TITLE_SIZE = 13
LABEL_SIZE = 12
TICK_SIZE = 10
DPI = 150


def use_log_scale(*series: Sequence[float], decades: float = 1.0) -> bool:
    """Whether a log y axis shows these values better: all positive, spanning > ``decades``.

    Example:
        >>> use_log_scale([1.0, 0.5, 0.01]), use_log_scale([1.0, 0.5])
        (True, False)
    """
    values = np.concatenate([np.asarray(s, np.float64).ravel() for s in series] or [[]])
    values = values[np.isfinite(values)]
    if values.size == 0 or np.any(values <= 0):
        return False
    return bool(np.log10(values.max() / values.min()) > decades)


def loss_curve(
    path: str | Path,
    steps: Sequence[int],
    train_loss: Sequence[float],
    val_steps: Sequence[int] = (),
    val_loss: Sequence[float] = (),
    *,
    title: str = "Loss curve",
    loss_label: str = "loss",
    minibatch: bool = False,
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
    log = use_log_scale(train_loss, val_loss)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both" if log else "major")
    ax.legend(fontsize=10)
    final = f"final training loss {train_loss[-1]:.4g}" if len(train_loss) else "no steps"
    if len(val_loss):
        final += f", validation {val_loss[-1]:.4g}"
    ax.set_title(f"{textwrap.fill(title, 56)}\n{final}", fontsize=TITLE_SIZE)
    ax.set_xlabel("optimizer step", fontsize=LABEL_SIZE)
    ax.set_ylabel(loss_label + (" (log scale)" if log else ""), fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
