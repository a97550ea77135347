"""Helpers shared by the example models: scaling statistics and figure conventions."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
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


class Affine(NamedTuple):
    """The affine map ``a . standardise(x) + b`` shared by the linear models.

    Its parameters ``{"w", "b"}`` live in standardised units (training-split statistics, closed
    over here, never in the parameters); ``to_data_units`` converts them back.
    """

    init: Callable[[Any], dict[str, jax.Array]]
    apply: Callable[[dict[str, jax.Array], jax.Array], jax.Array]
    to_data_units: Callable[[Any, Any], tuple[np.ndarray, np.ndarray]]


def affine(x_train: np.ndarray, standardize: bool) -> Affine:
    """w . (x - mean) / scale + b, started at zero, for features like ``x_train``'s."""
    dtype = np.asarray(x_train).dtype
    mean64, scale64 = scaling(x_train, standardize)
    mean, scale = mean64.astype(dtype), scale64.astype(dtype)
    d = np.shape(x_train)[1]

    def init(key: Any) -> dict[str, jax.Array]:
        del key  # a convex problem: start at zero, deterministically
        return {"w": jnp.zeros(d, dtype), "b": jnp.zeros((), dtype)}

    def apply(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return ((x - mean) / scale) @ params["w"] + params["b"]

    def to_data_units(w: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and intercept in data units; works on stacked (steps, ...) arrays."""
        w = np.asarray(w, np.float64)
        return w / scale64, np.asarray(b, np.float64) - (w * (mean64 / scale64)).sum(-1)

    return Affine(init, apply, to_data_units)


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
    """Writes ``fig`` as ``out_dir/name`` (PNG, atomically: :func:`mlgrad.draw.save`) and
    returns the path."""
    from mlgrad.draw import save as save_atomically

    return save_atomically(fig, Path(out_dir) / name)


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
