"""Difference stencils, step sequences and the Richardson tableau, as exact linear functionals.

Everything here is NumPy on the offsets (no function values): a scheme says at which points
``x + c h0`` f is sampled and which fixed linear combinations of the samples make the
difference quotients D(h_j) and their Richardson extrapolations T[k, j]. Applying a scheme to
actual samples, in JAX, is :mod:`mlgrad.numerical._apply`'s job.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np

Method = Literal["central", "forward", "backward"]
METHODS = ("central", "forward", "backward")

MAX_EVALUATIONS = 30
"""Function evaluations per derivative (per point and direction) with Richardson extrapolation."""

STEP_RATIO = 2
"""Ratio of consecutive steps h0, h0/2, h0/4, ... in the fine part of a Richardson sequence.

Every step is h0 / 2^e, a power of two, so that x + h is exact. Higher derivatives and lower
precision use that ratio throughout (fifteen steps, four decades below max(1, |x|)); first
derivatives in float64 use it for the first eight steps and then widen to ratios 4 and 8,
reaching eight decades below max(1, |x|) (see ``SPACINGS``).
"""

MAX_STEPS = 15  # more steps than this only add candidates that rounding has already spoilt
MAX_LEVELS = 5  # Richardson levels kept in the tableau (error terms eliminated)
PLAIN_RATIO = 2  # without extrapolation: the step h, and 2h for the error estimate

BAD_METHOD = "{name}: method must be one of 'central', 'forward', 'backward', got {method!r}."
BAD_ORDER = "{name}: order must be an int >= 1 (1 = first derivative), got {order!r}."


def check_order(order: object, name: str) -> None:
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ValueError(BAD_ORDER.format(name=name, order=order))


def check_method(method: object, name: str) -> None:
    if method not in METHODS:
        raise ValueError(BAD_METHOD.format(name=name, method=method))


# --------------------------------------------------------------------------------------------
# Stencils
# --------------------------------------------------------------------------------------------


def _solve_exact(offsets: Sequence[int], order: int) -> list[Fraction]:
    """Weights w with sum_i w_i c_i^k / k! = [k == order] for k < len(offsets), exactly."""
    size = len(offsets)
    rows = [
        [Fraction(c) ** k for c in offsets] + [Fraction(math.factorial(order) if k == order else 0)]
        for k in range(size)
    ]
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][size] for i in range(size)]


class Stencil(NamedTuple):
    offsets: tuple[int, ...]  # evaluation points x + c h, c in offsets
    weights: tuple[float, ...]  # D(h) = sum_i w_i f(x + c_i h) / h^order
    powers: tuple[int, ...]  # exponents of the error expansion D(h) - f^(n)(x) = sum a_k h^p_k


@functools.cache
def stencil(order: int, method: str) -> Stencil:
    """The difference stencil of one derivative order on power-of-two offsets.

    Central: points +-1, +-2, +-4, ... (and 0 for even orders), error in even powers of h; for
    orders 1 to 4 these are the textbook stencils. Forward: 0, 1, 2, 4, ...; backward mirrors
    forward; their error has all powers of h. Power-of-two offsets make the stencils of
    consecutive steps h, h/2 share their outer points.
    """
    if method == "central":
        half = (order + 1) // 2
        pos = [2**i for i in range(half)]
        offsets = sorted([-c for c in pos] + ([0] if order % 2 == 0 else []) + pos)
        powers = tuple(range(2, 2 * MAX_LEVELS + 3, 2))
    else:
        offsets = [0] + [2**i for i in range(order)]
        if method == "backward":
            offsets = sorted(-c for c in offsets)
        powers = tuple(range(1, MAX_LEVELS + 2))
    weights = tuple(float(w) for w in _solve_exact(offsets, order))
    return Stencil(tuple(offsets), weights, powers)


# --------------------------------------------------------------------------------------------
# Schemes: the Richardson tableau over a step sequence, as functionals of the samples
# --------------------------------------------------------------------------------------------


class Scheme(NamedTuple):
    """A finite-difference scheme as linear functionals of the function samples.

    Every entry T[k, j] of the Richardson tableau (level k: error terms eliminated; row j: the
    smallest step it uses is h_j) is a fixed linear combination of the samples
    F_p = f(x + offsets_p h0), divided by h0^order. Precomputing it in NumPy keeps the traced
    program to a few matrix products, which compiles fast and runs anywhere.
    """

    order: int
    offsets: np.ndarray  # (P,) sample offsets in units of h0
    steps: np.ndarray  # (N,) the steps in units of h0, decreasing powers of two
    table: np.ndarray  # (K + 1, N, P) the functionals T[k, j]; zero where j < k
    valid: np.ndarray  # (K + 1, N) whether T[k, j] exists (j >= k)
    divisors: np.ndarray  # (K + 1, N) (h_{j-k} / h_j)^q - 1 (row 0 unused)
    leading_power: int  # q: D(h) - f^(n) is a series in h^q (2 central, 1 one-sided)


def divisors(steps: np.ndarray, q: int, levels: int) -> np.ndarray:
    """(K + 1, N): the Neville divisors (h_{j-k} / h_j)^q - 1 (1 where undefined)."""
    out = np.ones((levels + 1, steps.size))
    for k in range(1, levels + 1):
        out[k, k:] = (steps[:-k] / steps[k:]) ** q - 1.0
    return out


def tableau(stencils: np.ndarray, steps: np.ndarray, q: int, levels: int) -> np.ndarray:
    """Richardson (Neville) tableau over the rows of `stencils` = D(h_j) as functionals.

    D(h) = f^(n) + a_1 h^q + a_2 h^2q + ... is a polynomial in t = h^q, and T[k, j] is the
    value at t = 0 of the polynomial through (t_{j-k}, D(h_{j-k})), ..., (t_j, D(h_j)):
    T[k, j] = T[k-1, j] + (T[k-1, j] - T[k-1, j-1]) / ((h_{j-k} / h_j)^q - 1) (Neville-Aitken;
    for a constant ratio r this is the classic r^(qk) - 1).
    """
    div = divisors(steps, q, levels)
    table = np.zeros((levels + 1, *stencils.shape))
    table[0] = stencils
    for k in range(1, levels + 1):
        change = table[k - 1, k:] - table[k - 1, k - 1 : -1]
        table[k, k:] = table[k - 1, k:] + change / div[k, k:, None]
    return table


# The step sequences, as exponents e_j of h_j = h0 / 2^e_j with h0 = max(1, |x|) by default.
# "fine": ratio 2, the classic sequence, four decades. "wide" (first derivatives in float64):
# ratio 2 for the first eight steps, where smooth functions of x's own scale have their best
# steps, then ratios 4 and 8 down to about 6e-8 h0 (about sqrt(eps) h0), so that some step also
# matches features of f far smaller than x's scale (a period of sin at x = 1e6, a nearby kink).
SPACINGS = {
    "fine": tuple(range(MAX_STEPS)),
    "wide": (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 16, 20, 24, 28),
}


def _build(order: int, method: str, exponents: Sequence[int], levels: int) -> Scheme:
    """The scheme over the steps h0 / 2^e, e in exponents."""
    sten = stencil(order, method)
    points: dict[float, int] = {}
    rows = []
    for e in exponents:
        row: dict[int, float] = {}
        for c, w in zip(sten.offsets, sten.weights, strict=True):
            p = points.setdefault(c / 2.0**e, len(points))
            row[p] = w * 2.0 ** (e * order)  # w / h_j^order in units of h0
        rows.append(row)
    stencils = np.zeros((len(exponents), len(points)))
    for j, row in enumerate(rows):
        for p, w in row.items():
            stencils[j, p] = w
    steps = 2.0 ** -np.asarray(exponents, dtype=np.float64)
    depth = min(levels, len(exponents) - 1)
    q = sten.powers[0]
    return Scheme(
        order,
        np.array(list(points), dtype=np.float64),
        steps,
        tableau(stencils, steps, q, depth),
        np.arange(len(exponents))[None, :] >= np.arange(depth + 1)[:, None],
        divisors(steps, q, depth),
        q,
    )


@functools.cache
def derivative_scheme(order: int, method: str, spacing: str, levels: int = MAX_LEVELS) -> Scheme:
    """The derivative scheme: the longest prefix of the spacing's step sequence whose samples
    fit in MAX_EVALUATIONS.

    Steps are powers of two (so x + c h is exact) and stencil offsets powers of two, so the
    stencils at different steps share their sample points.
    """
    exponents = SPACINGS[spacing]
    best = _build(order, method, exponents[:3], levels)
    for num_steps in range(4, len(exponents) + 1):
        scheme = _build(order, method, exponents[:num_steps], levels)
        if scheme.offsets.size > MAX_EVALUATIONS:
            break
        best = scheme
    return best


@functools.cache
def plain_scheme(order: int, method: str, return_error: bool) -> Scheme:
    """One difference at the step h (the last row); with an error estimate also at 2h."""
    return _build(order, method, (0, 1) if return_error else (0,), 0)


@functools.cache
def hessian_scheme(spacing: str, richardson: bool = True, return_error: bool = False) -> Scheme:
    """The four-point formula for d^2 f / dx_i dx_j at each step, samples ordered (step, sign).

    Samples per step j: f(x + s_a h_j e_i + s_b h_j e_j) for (s_a, s_b) = (+,+), (+,-), (-,+),
    (-,-), weights (1, -1, -1, 1) / 4 / (h_j/h0)^2; the result is divided by h0_i h0_j. The
    steps are those of the second-derivative scheme (one, or h and 2h, without extrapolation).
    """
    if richardson:
        steps = derivative_scheme(2, "central", spacing).steps
    else:
        steps = plain_scheme(2, "central", return_error).steps
    num_steps = steps.size
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    stencils = np.zeros((num_steps, 4 * num_steps))
    for j in range(num_steps):
        stencils[j, 4 * j : 4 * j + 4] = signs / 4 / steps[j] ** 2
    depth = min(MAX_LEVELS, num_steps - 1) if richardson else 0
    return Scheme(
        2,
        np.repeat(steps, 4),
        steps,
        tableau(stencils, steps, 2, depth),
        np.arange(num_steps)[None, :] >= np.arange(depth + 1)[:, None],
        divisors(steps, 2, depth),
        2,
    )


def num_evaluations(
    order: int = 1,
    *,
    method: Method = "central",
    richardson: bool = True,
    return_error: bool = False,
) -> int:
    """The number of function evaluations :func:`derivative` makes per point.

    :func:`gradient` and :func:`jacobian` make this many (with ``order=1``) per input entry,
    and :func:`check_grad` this many per random direction.

    Args:
      order: the derivative order, an int >= 1.
      method: ``"central"``, ``"forward"`` or ``"backward"``.
      richardson: whether Richardson extrapolation is used.
      return_error: whether an error estimate is requested (costs extra points only without
        Richardson extrapolation, where the step 2h is evaluated too).

    Returns:
      The number of distinct points at which f is evaluated, at most :data:`MAX_EVALUATIONS`
      with Richardson extrapolation (the same for every dtype).

    Example:
      >>> from mlgrad.numerical import num_evaluations
      >>> num_evaluations(1), num_evaluations(1, richardson=False)
      (30, 2)
    """
    check_order(order, "num_evaluations")
    check_method(method, "num_evaluations")
    if richardson:
        return int(derivative_scheme(order, method, "wide" if order == 1 else "fine").offsets.size)
    return int(plain_scheme(order, method, bool(return_error)).offsets.size)
