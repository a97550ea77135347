"""Helpers shared by the example models: scaling statistics, and the figure conventions of
:mod:`mlgrad.models._figures` (re-exported here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from mlgrad.models._figures import DPI as DPI
from mlgrad.models._figures import LABEL_SIZE as LABEL_SIZE
from mlgrad.models._figures import TICK_SIZE as TICK_SIZE
from mlgrad.models._figures import TITLE_SIZE as TITLE_SIZE
from mlgrad.models._figures import eval_split as eval_split
from mlgrad.models._figures import figure as figure
from mlgrad.models._figures import save as save
from mlgrad.models._figures import split_label as split_label
from mlgrad.models._figures import style as style
from mlgrad.models._figures import subsample as subsample


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
