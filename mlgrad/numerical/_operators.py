"""The operators: difference_quotient, derivative, gradient, jacobian and hessian.

Each is called exactly like its autodiff namesake in :mod:`mlgrad` (and in JAX). They differ
only in which lines they differentiate along: the real axis through each point
(:func:`derivative`), the coordinate axes of the flattened arguments (:func:`gradient`,
:func:`jacobian`), and pairs of them (:func:`hessian`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float, check_scalar_output
from mlgrad.numerical._apply import (
    Key,
    along_lines,
    combine,
    differentiate_lines,
    first_step,
    make_key,
)
from mlgrad.numerical._arguments import (
    Flat,
    Selected,
    compiled,
    complex_gradient,
    flatten,
    is_complex,
    real_only,
    select_args,
    unflatten_matrix,
)
from mlgrad.numerical._schemes import Method, check_method, check_order, hessian_scheme

NOT_SCALAR_TO_SCALAR = (
    "mlgrad.numerical.derivative is for scalar functions f: R -> R (applied to each point of "
    "an array), but f returned shape {shape} for a scalar input. For a function of a vector "
    "use mlgrad.numerical.gradient (scalar output) or mlgrad.numerical.jacobian."
)
COMPLEX_GRADIENT = (
    "mlgrad.numerical.gradient: f returned a complex scalar for complex inputs; a gradient of "
    "that is not defined here. For a holomorphic f of one complex variable use "
    "mlgrad.numerical.derivative; otherwise take the gradient of jnp.real(f) and jnp.imag(f)."
)

# --------------------------------------------------------------------------------------------
# The notes' difference quotient and the derivative of f: R -> R
# --------------------------------------------------------------------------------------------


def difference_quotient(
    f: Callable[[jax.Array], jax.Array],
    x: jax.typing.ArrayLike,
    h: jax.typing.ArrayLike | None = None,
    *,
    scheme: Method = "forward",
) -> jax.Array:
    """The secant slope of f at x with step h: the difference quotient of the lecture notes.

    .. math::
        \\text{forward: } \\frac{f(x + h) - f(x)}{h}, \\quad
        \\text{backward: } \\frac{f(x) - f(x - h)}{h}, \\quad
        \\text{central: } \\frac{f(x + h) - f(x - h)}{2h}.

    Its limit as h -> 0 is the derivative f'(x). The forward and backward quotients are
    accurate to O(h), the central one to O(h^2); rounding adds O(eps / h), so a too small h
    is as bad as a too large one.

    Args:
      f: a function applied to the shifted points, ``f(x + h)``; for an array ``x`` it must
        act elementwise (as ``jnp.sin`` does).
      x: the point, or an array of points (Python numbers are promoted to floats; complex
        points are shifted along the real axis).
      h: the step (a scalar or an array broadcastable to ``x``). ``None`` picks a dtype-aware
        step, the power of two nearest to ``sqrt(eps) * max(1, |x|)`` for forward and
        backward quotients and to ``cbrt(eps) * max(1, |x|)`` for the central one (eps is
        the machine epsilon of x's dtype), which balances truncation against rounding.
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.

    Returns:
      The difference quotient, with the shape of ``x`` (broadcast with ``h``).

    Example:
      >>> from mlgrad.numerical import difference_quotient
      >>> float(difference_quotient(lambda x: x**2, 3.0, 0.5))  # ((3.5)^2 - 3^2) / 0.5
      6.5
    """
    check_method(scheme, "difference_quotient")
    x = jnp.asarray(as_float(x, "x"))
    if h is None:
        ax = jnp.abs(x)
        h = first_step(ax, make_key(1, scheme, False, False, ax.dtype), None)
    else:
        h = jnp.asarray(as_float(h, "h"))
    if scheme == "forward":
        return (f(x + h) - f(x)) / h
    if scheme == "backward":
        return (f(x) - f(x - h)) / h
    return (f(x + h) - f(x - h)) / (2 * h)


def derivative(
    f: Callable[[jax.Array], jax.Array],
    order: int = 1,
    *,
    step: jax.typing.ArrayLike | None = None,
    method: Method = "central",
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[[jax.typing.ArrayLike], Any]:
    """The n-th derivative of a scalar function f: R -> R by finite differences.

    .. math::
        f^{(n)}(x) \\approx \\frac{1}{h^n} \\sum_i w_i f(x + c_i h),

    with the central stencil (points c = +-1, +-2, +-4, ... and 0 for even n; error O(h^2)) or
    a forward/backward one (c = 0, 1, 2, 4, ...; error O(h)). With Richardson extrapolation
    the stencil is evaluated at a sequence of power-of-two steps from h0 = max(1, |x|): for
    first derivatives in float64 eight halvings, then ratios 4 to 16 down to 2^-28 h0 (about
    4e-9 h0), so that the steps reach the scale of f's own features, not only x's; otherwise
    fifteen halvings (down to 6e-5 h0). The error terms are eliminated in a Neville tableau
    and the entry with the smallest error estimate is returned, using at most
    :data:`MAX_EVALUATIONS` function evaluations per point (:func:`num_evaluations`).

    The estimate of an entry is twice the larger of (a) its differences from its two nearest
    descendants in the tableau (the next step; one more error term eliminated) and (b) its
    disagreement with any entry built from smaller steps, beyond that entry's own
    uncertainty; plus its rounding error, eps (|f| + |x| |f'|) per sample (f's value rounded,
    and its argument, as sin(3x) rounds 3x) carried through the tableau, twice. So a
    difference that is zero by accident (an odd function at x = h0/2 has D(h0) = D(h0/2)) cannot
    make it zero, and a step that jumps over a feature of f (a kink, a period) is outvoted by
    the shorter steps that resolve it.

    What it guarantees, and what no finite difference can do: where every feature of f (a
    period's scale, the distance to a kink, a jump or the domain's edge) is at least 10x the
    smallest step, the estimate bounds the actual error -- in every case of the adversarial
    table of ``benchmarks/calculus.py`` -- up to rounding inside f beyond the model, which on
    random functions leaves 0.5% of estimates below the error, by at most a few times.
    Features finer than the smallest step (about 4e-9 max(1, |x|) in float64, 6e-5 max(1, |x|)
    in float32) are beyond any finite difference: for ``jnp.sin(1e9 * x)``, or a kink closer
    to x than that, every step jumps over the feature, the samples look like a smooth (or even
    constant) function, and the value and its error estimate can both be wrong; so can a
    discontinuity at x itself. Within reach but close to the limit the answer is honest but
    coarse: sin'(x) at x = 1e6, whose unit-scale features are 250 smallest steps wide, comes
    with a relative error (and estimate) of about 3e-5.

    Args:
      f: a function of one scalar returning a scalar (real or complex); it is mapped over the
        points with ``jax.vmap``, so it need not be written elementwise.
      order: the derivative order n >= 1.
      step: with ``richardson=False`` the step h (scalar or array broadcastable to x), default
        the power of two nearest to ``eps^(1/(n+2)) * max(1, |x|)`` (central) or
        ``eps^(1/(n+1)) * max(1, |x|)`` (one-sided); with ``richardson=True`` the largest step
        h0 of the sequence, default ``max(1, |x|)`` rounded to a power of two.
      method: ``"central"``, ``"forward"`` or ``"backward"``.
      richardson: extrapolate over a sequence of steps (accurate to about 1e-13 to 1e-15 for
        smooth first derivatives in float64) instead of one step (about eps^(2/3)).
      return_error: also return an error estimate. Without Richardson extrapolation this
        evaluates the step 2h too and estimates the error from the two differences (a rough
        guide: two differences can agree by accident).

    Returns:
      A function of x (a point or an array of points) returning f^(n) at each point, with x's
      shape; or ``(value, error)`` with ``return_error=True``. A complex x is stepped along
      the real axis, which gives the complex derivative f'(z) of a holomorphic f (as
      ``jax.grad(f, holomorphic=True)``). Where no step gives a finite value the result and
      the error are NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad import numerical
      >>> print(numerical.derivative(jnp.sin)(jnp.array([0.0, jnp.pi])).round(5))
      [ 1. -1.]
      >>> value, error = numerical.derivative(jnp.abs, method="backward", return_error=True)(0.5)
      >>> float(value), bool(error < 1e-5)
      (1.0, True)
    """
    check_order(order, "mlgrad.numerical.derivative")
    check_method(method, "mlgrad.numerical.derivative")
    richardson, return_error = bool(richardson), bool(return_error)

    def compute(x: jax.Array) -> Any:
        ax = jnp.abs(x)
        key = make_key(order, method, richardson, return_error, ax.dtype)
        h0 = first_step(ax, key, step)
        f_points = jax.vmap(f)

        def evaluate(t: jax.Array) -> jax.Array:
            points = x + t
            return f_points(points.reshape(points.size)).reshape(points.shape)

        value, error = differentiate_lines(evaluate, h0, key, origin=ax)
        return (value, error) if return_error else value

    def nth_derivative(x: jax.typing.ArrayLike) -> Any:
        x = jnp.asarray(as_float(x, "x"))
        out = jax.eval_shape(f, jax.ShapeDtypeStruct((), x.dtype))
        shape = getattr(out, "shape", None)
        if shape != ():
            raise TypeError(NOT_SCALAR_TO_SCALAR.format(shape=shape or type(out).__name__))
        # one program per call, f traced afresh (a new function object: jit caches traces
        # by function), as under jax.grad: see compiled()
        return jax.jit(lambda x: compute(x))(x)

    return nth_derivative


# --------------------------------------------------------------------------------------------
# Functions of several variables: gradient, Jacobian, Hessian
# --------------------------------------------------------------------------------------------


def _coordinate_derivatives(
    g: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    method: str,
    step: Any,
    richardson: bool,
    return_error: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """Partial derivatives of g (flat real input x) along each coordinate: shape (n, *out)."""
    key = make_key(1, method, richardson, return_error, x.dtype)
    h0 = first_step(x, key, step)
    return along_lines(g, x, jnp.eye(x.size, dtype=x.dtype), h0, key)


def gradient(
    f: Callable[..., jax.Array],
    argnums: int | Sequence[int] = 0,
    *,
    step: float | None = None,
    method: Method = "central",
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[..., Any]:
    """The gradient of a scalar function by finite differences, called like ``jax.grad``.

    .. math:: \\nabla f(x)_i \\approx \\text{derivative of } t \\mapsto f(x + t e_i)
        \\text{ at } t = 0,

    one :func:`derivative` (with Richardson extrapolation by default) per input entry, i.e.
    :func:`num_evaluations` ``(1)`` evaluations of f per entry. For a complex entry
    z = a + ib of a real-valued f it is JAX's convention df/da - i df/db (two real
    derivatives).

    Args:
      f: a function of positional arguments returning a scalar.
      argnums: which argument(s) to differentiate with respect to (int or tuple of ints, as in
        ``jax.grad``; negative ones count from the end); each may be any pytree of float (or
        complex) arrays, Python numbers among them promoted to floats.
      step: the (largest) step for every entry; default per entry, as in :func:`derivative`.
      method: ``"central"``, ``"forward"`` or ``"backward"``.
      richardson: extrapolate over a sequence of steps.
      return_error: also return an error estimate with the gradient's structure.

    Returns:
      A function of ``*args`` returning the gradient with the structure of the differentiated
      argument (a tuple of them for tuple argnums); or ``(gradient, error)``.

    Raises:
      TypeError: f is not scalar-valued (use :func:`jacobian`), or an input is an integer array.
      ValueError: argnums is out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad import numerical
      >>> f = lambda x: x[0] ** 2 * x[1] + x[0] * x[1] ** 3
      >>> print(numerical.gradient(f)(jnp.array([1.0, 2.0])))  # [2 x1 x2 + x2^3, x1^2 + 3 x1 x2^2]
      [12. 13.]
    """
    check_method(method, "mlgrad.numerical.gradient")
    name = "mlgrad.numerical.gradient"

    def compute(like: Any, sel: Selected) -> Any:
        flat = flatten(f, sel, like)
        out = jax.eval_shape(flat.g, flat.x)
        check_scalar_output(out, name, "mlgrad.numerical.jacobian")
        if is_complex(out) and any(map(is_complex, jax.tree_util.tree_leaves(like))):
            raise TypeError(COMPLEX_GRADIENT)
        value, error = _coordinate_derivatives(
            flat.g, flat.x, method, step, bool(richardson), bool(return_error)
        )
        if return_error:
            return complex_gradient(flat, value), complex_gradient(flat, error, error=True)
        return complex_gradient(flat, value)

    run = compiled(compute)

    def grad_f(*args: Any) -> Any:
        return run(select_args(args, argnums, name))

    return grad_f


def jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    step: float | None = None,
    method: Method = "central",
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[..., Any]:
    """The Jacobian by finite differences, called like ``jax.jacfwd``.

    .. math:: J_{ij} = \\frac{\\partial f_i}{\\partial x_j} \\approx \\text{derivative of }
        t \\mapsto f_i(x + t e_j) \\text{ at } t = 0.

    Args:
      f: a function of positional arguments returning an array or a pytree of arrays (real
        or complex).
      argnums: which argument(s) to differentiate with respect to (int or tuple of ints;
        negative ones count from the end); float arrays (for complex inputs see
        :func:`derivative` and :func:`gradient`).
      step: the (largest) step for every input entry; default per entry.
      method: ``"central"``, ``"forward"`` or ``"backward"``.
      richardson: extrapolate over a sequence of steps.
      return_error: also return an error estimate with the Jacobian's structure.

    Returns:
      A function of ``*args`` returning the Jacobian in ``jax.jacfwd``'s layout: output dims
      then input dims (for pytrees, the output's structure holding the input's structure);
      or ``(jacobian, error)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad import numerical
      >>> f = lambda x: jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])
      >>> print(numerical.jacobian(f)(jnp.array([3.0, 1.0])).round(4))
      [[6. 0.]
       [2. 1.]]
    """
    check_method(method, "mlgrad.numerical.jacobian")
    name = "mlgrad.numerical.jacobian"

    def compute(like: Any, sel: Selected) -> Any:
        flat = flatten(f, sel, like)
        out_like = jax.eval_shape(flat.g, flat.x)

        def g_flat(v: jax.Array) -> jax.Array:
            return ravel_pytree(flat.g(v))[0]

        value, error = _coordinate_derivatives(
            g_flat, flat.x, method, step, bool(richardson), bool(return_error)
        )
        n, m = flat.x.size, sum(math.prod(o.shape) for o in jax.tree_util.tree_leaves(out_like))
        jac = unflatten_matrix(value.reshape(n, m).T, out_like, like)
        if return_error:
            return jac, unflatten_matrix(error.reshape(n, m).T, out_like, like)
        return jac

    run = compiled(compute)

    def jac_f(*args: Any) -> Any:
        sel = select_args(args, argnums, name)
        real_only(sel.like, "an input", name, "The Jacobian")
        return run(sel)

    return jac_f


def _hessian_flat(
    g: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    step: Any,
    richardson: bool,
    return_error: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """Hessian of g at the flat x by the four-point formula, extrapolated; shape (n, n)."""
    n = x.size
    key: Key = make_key(2, "central", richardson, return_error, x.dtype)
    steps = hessian_scheme(key[-1], richardson, return_error).steps
    h0 = first_step(x, key, step)
    rows, cols = np.triu_indices(n)  # the upper triangle, K = n (n + 1) / 2 entries
    eye = jnp.eye(n, dtype=x.dtype)
    di, dj = eye[rows] * h0[rows, None], eye[cols] * h0[cols, None]  # (K, n)
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.float64)
    a = jnp.asarray(np.repeat(steps, 4) * np.tile(signs[:, 0], steps.size), x.dtype)
    b = jnp.asarray(np.repeat(steps, 4) * np.tile(signs[:, 1], steps.size), x.dtype)
    points = x + a[:, None, None] * di + b[:, None, None] * dj  # (4N, K, n), ordered (step, sign)
    values = jax.vmap(g)(points.reshape(math.prod(points.shape[:-1]), n))
    values = values.reshape(points.shape[:-1])
    value, error = combine(values, jnp.sqrt(h0[rows] * h0[cols]), key=key, hessian=True)

    def symmetric(upper: jax.Array) -> jax.Array:
        return jnp.zeros((n, n), upper.dtype).at[rows, cols].set(upper).at[cols, rows].set(upper)

    return symmetric(value), (None if error is None else symmetric(error))


def hessian(
    f: Callable[..., jax.Array],
    argnums: int | Sequence[int] = 0,
    *,
    step: float | None = None,
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[..., Any]:
    """The Hessian of a scalar function by finite differences, called like ``jax.hessian``.

    .. math:: H_{ij} \\approx \\frac{f(x + h_i e_i + h_j e_j) - f(x + h_i e_i - h_j e_j)
        - f(x - h_i e_i + h_j e_j) + f(x - h_i e_i - h_j e_j)}{4 h_i h_j},

    whose error is even in the steps, so Richardson extrapolation applies as in
    :func:`derivative`. Costs about 2 n^2 * 14 evaluations of f for n inputs.

    Args:
      f: a function of positional arguments returning a scalar.
      argnums: which argument(s) to differentiate with respect to (int or tuple of ints;
        negative ones count from the end).
      step: the (largest) step for every input entry; default per entry.
      richardson: extrapolate over a sequence of steps.
      return_error: also return an error estimate with the Hessian's structure.

    Returns:
      A function of ``*args`` returning the Hessian in ``jax.hessian``'s layout (``x.shape +
      x.shape`` for an array x); or ``(hessian, error)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad import numerical
      >>> print(numerical.hessian(lambda v: v[0] ** 2 - v[1] ** 2)(jnp.array([1.0, 2.0])).round(4))
      [[ 2.  0.]
       [ 0. -2.]]
    """
    name = "mlgrad.numerical.hessian"

    def compute(like: Any, sel: Selected) -> Any:
        flat: Flat = flatten(f, sel, like)
        check_scalar_output(jax.eval_shape(flat.g, flat.x), name, "mlgrad.numerical.jacobian")
        value, error = _hessian_flat(flat.g, flat.x, step, bool(richardson), bool(return_error))
        hess = unflatten_matrix(value, like, like)
        if return_error:
            return hess, unflatten_matrix(error, like, like)
        return hess

    run = compiled(compute)

    def hess_f(*args: Any) -> Any:
        sel = select_args(args, argnums, name)
        real_only(sel.like, "an input", name, "The Hessian")
        return run(sel)

    return hess_f
