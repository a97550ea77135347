"""NumPy twins of the common lax primitives, for the pattern detection.

Running a primitive eagerly in JAX compiles it first (tens of milliseconds each); the pattern
detection runs the structural primitives on arrays of entry numbers and folds small constants
(index arrays, masks), so these NumPy versions keep it fast. Each follows the primitive's
semantics in ``jax.lax`` (``dynamic_slice`` clamps its start, ``pad`` takes negative and
interior padding); a primitive missing here is run by JAX instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np


def _reshape(a: np.ndarray, *, new_sizes: Any, dimensions: Any = None, **_: Any) -> np.ndarray:
    if dimensions is not None:
        a = np.transpose(a, dimensions)
    return a.reshape(tuple(new_sizes))


def _broadcast_in_dim(
    a: np.ndarray, *, shape: Any, broadcast_dimensions: Any, **_: Any
) -> np.ndarray:
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = a.shape[i]
    return np.broadcast_to(a.reshape(expanded), tuple(shape))


def _slice(
    a: np.ndarray, *, start_indices: Any, limit_indices: Any, strides: Any = None, **_: Any
) -> np.ndarray:
    steps = strides or (1,) * a.ndim
    return a[
        tuple(
            slice(int(s), int(e), int(t))
            for s, e, t in zip(start_indices, limit_indices, steps, strict=True)
        )
    ]


def _pad(a: np.ndarray, value: np.ndarray, *, padding_config: Any, **_: Any) -> np.ndarray:
    fill = np.asarray(value).reshape(()).item()
    for axis, (lo, hi, interior) in enumerate(padding_config):
        lo, hi, interior = int(lo), int(hi), int(interior)
        if interior > 0 and a.shape[axis] > 1:
            length = a.shape[axis] + (a.shape[axis] - 1) * interior
            shape = list(a.shape)
            shape[axis] = length
            spread = np.full(shape, fill, dtype=a.dtype)
            index = [slice(None)] * a.ndim
            index[axis] = slice(None, None, interior + 1)
            spread[tuple(index)] = a
            a = spread
        index = [slice(None)] * a.ndim
        index[axis] = slice(max(-lo, 0), a.shape[axis] - max(-hi, 0))
        a = a[tuple(index)]
        widths = [(0, 0)] * a.ndim
        widths[axis] = (max(lo, 0), max(hi, 0))
        a = np.pad(a, widths, constant_values=fill)
    return a


def _split(a: np.ndarray, *, sizes: Any, axis: int, **_: Any) -> list[np.ndarray]:
    return np.split(a, list(itertools.accumulate(sizes))[:-1], axis=axis)


def _starts(a_shape: tuple, sizes: tuple, indices: tuple) -> list[int]:
    """lax's clamped start indices of a dynamic slice."""
    return [
        int(np.clip(int(np.asarray(i)), 0, dim - size))
        for i, dim, size in zip(indices, a_shape, sizes, strict=True)
    ]


def _dynamic_slice(a: np.ndarray, *indices: np.ndarray, slice_sizes: Any, **_: Any) -> np.ndarray:
    starts = _starts(a.shape, tuple(slice_sizes), indices)
    return a[tuple(slice(s, s + z) for s, z in zip(starts, slice_sizes, strict=True))]


def _dynamic_update_slice(
    a: np.ndarray, update: np.ndarray, *indices: np.ndarray, **_: Any
) -> np.ndarray:
    starts = _starts(a.shape, update.shape, indices)
    out = np.array(a, copy=True)
    out[tuple(slice(s, s + z) for s, z in zip(starts, update.shape, strict=True))] = update
    return out


def _select_n(which: np.ndarray, *cases: np.ndarray) -> np.ndarray:
    which = np.asarray(which).astype(np.int64)
    out = np.broadcast_to(cases[0], np.broadcast_shapes(which.shape, cases[0].shape)).copy()
    for k, case in enumerate(cases[1:], start=1):
        out = np.where(which == k, case, out)
    return out


def _iota(*, dtype: Any, shape: Any, dimension: int, **_: Any) -> np.ndarray:
    line = np.arange(shape[dimension])
    expanded = [1] * len(shape)
    expanded[dimension] = shape[dimension]
    return np.broadcast_to(line.reshape(expanded), tuple(shape)).astype(np.dtype(dtype))


def _convert(a: np.ndarray, *, new_dtype: Any, **_: Any) -> np.ndarray:
    return np.asarray(a).astype(np.dtype(new_dtype))


def _ufunc(fn: Callable[..., Any]) -> Callable[..., np.ndarray]:
    def apply(*args: np.ndarray, **_: Any) -> np.ndarray:
        return np.asarray(fn(*args))

    return apply


# The structural primitives: they only move entries, so they apply to arrays of entry numbers.
STRUCTURAL: dict[str, Callable[..., Any]] = {
    "reshape": _reshape,
    "squeeze": lambda a, *, dimensions, **_: np.squeeze(a, axis=tuple(dimensions)),
    "expand_dims": lambda a, *, dimensions, **_: np.expand_dims(a, tuple(dimensions)),
    "broadcast_in_dim": _broadcast_in_dim,
    "transpose": lambda a, *, permutation, **_: np.transpose(a, permutation),
    "rev": lambda a, *, dimensions, **_: np.flip(a, axis=tuple(dimensions)),
    "slice": _slice,
    "split": _split,
    "pad": _pad,
    "concatenate": lambda *a, dimension, **_: np.concatenate(a, axis=dimension),
    "dynamic_slice": _dynamic_slice,
    "dynamic_update_slice": _dynamic_update_slice,
    "select_n": _select_n,
    "copy": lambda a, **_: np.array(a, copy=True),
    "copy_p": lambda a, **_: np.array(a, copy=True),
}

# Also used to fold small constants (index arithmetic, masks).
FOLDING: dict[str, Callable[..., Any]] = {
    **STRUCTURAL,
    "iota": _iota,
    "convert_element_type": _convert,
    "add": _ufunc(np.add),
    "sub": _ufunc(np.subtract),
    "mul": _ufunc(np.multiply),
    "neg": _ufunc(np.negative),
    "max": _ufunc(np.maximum),
    "min": _ufunc(np.minimum),
    "abs": _ufunc(np.abs),
    "lt": _ufunc(np.less),
    "le": _ufunc(np.less_equal),
    "gt": _ufunc(np.greater),
    "ge": _ufunc(np.greater_equal),
    "eq": _ufunc(np.equal),
    "ne": _ufunc(np.not_equal),
    "and": _ufunc(np.bitwise_and),
    "or": _ufunc(np.bitwise_or),
    "not": _ufunc(np.invert),
}
