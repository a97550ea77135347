"""Difference stencils and step sequences: where f is sampled and how samples make differences.

Everything here is NumPy on the offsets (no function values): a scheme says at which points
``x + c h`` f is sampled, for which steps h_j, and with which weights the samples make the
difference quotients D(h_j). Extrapolating them (the Richardson tableau) and estimating the
error, in JAX, is :mod:`mlgrad.numerical._apply`'s job.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np

Method = Literal["central", "forward", "backward", "complex"]
METHODS = ("central", "forward", "backward")  # the difference stencils
COMPLEX = "complex"  # the complex step: Im f(x + ih) / h, first derivatives only
ACCURACIES = {"central": (2, 4, 6, 8), "forward": tuple(range(1, 9))}
ACCURACIES["backward"] = ACCURACIES["forward"]

MAX_EVALUATIONS = 30
"""Function evaluations per derivative (per point and direction) with Richardson extrapolation."""

STEP_RATIO = 2
"""Ratio of consecutive steps h0, h0/2, h0/4, ... in the fine part of a Richardson sequence.

Every step is a power of two, so that x + h is exact. Higher derivatives and lower precision
use that ratio throughout (fifteen steps, four decades below h0 = max(1, |x|)); first
derivatives in float64 use it for eight steps, then ratios 4 to 16, reaching eight decades
below h0 (see ``SPACINGS``).
"""

MAX_STEPS = 15  # more steps than this only add candidates that rounding has already spoilt
MAX_LEVELS = 5  # Richardson levels kept in the tableau (error terms eliminated)

BAD_METHOD = "{name}: method must be one of {allowed}, got {method!r}."
BAD_ORDER = "{name}: order must be an int >= 1 (1 = first derivative), got {order!r}."
BAD_ACCURACY = (
    "{name}: accuracy (the order of the truncation error, h^accuracy) must be one of {allowed} "
    "for method={method!r}, got {accuracy!r}."
)
ACCURACY_WITH_RICHARDSON = (
    "{name}: accuracy={accuracy!r} picks a fixed stencil, which is used without Richardson "
    "extrapolation: pass richardson=False as well. (With Richardson extrapolation, the default, "
    "the tableau raises the order itself, to about 1e-13 on smooth first derivatives in float64.)"
)
COMPLEX_STEP_ORDER = (
    "{name}: method='complex' (the complex step Im f(x + ih) / h) gives first derivatives only, "
    "got order={order}. For order {order} use method='central' (Richardson extrapolation), or "
    "apply the complex step to an autodiff derivative of order {lower}: "
    "numerical.derivative(mlgrad.derivative(f, {lower}), method='complex')."
)
COMPLEX_STEP_OPTION = (
    "{name}: method='complex' is one evaluation with no error estimate and no stencil to choose; "
    "{option} does not apply to it. Leave {option} at its default, or use method='central'."
)


def check_order(order: object, name: str) -> None:
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ValueError(BAD_ORDER.format(name=name, order=order))


def check_method(method: object, name: str, complex_step: bool = True) -> None:
    """`method` names a difference stencil (or, where complex_step, the complex step)."""
    allowed = METHODS + ((COMPLEX,) if complex_step else ())
    if method not in allowed:
        names = ", ".join(repr(m) for m in allowed)
        raise ValueError(BAD_METHOD.format(name=name, allowed=names, method=method))


def check_options(
    name: str,
    method: str,
    order: int = 1,
    accuracy: object = None,
    richardson: bool = False,
    return_error: bool = False,
) -> None:
    """The accuracy order fits the method and the plain scheme; the complex step has none of
    the options of the difference stencils."""
    if method == COMPLEX:
        if order != 1:
            raise ValueError(COMPLEX_STEP_ORDER.format(name=name, order=order, lower=order - 1))
        for option, given in (("accuracy", accuracy is not None), ("return_error", return_error)):
            if given:
                raise ValueError(COMPLEX_STEP_OPTION.format(name=name, option=option))
        return
    if accuracy is None:
        return
    allowed = ACCURACIES[method]
    if not isinstance(accuracy, int) or isinstance(accuracy, bool) or accuracy not in allowed:
        names = ", ".join(map(str, allowed))
        raise ValueError(
            BAD_ACCURACY.format(name=name, allowed=names, method=method, accuracy=accuracy)
        )
    if richardson:
        raise ValueError(ACCURACY_WITH_RICHARDSON.format(name=name, accuracy=accuracy))


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
def stencil(order: int, method: str, accuracy: int | None = None) -> Stencil:
    """The difference stencil of one derivative order on power-of-two offsets, or, for a given
    accuracy p, the textbook stencil on consecutive integer offsets whose error is O(h^p).

    Power-of-two (accuracy None): central points +-1, +-2, +-4, ... (and 0 for even orders),
    error in even powers of h from h^2; for orders 1 to 4 these are the textbook stencils.
    Forward: 0, 1, 2, 4, ...; backward mirrors forward; their error has all powers of h from h.
    Power-of-two offsets make the stencils of consecutive steps h, h/2 share their outer points.

    Accuracy p (the findiff / Fornberg stencils): central points -m, ..., m with
    m = floor((n + 1) / 2) - 1 + p / 2 (0 left out for odd n, where its weight is 0), error
    a_1 h^p + a_2 h^(p+2) + ...; forward points 0, 1, ..., n + p - 1, error in all powers from
    h^p; backward mirrors forward.
    """
    if accuracy is not None:
        return _accurate_stencil(order, method, accuracy)
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


def _accurate_stencil(order: int, method: str, accuracy: int) -> Stencil:
    if method == "central":
        m = (order + 1) // 2 - 1 + accuracy // 2
        offsets = [c for c in range(-m, m + 1) if c != 0 or order % 2 == 0]
        powers = tuple(range(accuracy, accuracy + 2 * MAX_LEVELS + 1, 2))
    else:
        offsets = list(range(order + accuracy))
        if method == "backward":
            offsets = sorted(-c for c in offsets)
        powers = tuple(range(accuracy, accuracy + MAX_LEVELS + 1))
    weights = tuple(float(w) for w in _solve_exact(offsets, order))
    return Stencil(tuple(offsets), weights, powers)


# --------------------------------------------------------------------------------------------
# Schemes: a step sequence and the stencil at each step
# --------------------------------------------------------------------------------------------

# The step sequences, as exponents e of the steps h0 / 2^e, h0 = max(1, |x|) by default.
# "fine": ratio 2 throughout, four decades (higher orders, lower precision). "wide" (first
# derivatives in float64): eight steps at ratio 2, where smooth functions of x's own scale have
# their best steps, then ratios 4 to 16 down to h0 / 2^28, about sqrt(eps) h0 / 4, so that some
# step also matches features of f far smaller than x's scale (a period of sin at x = 1e6, a
# nearby kink).
SPACINGS = {
    "fine": tuple(range(MAX_STEPS)),
    "wide": (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 16, 20, 24, 28),
}


class Scheme(NamedTuple):
    """A finite-difference scheme: steps h_j = steps[j] h0, samples at x + offsets[p] h0.

    D(h_j) = sum_p weights[j, p] F_p / h_j^order, F_p = f(x + offsets[p] h0).
    """

    order: int
    offsets: np.ndarray  # (P,) sample offsets in units of h0
    steps: np.ndarray  # (N,) the steps in units of h0, decreasing powers of two
    weights: np.ndarray  # (N, P) the stencil at each step
    levels: int  # Richardson levels K (error terms eliminated); 0 without extrapolation
    leading_power: int  # q: D(h) - f^(n) is a series in h^q (2 central, 1 one-sided)


def _build(
    order: int, method: str, exponents: Sequence[int], levels: int, accuracy: int | None = None
) -> Scheme:
    """The scheme over the steps h0 / 2^e, e in exponents, samples shared where they coincide."""
    sten = stencil(order, method, accuracy)
    points: dict[float, int] = {}
    rows = []
    for e in exponents:
        rows.append(
            {
                points.setdefault(c / 2.0**e, len(points)): w
                for c, w in zip(sten.offsets, sten.weights, strict=True)
            }
        )
    weights = np.zeros((len(rows), len(points)))
    for j, row in enumerate(rows):
        for p, w in row.items():
            weights[j, p] = w
    return Scheme(
        order,
        np.array(list(points), dtype=np.float64),
        2.0 ** -np.asarray(exponents, dtype=np.float64),
        weights,
        min(levels, len(rows) - 1),
        sten.powers[0],
    )


@functools.cache
def derivative_scheme(order: int, method: str, spacing: str) -> Scheme:
    """The derivative scheme: the longest prefix of the spacing's step sequence whose samples
    fit in MAX_EVALUATIONS (stencils on power-of-two offsets share their outer points)."""
    exponents = SPACINGS[spacing]
    best = _build(order, method, exponents[:3], MAX_LEVELS)
    for n in range(4, len(exponents) + 1):
        scheme = _build(order, method, exponents[:n], MAX_LEVELS)
        if scheme.offsets.size > MAX_EVALUATIONS:
            break
        best = scheme
    return best


@functools.cache
def plain_scheme(
    order: int, method: str, return_error: bool, accuracy: int | None = None
) -> Scheme:
    """One difference at the step h; with an error estimate also at 2h (then h0 = 2h)."""
    return _build(order, method, (0, 1) if return_error else (0,), 0, accuracy)


@functools.cache
def hessian_scheme(spacing: str, richardson: bool = True, return_error: bool = False) -> Scheme:
    """The four-point formula for d^2 f / dx_i dx_j at each step, samples ordered (step, sign).

    Samples per step j: f(x + s_a h_j e_i + s_b h_j e_j) for (s_a, s_b) = (+,+), (+,-), (-,+),
    (-,-), weights (1, -1, -1, 1) / 4, divided by h_j^2 (h_j^2 standing for h_j,i h_j,j). The
    steps are those of the second-derivative scheme (one, or h and 2h, without extrapolation).
    """
    if richardson:
        base = derivative_scheme(2, "central", spacing)
    else:
        base = plain_scheme(2, "central", return_error)
    num_steps = base.steps.size
    weights = np.zeros((num_steps, 4 * num_steps))
    for j in range(num_steps):
        weights[j, 4 * j : 4 * j + 4] = np.array([1.0, -1.0, -1.0, 1.0]) / 4
    return Scheme(2, np.repeat(base.steps, 4), base.steps, weights, base.levels, 2)


def num_evaluations(
    order: int = 1,
    *,
    method: Method = "central",
    accuracy: int | None = None,
    richardson: bool = True,
    return_error: bool = False,
) -> int:
    """The number of function evaluations :func:`derivative` makes per point.

    :func:`gradient` and :func:`jacobian` make this many (with ``order=1``) per input entry,
    and :func:`check_grad` this many per random direction.

    Args:
      order: the derivative order, an int >= 1.
      method: ``"central"``, ``"forward"``, ``"backward"`` or ``"complex"`` (the complex
        step: one evaluation).
      accuracy: the accuracy order of the plain stencil (with ``richardson=False``), as in
        :func:`derivative`.
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
      >>> num_evaluations(method="complex")  # Im f(x + ih) / h
      1
      >>> num_evaluations(1, accuracy=8, richardson=False)  # x +- h, ..., x +- 4h
      8
    """
    check_order(order, "num_evaluations")
    check_method(method, "num_evaluations")
    check_options("num_evaluations", method, order, accuracy, richardson, return_error)
    if method == COMPLEX:
        return 1
    if richardson:
        return int(derivative_scheme(order, method, "wide" if order == 1 else "fine").offsets.size)
    return int(plain_scheme(order, method, bool(return_error), accuracy).offsets.size)
