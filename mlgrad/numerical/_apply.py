"""Applying difference schemes to a function in JAX: steps, samples, the estimate and the choice.

A scheme (:mod:`mlgrad.numerical._schemes`) is a tableau of linear functionals of the samples
F_p = f(x + c_p h0). Here those functionals meet actual samples: one matrix product gives
every tableau entry T[k, j], another its rounding error, and each entry gets an error
estimate from the evidence around it in the tableau; the entry with the smallest estimate
is returned, chosen with ``jnp.argmin`` so that everything stays jit- and vmap-compatible.

The error estimate of T[k, j] is the largest of

* its correction |T[k, j] - T[k-1, j]| (the classic Richardson estimate),
* its change from the previous step at the same level, |T[k, j] - T[k, j-1]|,
* its disagreement with every entry at a smaller step and the same level, less that entry's
  rounding error: max over j' > j of |T[k, j] - T[k, j']| - rounding(T[k, j']),

plus its own rounding error (eps times the same functional applied to |F|). One difference
can be zero by accident (for an odd function at x = h0/2, D(h0) equals D(h0/2) exactly), so
no single one is trusted; and the smaller steps are the arbiter of the larger ones, since a
feature of f that a large step jumps over (a kink, a period) is resolved by every step
shorter than it: an entry that disagrees with them is charged with the disagreement.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlgrad.numerical._schemes import (
    Scheme,
    derivative_scheme,
    hessian_scheme,
    plain_scheme,
    stencil,
)

# (order, method, richardson, return_error, spacing): everything that picks a scheme
Key = tuple[int, str, bool, bool, str]


def eps_of(dtype: Any) -> float:
    return float(jnp.finfo(dtype).eps)


def real_dtype(dtype: Any) -> Any:
    """The real dtype of the same precision (float32 for complex64)."""
    return jnp.finfo(dtype).dtype


def spacing_of(dtype: Any, order: int) -> str:
    """The step sequence: "wide" for first derivatives in float64, else "fine" (ratio 2).

    The wide sequence spans eight decades below max(1, |x|), so some step matches the scale
    of f's own features wherever it lies; the fine one spans four at ratio 2, the spacing
    that higher-order stencils (whose rounding grows as h^-n) and lower precision (whose
    rounding makes steps below ~1e-4 |x| useless) need.
    """
    return "wide" if eps_of(dtype) <= 1e-15 and order == 1 else "fine"


def make_key(order: int, method: str, richardson: bool, return_error: bool, dtype: Any) -> Key:
    return (order, method, bool(richardson), bool(return_error), spacing_of(dtype, order))


def scheme_of(key: Key) -> Scheme:
    order, method, richardson, return_error, spacing = key
    if richardson:
        return derivative_scheme(order, method, spacing)
    return plain_scheme(order, method, return_error)


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def pow2(x: jax.Array) -> jax.Array:
    """The power of two nearest to x (x > 0), so that steps are exact binary fractions."""
    return jnp.exp2(jnp.round(jnp.log2(x)))


def first_step(x: jax.Array, key: Key, step: Any) -> jax.Array:
    """The largest step h0 of the scheme, per entry of x (a real array).

    With extrapolation the sequence starts at max(1, |x|) (rounded to a power of two) and
    shrinks by the step ratio. Without, the default step balances truncation (h^p) against
    rounding (eps / h^order): h = eps^(1/(order + p)) * max(1, |x|), rounded to a power of
    two, i.e. cbrt(eps) for a first central difference and sqrt(eps) for a forward one.
    """
    order, method, richardson, _, _ = key
    if step is not None:
        h = jnp.broadcast_to(jnp.asarray(step, dtype=x.dtype), x.shape)
    else:
        h = pow2(jnp.maximum(1.0, jnp.abs(x)))
        if not richardson:
            p = stencil(order, method).powers[0]
            h = h * 2.0 ** round(math.log2(eps_of(x.dtype) ** (1.0 / (order + p))))
    if richardson:
        return h
    return h / float(scheme_of(key).steps[-1])


# --------------------------------------------------------------------------------------------
# The estimate and the choice
# --------------------------------------------------------------------------------------------


def _apply(matrix: np.ndarray, values: jax.Array) -> jax.Array:
    """matrix (..., P) applied to values (P, C) at full precision: (..., C)."""
    m = jnp.asarray(matrix, values.dtype)
    return jnp.tensordot(m, values, axes=1, precision=jax.lax.Precision.HIGHEST)


def _shift(a: jax.Array, dk: int, dj: int, fill: Any) -> jax.Array:
    """b[k, j] = a[k + dk, j + dj] (fill outside a)."""
    b = a[dk:, dj:]
    pad = [(0, dk), (0, dj)] + [(0, 0)] * (a.ndim - 2)
    return jnp.pad(b, pad, constant_values=fill)


def _suffix_max(a: jax.Array) -> jax.Array:
    """m[k, j] = max over j' >= j of a[k, j'] (along axis 1)."""
    return jax.lax.cummax(a, axis=1, reverse=True)


def _far_disagreement(value: jax.Array, noise: jax.Array, ok: jax.Array) -> jax.Array:
    """max over the descendants c' of c = (k, j) of |T_c - T_c'| - noise(c'), real T.

    The descendants of T[k, j] are the entries T[k + d, j'] with d >= 0 and j' >= j + d (c
    itself excluded): at least as high a level, built only from steps no larger than those
    of T[k, j], hence at least as accurate wherever the steps resolve f.
    """
    neg = jnp.asarray(-jnp.inf, value.dtype)
    upper = _suffix_max(jnp.where(ok, value - noise, neg))  # the highest credible value
    lower = _suffix_max(jnp.where(ok, -value - noise, neg))  # minus the lowest
    levels = value.shape[0]
    best_upper = jnp.full_like(value, -jnp.inf)
    best_lower = jnp.full_like(value, -jnp.inf)
    for d in range(levels):
        first = 1 if d == 0 else d  # j' >= j + 1 on c's own level, else j' >= j + d
        best_upper = jnp.maximum(best_upper, _shift(upper, d, first, -jnp.inf))
        best_lower = jnp.maximum(best_lower, _shift(lower, d, first, -jnp.inf))
    return jnp.maximum(best_upper - value, value + best_lower)


def _disagreement(value: jax.Array, noise: jax.Array, ok: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(value):
        re = _far_disagreement(value.real, noise, ok)
        im = _far_disagreement(value.imag, noise, ok)
        return jnp.hypot(jnp.maximum(re, 0.0), jnp.maximum(im, 0.0))
    return _far_disagreement(value, noise, ok)


TRUNCATION_SAFETY = 2.0  # the estimate is twice the disagreement it sees
NOISE_CAP = 100.0  # a reference's spread counts as noise up to this many times its rounding
NOISE_SAFETY = 2.0  # plus the rounding bound of the entry (eps |F| per sample)


def estimate(value: jax.Array, rounding: jax.Array, ok: jax.Array) -> jax.Array:
    """The error estimate of every tableau entry (K + 1, N, C); inf for non-candidates.

    A candidate T[k, j] has its two nearest descendants, T[k, j+1] (the next step) and
    T[k+1, j+1] (one more error term eliminated); its near disagreement is the larger of its
    differences from them. Its far disagreement is the largest amount by which it differs from
    any descendant beyond that one's own uncertainty (its near disagreement, or for the
    finest step its change from the previous one, plus its rounding error): a lower bound on
    its error. The estimate is twice the larger of the two, plus the entry's rounding error.
    """
    nan = jnp.asarray(jnp.nan, rounding.dtype)
    next_ok, up_ok = _shift(ok, 0, 1, False), _shift(ok, 1, 1, False)
    prev_ok = jnp.pad(ok[:, :-1], [(0, 0), (1, 0), (0, 0)], constant_values=False)
    next_diff = jnp.where(next_ok, jnp.abs(value - _shift(value, 0, 1, 0)), nan)
    up_diff = jnp.where(up_ok, jnp.abs(value - _shift(value, 1, 1, 0)), nan)
    prev = jnp.pad(value[:, :-1], [(0, 0), (1, 0), (0, 0)])
    prev_diff = jnp.where(prev_ok, jnp.abs(value - prev), nan)
    lower = jnp.pad(value[:-1], [(1, 0), (0, 0), (0, 0)])
    lower_ok = jnp.pad(ok[:-1], [(1, 0), (0, 0), (0, 0)], constant_values=False)
    correction = jnp.where(lower_ok, jnp.abs(value - lower), nan)
    near = jnp.fmax(next_diff, up_diff)  # NaN only where neither exists
    candidate = ok & next_ok & up_ok
    spread = jnp.where(jnp.isnan(near), jnp.fmax(correction, prev_diff), near)
    spread = jnp.minimum(spread, NOISE_CAP * rounding)
    credit = jnp.where(ok & ~jnp.isnan(spread), spread + rounding, jnp.inf)
    far = _disagreement(value, credit, ok & jnp.isfinite(credit))
    error = TRUNCATION_SAFETY * jnp.maximum(near, far) + rounding
    return jnp.where(candidate & ~jnp.isnan(error), error, jnp.inf)


def _neville(differences: jax.Array, divisors: np.ndarray) -> jax.Array:
    """The Richardson tableau (K + 1, N, C) over the differences D(h_j) (N, C), by recursion.

    T[k, j] = T[k-1, j] + (T[k-1, j] - T[k-1, j-1]) / ((h_{j-k} / h_j)^q - 1), zero where
    j < k. The recursion (rather than the precomputed functionals, whose large coefficients
    cancel) adds rounding errors of the size of T only.
    """
    rows = [differences]
    for k in range(1, divisors.shape[0]):
        prev = rows[-1]
        div = jnp.asarray(divisors[k, 1:], prev.dtype).reshape((-1,) + (1,) * (prev.ndim - 1))
        new = prev[1:] + (prev[1:] - prev[:-1]) / div
        new = jnp.concatenate([jnp.zeros_like(prev[:1]), new], axis=0)
        rows.append(jnp.where((jnp.arange(prev.shape[0]) >= k)[:, None], new, 0))
    return jnp.stack(rows)


def tableau_estimates(
    flat: jax.Array, scale: jax.Array, scheme: Scheme, magnitude: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Every tableau entry T[k, j] (K + 1, N, C) of samples (P, C) and its error estimate.

    `scale` (C,) is h0^order per column. A non-finite sample (a step outside f's domain, an
    overflow) spoils exactly the entries that use it: they get an infinite estimate. The
    sample is zeroed so that it does not spoil the others through a zero coefficient.

    A sample F_p = f(x_p) is taken to be off by eps (|F_p| + |x_p| |f'|), the standard model
    of a function computed in floating point: its value rounded, and its argument too, as f
    does internally (sin(3x) rounds 3x). `magnitude` (P, C) holds |x_p| for first derivatives
    (f' is then the entry's own value); without it only the first term counts.
    """
    eps = eps_of(flat.dtype)
    finite = jnp.isfinite(flat)
    spoilt = _apply(scheme.table != 0, (~finite).astype(scale.dtype)) > 0
    flat = jnp.where(finite, flat, 0)
    value = _neville(_apply(scheme.table[0], flat) / scale, scheme.divisors)
    ok = jnp.asarray(scheme.valid)[..., None] & ~spoilt
    table = scheme.table

    def rounding(functionals: np.ndarray, slope: jax.Array) -> jax.Array:
        """The rounding error of functionals of the samples (one per entry of `slope`)."""
        error = _apply(np.abs(functionals), jnp.abs(flat))
        if magnitude is not None and scheme.order == 1:
            argument = _apply(np.abs(functionals), magnitude) * jnp.abs(slope)
            error = error + argument
        return NOISE_SAFETY * eps * error / jnp.abs(scale)

    if table.shape[1] == 1:  # one plain difference: its rounding error only
        return value, jnp.where(ok, rounding(table, value), jnp.inf)
    if table.shape[0] == 1:  # plain differences at h and 2h: the classic two-step estimate
        factor = float(scheme.steps[0] / scheme.steps[1]) ** scheme.leading_power - 1.0
        change = jnp.abs(value[:, -1:] - value[:, :1]) / factor
        error = change + rounding(table[:, -1:], value[:, -1:])
        error = jnp.where(ok[:, :1] & ok[:, -1:], error, jnp.inf)
        return value[:, -1:], error
    return value, estimate(value, rounding(table, value), ok)


@functools.partial(jax.jit, static_argnames=("key", "hessian"))
def combine(
    samples: jax.Array,
    scale: jax.Array,
    key: Key,
    hessian: bool = False,
    magnitude: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Applies a scheme to samples (P, *L, *O): the best tableau entry / scale, and its error.

    `scale` (shape L) is h0^order per line; `magnitude` (P, *L), if given, the size |x_p| of
    each sample's point (see tableau_estimates). The best entry is the one with the smallest
    error estimate; where no entry has a finite one (every step left f's domain) both are NaN.
    """
    _, _, richardson, return_error, spacing = key
    scheme = hessian_scheme(spacing, richardson, return_error) if hessian else scheme_of(key)
    shape = samples.shape[1:]
    flat = samples.reshape(samples.shape[0], math.prod(shape))
    rdtype = real_dtype(flat.dtype)

    def per_column(a: jax.Array, lead: tuple[int, ...]) -> jax.Array:
        """a (*lead, *L) broadcast over the outputs and flattened to (*lead, C)."""
        extra = (1,) * (samples.ndim - 1 - (a.ndim - len(lead)))
        a = jnp.broadcast_to(a.reshape(a.shape + extra), lead + shape)
        return a.reshape((*lead, flat.shape[1])).astype(rdtype)

    scale = per_column(scale, ())
    if magnitude is not None:
        magnitude = per_column(magnitude, (samples.shape[0],))
    value, error = tableau_estimates(flat, scale, scheme, magnitude)
    candidates = error.reshape(math.prod(error.shape[:-1]), error.shape[-1])
    best = jnp.argmin(candidates, axis=0)[None]
    pick_value = jnp.take_along_axis(value.reshape(candidates.shape), best, axis=0)[0]
    pick_error = jnp.take_along_axis(candidates, best, axis=0)[0]
    found = jnp.isfinite(pick_error)
    pick_value = jnp.where(found, pick_value, jnp.nan).reshape(shape)
    pick_error = jnp.where(found, pick_error, jnp.nan).reshape(shape)
    return pick_value, (pick_error if return_error else None)


# --------------------------------------------------------------------------------------------
# Lines: derivatives of t -> phi(t) at 0
# --------------------------------------------------------------------------------------------


def differentiate_lines(
    evaluate: Callable[[jax.Array], jax.Array],
    h0: jax.Array,
    key: Key,
    origin: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """The derivative of t -> phi_l(t) at t = 0 for each line l, by the scheme of `key`.

    `h0` (shape L, any rank) is the largest step per line; `evaluate(t)` maps offsets t of shape
    (P, *L) to values phi_l(t) of shape (P, *L, *O); `origin` (shape L), the size of each
    line's point, so that |origin| + |t| is the size of the points f is evaluated at.
    Returns arrays of shape (*L, *O).
    """
    scheme = scheme_of(key)
    t = jnp.asarray(scheme.offsets, h0.dtype).reshape((-1,) + (1,) * h0.ndim) * h0
    magnitude = None if origin is None else jnp.abs(origin) + jnp.abs(t)
    return combine(evaluate(t), h0**scheme.order, key=key, magnitude=magnitude)


def along_lines(
    g: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    directions: jax.Array,
    h0: jax.Array,
    key: Key,
) -> tuple[jax.Array, jax.Array | None]:
    """Derivatives of t -> g(x + t v) at 0 for each row v of `directions`: shape (L, *out)."""

    def evaluate(t: jax.Array) -> jax.Array:  # (P, L) -> (P, L, *out)
        points = x + t[..., None] * directions
        values = jax.vmap(g)(points.reshape(t.size, x.size))
        return values.reshape(t.shape + values.shape[1:])

    size = jnp.full(directions.shape[:1], jnp.max(jnp.abs(x), initial=0.0), x.dtype)
    return differentiate_lines(evaluate, h0, key, origin=size)
