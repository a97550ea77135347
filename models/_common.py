"""Helpers shared by the example models: scaling statistics and figure conventions."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

TITLE_SIZE = 13
LABEL_SIZE = 12
TICK_SIZE = 10
DPI = 150

_UNIT = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")


def scaling(x_train: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of the training split (population, ddof=0).

    A constant feature gets scale 1 (it is only centred). Without ``standardize`` the
    statistics are the identity transform (mean 0, scale 1).
    """
    x = np.asarray(x_train, dtype=np.float64)
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


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
        # Wrapped, so that a long title never runs off a 6.4-inch figure.
        ax.set_title(textwrap.fill(title, width=56), fontsize=TITLE_SIZE)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)


def save(fig: Any, out_dir: Path | str, name: str) -> Path:
    """Writes ``fig`` as ``out_dir/name`` (PNG) and returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, format="png")
    return path


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
