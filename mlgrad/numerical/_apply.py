"""Applying difference schemes to a function in JAX: steps, samples, the estimate and the choice.

A scheme (:mod:`mlgrad.numerical._schemes`) says where f is sampled and how the samples make
the differences D(h_j). Here the samples are taken, the differences extrapolated in a
Richardson (Neville) tableau T[k, j], every entry given an error estimate from the evidence
around it, and the entry with the smallest estimate returned, chosen with ``jnp.argmin`` so
that everything stays jit- and vmap-compatible.

The error estimate of an entry is built so that it cannot be zero by accident:

* its near disagreement: the larger of its differences from its two nearest descendants,
  T[k, j+1] (the next, smaller step) and T[k+1, j+1] (one more error term eliminated). One
  difference can be zero by accident (for an odd function at x = h0/2, D(h0) equals D(h0/2)
  exactly); two independent ones hardly ever are.
* its far disagreement: the largest amount by which it differs from any descendant (an entry
  of at least its level built from steps no larger than its own) beyond what that
  descendant's own uncertainty explains. The smaller steps are the arbiter of the larger
  ones: a feature of f that a large step jumps over (a kink, a period) is resolved by every
  step shorter than it, and an entry that disagrees with them is charged with the difference.
* its rounding error: eps (|f| + |x| |f'|) per sample (f's value rounded, and its argument, as
  any f computed in floating point rounds it internally), carried through the tableau.

The estimate is twice the larger disagreement plus the rounding error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

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


class Key(NamedTuple):
    """Everything that picks a scheme (hashable: a static argument of the compiled combine)."""

    order: int
    method: str
    richardson: bool
    return_error: bool
    spacing: str  # the step sequence with extrapolation, see spacing_of
    accuracy: int | None = None  # the plain stencil's accuracy order; None: the default one


TRUNCATION_SAFETY = 2.0  # the estimate is twice the disagreement it sees
NOISE_SAFETY = 2.0  # and twice the rounding bound eps (|f| + |x| |f'|) per sample
NOISE_CAP = 100.0  # a reference's spread counts as noise up to this many times its rounding


def eps_of(dtype: Any) -> float:
    return float(jnp.finfo(dtype).eps)


def real_dtype(dtype: Any) -> Any:
    """The real dtype of the same precision (float32 for complex64)."""
    return jnp.finfo(dtype).dtype


def spacing_of(dtype: Any, order: int) -> str:
    """The step sequence: "wide" for first derivatives in float64, else "fine" (ratio 2).

    The wide sequence spans eight decades below max(1, |x|), so some step matches the scale
    of f's own features wherever they lie, down to about sqrt(eps) max(1, |x|). The fine one
    spans four decades at ratio 2, the spacing that higher-order stencils (whose rounding
    grows as h^-n) and lower precision (whose rounding makes steps below ~1e-4 |x| useless)
    need.
    """
    return "wide" if eps_of(dtype) <= 1e-15 and order == 1 else "fine"


def make_key(
    order: int,
    method: str,
    richardson: bool,
    return_error: bool,
    dtype: Any,
    accuracy: int | None = None,
) -> Key:
    spacing = spacing_of(dtype, order)
    return Key(order, method, bool(richardson), bool(return_error), spacing, accuracy)


def scheme_of(key: Key, hessian: bool = False) -> Scheme:
    if hessian:
        return hessian_scheme(key.spacing, key.richardson, key.return_error)
    if key.richardson:
        return derivative_scheme(key.order, key.method, key.spacing)
    return plain_scheme(key.order, key.method, key.return_error, key.accuracy)


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def pow2(x: jax.Array) -> jax.Array:
    """The power of two nearest to x (x > 0), so that steps are exact binary fractions."""
    return jnp.exp2(jnp.round(jnp.log2(x)))


def first_step(x: jax.Array, key: Key, step: Any) -> jax.Array:
    """The largest step h0 of the scheme, per entry of x (a real array).

    With extrapolation the sequence starts at max(1, |x|) (rounded to a power of two). Without,
    the default step balances truncation (h^p) against rounding (eps / h^order):
    h = eps^(1/(order + p)) * max(1, |x|), rounded to a power of two, i.e. cbrt(eps) for a
    first central difference and sqrt(eps) for a forward one, and eps^(1/(order + p)) for a
    stencil of accuracy p.
    """
    if step is not None:
        h = jnp.broadcast_to(jnp.asarray(step, dtype=x.dtype), x.shape)
    else:
        h = pow2(jnp.maximum(1.0, jnp.abs(x)))
        if not key.richardson:
            p = stencil(key.order, key.method, key.accuracy).powers[0]
            h = h * 2.0 ** round(math.log2(eps_of(x.dtype) ** (1.0 / (key.order + p))))
    if key.richardson:
        return h
    return h / float(scheme_of(key).steps[-1])


def offsets(scheme: Scheme, h0: jax.Array) -> jax.Array:
    """The sample offsets t_p (P, *L) of the scheme for largest steps h0 (shape L)."""
    return jnp.asarray(scheme.offsets, h0.dtype).reshape((-1,) + (1,) * h0.ndim) * h0


# --------------------------------------------------------------------------------------------
# The tableau, the estimate and the choice
# --------------------------------------------------------------------------------------------


def _apply(matrix: np.ndarray, values: jax.Array) -> jax.Array:
    """matrix (..., P) applied to values (P, C) at full precision: (..., C)."""
    m = jnp.asarray(matrix, values.dtype)
    return jnp.tensordot(m, values, axes=1, precision=jax.lax.Precision.HIGHEST)


def _shift(a: jax.Array, axis: int, by: int, fill: Any) -> jax.Array:
    """b[..., i, ...] = a[..., i + by, ...] along axis (0 or 1), `fill` outside a."""
    size = a.shape[axis]
    moved = jax.lax.slice_in_dim(a, max(by, 0), size + min(by, 0), axis=axis)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (max(-by, 0), max(by, 0))
    return jnp.pad(moved, pad, constant_values=fill)


# The tableau is held skewed: S[k, m] = T[k, m + k] uses the steps h_m, ..., h_{m+k}. In
# these coordinates the next step T[k, j+1] is S[k, m+1], one more error term eliminated at
# the next step, T[k+1, j+1], is S[k+1, m], and the descendants of an entry (a level at least
# as high, built from steps no larger) are the S[k', m'] with k' >= k and m' >= m: a
# quadrant, whose maxima are two cumulative maxima.


def _neville(
    differences: jax.Array, sizes: jax.Array, steps: jax.Array, q: int, levels: int
) -> tuple[jax.Array, jax.Array]:
    """The skewed tableau S (K + 1, N, C) over D(h_m) (N, C), and bounds on |functionals| of it.

    S[k, m] = S[k-1, m+1] + (S[k-1, m+1] - S[k-1, m]) / ((h_m / h_{m+k})^q - 1), the value at
    h = 0 of the polynomial in h^q through (h_m, D(h_m)), ..., (h_{m+k}, D(h_{m+k}))
    (Neville-Aitken; for a constant ratio r the divisor is the classic r^(qk) - 1). `sizes`
    (B, N, C), magnitudes sum_p |w_p| g_p of each difference's coefficients against some
    g >= 0, are carried along by the triangle inequality: (K + 1, B, N, C). Zero past the end.
    """
    rows, bounds = [differences], [sizes]
    for k in range(1, levels + 1):
        divisor = (steps[:-k] / steps[k:]) ** q - 1.0  # (N - k, C)
        rows.append(_extrapolate(rows[-1], divisor, k))
        bounds.append(_extrapolate(bounds[-1], divisor, k, absolute=True))
    return jnp.stack(rows), jnp.stack(bounds)


def _extrapolate(a: jax.Array, divisor: jax.Array, k: int, absolute: bool = False) -> jax.Array:
    """One Neville level over skewed rows a (..., N, C): a[m+1] + (a[m+1] - a[m]) / divisor[m]
    (with + for a bound on absolute values), zero-padded to N."""
    n = divisor.shape[0]
    upper, lower = a[..., 1 : 1 + n, :], a[..., :n, :]
    out = upper + ((upper + lower) if absolute else (upper - lower)) / divisor
    return jnp.pad(out, [(0, 0)] * (a.ndim - 2) + [(0, k), (0, 0)])


def _descendant_max(a: jax.Array) -> jax.Array:
    """max of a[k', m'] over k' >= k, m' >= m, (k', m') != (k, m); -inf where none."""
    quadrant = jax.lax.cummax(jax.lax.cummax(a, axis=0, reverse=True), axis=1, reverse=True)
    return jnp.maximum(_shift(quadrant, 0, 1, -jnp.inf), _shift(quadrant, 1, 1, -jnp.inf))


def _far_disagreement(value: jax.Array, credit: jax.Array) -> jax.Array:
    """max over the descendants c' of c of |T_c - T_c'| - credit(c') (real T; credit inf
    where c' is no reference)."""
    above = _descendant_max(value - credit) - value  # how far a descendant lies above T_c
    below = value + _descendant_max(-value - credit)  # how far one lies below
    return jnp.maximum(above, below)


def _disagreement(value: jax.Array, credit: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(value):
        re = _far_disagreement(value.real, credit)
        im = _far_disagreement(value.imag, credit)
        return jnp.hypot(jnp.maximum(re, 0.0), jnp.maximum(im, 0.0))
    return _far_disagreement(value, credit)


def estimate(value: jax.Array, rounding: jax.Array, ok: jax.Array) -> jax.Array:
    """The error estimate of every (skewed) tableau entry (K + 1, N, C); inf for non-candidates.

    A candidate T[k, j] has its two nearest descendants, T[k, j+1] (the next step) and
    T[k+1, j+1] (one more error term eliminated); its near disagreement is the larger of its
    differences from them. Its far disagreement is the largest amount by which it differs from
    any descendant beyond that one's own uncertainty (its near disagreement, or for the
    finest step its correction or change from the previous step, as far as rounding can
    explain it, plus its rounding error): a lower bound on its error. The estimate is twice
    the larger of the two, plus the entry's rounding error.
    """
    nan = jnp.asarray(jnp.nan, rounding.dtype)

    def diff(k: int, m: int) -> jax.Array:  # |S - S[k + dk, m + dm]|, NaN where that is absent
        other_ok = _shift(_shift(ok, 0, k, False), 1, m, False)
        other = _shift(_shift(value, 0, k, 0), 1, m, 0)
        return jnp.where(other_ok, jnp.abs(value - other), nan)

    next_diff, up_diff = diff(0, 1), diff(1, 0)
    near = jnp.fmax(next_diff, up_diff)  # NaN only where neither exists (the finest step)
    finest = jnp.fmax(diff(-1, 1), diff(0, -1))  # its correction, its change from h_{j-1}
    spread = jnp.minimum(jnp.where(jnp.isnan(near), finest, near), NOISE_CAP * rounding)
    credit = jnp.where(ok & ~jnp.isnan(spread), spread + rounding, jnp.inf)
    far = _disagreement(value, credit)
    error = TRUNCATION_SAFETY * jnp.maximum(near, far) + rounding
    candidate = ok & ~jnp.isnan(next_diff) & ~jnp.isnan(up_diff) & ~jnp.isnan(error)
    return jnp.where(candidate, error, jnp.inf)


def tableau_estimates(
    flat: jax.Array, steps: jax.Array, scheme: Scheme, magnitude: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Every entry of the skewed tableau S[k, m] = T[k, m + k] (K + 1, N, C) of samples (P, C)
    at steps (N, C), and its error estimate.

    A non-finite sample (a step outside f's domain, an overflow) spoils exactly the entries
    that use it: they get an infinite estimate. The sample is zeroed so that it does not spoil
    the others through a zero coefficient.

    A sample F_p = f(x_p) is taken to be off by eps (|F_p| + |x_p| |f'|), the standard model
    of a function computed in floating point: its value rounded, and its argument too, as f
    does internally (sin(3x) rounds 3x). `magnitude` (P, C) holds |x_p| for first derivatives
    (f' is then the entry's own value); without it only the first term counts.
    """
    eps = eps_of(flat.dtype)
    finite = jnp.isfinite(flat)
    flat = jnp.where(finite, flat, 0)
    per_step = steps**scheme.order
    argument = magnitude is not None and scheme.order == 1
    # |F|, the non-finite samples and |x_p|, through the stencils' |weights| in one product
    magnitudes = [jnp.abs(flat), (~finite).astype(steps.dtype)]
    magnitudes += [magnitude] if magnitude is not None and argument else []
    sizes = _apply(np.abs(scheme.weights), jnp.stack(magnitudes, axis=1))  # (N, B, C)
    sizes = jnp.moveaxis(sizes, 1, 0) / per_step  # the spoilt count only needs its sign
    differences = _apply(scheme.weights, flat) / per_step
    value, bounds = _neville(differences, sizes, steps, scheme.leading_power, scheme.levels)
    size, spoilt = bounds[:, 0], bounds[:, 1]
    arg = [bounds[:, 2]] if argument else []
    num_steps = steps.shape[0]
    valid = np.arange(num_steps)[None, :] + np.arange(scheme.levels + 1)[:, None] < num_steps
    ok = jnp.asarray(valid)[..., None] & (spoilt == 0)
    rounding = size + (arg[0] * jnp.abs(value) if argument else 0.0)
    rounding = NOISE_SAFETY * eps * rounding
    if scheme.levels > 0:
        return value, estimate(value, rounding, ok)
    if num_steps == 1:  # one plain difference: its rounding error only
        return value, jnp.where(ok, rounding, jnp.inf)
    # plain differences at h and 2h: the classic two-step estimate for the one at h
    factor = 2.0**scheme.leading_power - 1.0
    error = jnp.abs(value[:, 1:] - value[:, :1]) / factor + rounding[:, 1:]
    return value[:, 1:], jnp.where(ok[:, :1] & ok[:, 1:], error, jnp.inf)


@functools.partial(jax.jit, static_argnames=("key", "hessian"))
def combine(
    samples: jax.Array,
    h0: jax.Array,
    key: Key,
    hessian: bool = False,
    magnitude: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Applies a scheme to samples (P, *L, *O): the best tableau entry, and its error.

    `h0` (shape L) is the largest step per line; `magnitude` (P, *L), if given, the size |x_p|
    of each sample's point (see tableau_estimates). The best entry is the one with the smallest
    error estimate; where no entry has a finite one (every step left f's domain) both are NaN.
    """
    scheme = scheme_of(key, hessian)
    shape = samples.shape[1:]
    flat = samples.reshape(samples.shape[0], math.prod(shape))
    rdtype = real_dtype(flat.dtype)

    def per_column(a: jax.Array, lead: tuple[int, ...]) -> jax.Array:
        """a (*lead, *L) broadcast over the outputs and flattened to (*lead, C)."""
        extra = (1,) * (samples.ndim - 1 - (a.ndim - len(lead)))
        a = jnp.broadcast_to(a.reshape(a.shape + extra), lead + shape)
        return a.reshape((*lead, flat.shape[1])).astype(rdtype)

    steps = jnp.asarray(scheme.steps, rdtype)[:, None] * per_column(h0, ())  # (N, C)
    if magnitude is not None:
        magnitude = per_column(magnitude, (samples.shape[0],))
    value, error = tableau_estimates(flat, steps, scheme, magnitude)
    candidates = error.reshape(math.prod(error.shape[:-1]), error.shape[-1])
    best = jnp.argmin(candidates, axis=0)[None]
    pick_value = jnp.take_along_axis(value.reshape(candidates.shape), best, axis=0)[0]
    pick_error = jnp.take_along_axis(candidates, best, axis=0)[0]
    found = jnp.isfinite(pick_error)
    pick_value = jnp.where(found, pick_value, jnp.nan).reshape(shape)
    pick_error = jnp.where(found, pick_error, jnp.nan).reshape(shape)
    return pick_value, (pick_error if key.return_error else None)


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
    t = offsets(scheme_of(key), h0)
    magnitude = None if origin is None else jnp.abs(origin) + jnp.abs(t)
    return combine(evaluate(t), h0, key=key, magnitude=magnitude)


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


# --------------------------------------------------------------------------------------------
# The complex step: f'(x) = Im f(x + ih) / h, one evaluation, no cancellation
# --------------------------------------------------------------------------------------------


def complex_step_size(ax: jax.Array) -> jax.Array:
    """The complex step h per entry of |x| (a real array): c min(1, |x|) as a power of two (c
    at x = 0), c = eps^2 in float64 and eps in lower precision, and at least tiny / eps.

    Im f(x + ih) / h = f'(x) - h^2 f^(3)(x) / 6 + ..., with no difference of nearby values to
    cancel, so any h far below the scale of f's features gives f' to rounding, and a tiny h
    reaches the finest features. It stays relative to |x| below 1 (for sqrt or log near 0,
    whose features shrink with |x|) and well above the underflow threshold, since the imaginary
    parts f computes are h times derivatives: c = eps in float32, whose exponent range is
    narrow (x^5 at x = 1e-6 has f' = 5e-24, and h f' must stay a normal float).
    """
    eps = eps_of(ax.dtype)
    c = eps**2 if eps <= 1e-15 else eps
    floor = float(jnp.finfo(ax.dtype).tiny) / eps
    scale = pow2(jnp.where(ax > 0, jnp.minimum(1.0, ax), 1.0))
    return jnp.maximum(c * scale, floor)


def complex_step_lines(
    g: Callable[[jax.Array], jax.Array], x: jax.Array, directions: jax.Array, h: jax.Array
) -> jax.Array:
    """Im g(x + i h_l v_l) / h_l for each row v_l of `directions` (steps h, shape L): (L, *out).

    `g` takes complex points of x's precision; one evaluation per line.
    """
    points = x + (1j * h)[:, None] * directions
    values = jax.vmap(g)(points)
    return jnp.imag(values) / h.reshape(h.shape + (1,) * (values.ndim - 1))
