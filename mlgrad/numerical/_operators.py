"""The operators: difference_quotient, derivative, gradient, jacobian and hessian.

Each is called exactly like its autodiff namesake in :mod:`mlgrad` (and in JAX). They differ
only in which lines they differentiate along: the real axis through each point
(:func:`derivative`), the coordinate axes of the flattened arguments (:func:`gradient`,
:func:`jacobian`), and pairs of them (:func:`hessian`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float, check_scalar_output
from mlgrad.numerical._apply import (
    Key,
    along_lines,
    combine,
    complex_step_lines,
    complex_step_size,
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
from mlgrad.numerical._schemes import (
    COMPLEX,
    Method,
    check_method,
    check_options,
    check_order,
    hessian_scheme,
)

NOT_SCALAR_TO_SCALAR = (
    "mlgrad.numerical.derivative is for scalar functions f: R -> R (applied to each point of "
    "an array), but f returned shape {shape} for a scalar input. For a function of a vector "
    "use mlgrad.numerical.gradient (scalar output) or mlgrad.numerical.jacobian."
)
COMPLEX_STEP_AT_COMPLEX_X = (
    "{name}: method='complex' steps from a real point into the complex plane, x + ih, but "
    "{what} has dtype {dtype}. For the complex derivative of a holomorphic f at a complex point "
    "use method='central' (it steps along the real axis)."
)
COMPLEX_STEP_COMPLEX_F = (
    "{name}: method='complex' needs f real-valued at real points (a real-analytic f), but f "
    "returned dtype {dtype} for real inputs: its imaginary part would mix with the step's. Use "
    "method='central', which differentiates complex-valued f."
)
NOT_COMPLEX_SAFE = (
    "{name}: method='complex' evaluates f at complex points x + ih and reads f'(x) from the "
    "imaginary part, so f must be built from operations that extend analytically to complex "
    "arguments (arithmetic, exp, log, sin, tanh, sqrt, powers, ...), but {problem}. Operations "
    "such as jnp.abs, jnp.linalg.norm, jnp.real, jnp.sign, jnp.clip, jnp.floor, jnp.mod and "
    "jax.nn.softplus are not complex-safe; write f without them or use method='central'."
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
    f: Callable[..., jax.Array],
    x: jax.typing.ArrayLike,
    h: jax.typing.ArrayLike | None = None,
    *,
    scheme: Method = "forward",
    **kwargs: Any,
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
      **kwargs: keyword arguments of f, passed to every call ``f(x + h, **kwargs)`` as they are.

    Returns:
      The difference quotient, with the shape of ``x`` (broadcast with ``h``).

    Example:
      >>> from mlgrad.numerical import difference_quotient
      >>> float(difference_quotient(lambda x: x**2, 3.0, 0.5))  # ((3.5)^2 - 3^2) / 0.5
      6.5
      >>> float(difference_quotient(lambda x, c: c * x**2, 3.0, 0.5, c=2.0))
      13.0
    """
    check_method(scheme, "difference_quotient", complex_step=False)
    if kwargs:
        f = functools.partial(f, **kwargs)
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
    f: Callable[..., jax.Array],
    order: int = 1,
    *,
    step: jax.typing.ArrayLike | None = None,
    method: Method = "central",
    accuracy: int | None = None,
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[..., Any]:
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

    Accuracy orders (``accuracy=p`` with ``richardson=False``; findiff's ``acc``, numdifftools'
    ``order``): one stencil on consecutive points whose truncation error falls as h^p --
    central ``p = 2, 4, 6, 8`` on x - mh, ..., x + mh with m = (n + 1) // 2 - 1 + p / 2,
    forward ``p = 1, ..., 8`` on x, x + h, ..., x + (n + p - 1) h (backward mirrored). The
    default step balances h^p against rounding, eps / h^n: the power of two nearest to
    ``eps^(1/(n+p)) * max(1, |x|)``; for smooth first derivatives in float64 the relative error
    is then about eps^(p/(p+1)) (3e-11 for p = 2, 1e-13 for p = 4, 1e-14 for p = 8) with
    p (central) or p + 1 (one-sided) evaluations per point.

    The complex step (``method="complex"``, first derivatives of real-analytic f only):

    .. math:: f'(x) = \\frac{\\operatorname{Im} f(x + ih)}{h} + O(h^2),

    one evaluation per point with no difference of nearby values, hence no cancellation: with
    a tiny step h (eps^2 min(1, |x|) in float64, eps min(1, |x|) in float32, as a power of two)
    f' comes out to rounding, about 1e-16 relative in float64, for features of f down to far
    below any finite difference's reach. f must be real-valued at real x and built from
    operations whose complex extension is analytic (arithmetic, powers, exp, log, sin, tanh,
    sqrt, arctan, ...; comparisons, ``jnp.where``, ``jnp.maximum``, ``jnp.sort`` and
    ``jax.nn.relu`` too, since JAX orders complex numbers by their real parts first). Not
    complex-safe: whatever treats z as the pair (Re z, Im z) instead of a number --
    ``jnp.abs``, ``jnp.linalg.norm``, ``jnp.real``, ``jnp.conj``, ``jnp.sign`` (z / |z|) and
    ``jax.nn.softplus`` (which uses abs). An f whose output turns real at a complex point, or
    that raises there (``jnp.clip``, ``jnp.floor``, ``jnp.mod``, ``erf``), is refused with a
    TypeError; one whose output stays complex, like ``x * jnp.abs(x)`` (complex step 1, truth
    2 at x = 1), gives a wrong value silently. The value is as accurate as f's complex
    implementation (JAX's ``jnp.expm1`` at x = -20 is off by 2e-8). ``step`` sets h;
    ``richardson`` does not apply, ``accuracy`` and ``return_error`` are refused.

    Args:
      f: a function of one scalar returning a scalar (real or complex); it is mapped over the
        points with ``jax.vmap``, so it need not be written elementwise. Keyword arguments of
        the returned function are passed to f as they are and not differentiated (as
        ``jax.grad`` does).
      order: the derivative order n >= 1 (1 with ``method="complex"``).
      step: with ``richardson=False`` the step h (scalar or array broadcastable to x), default
        the power of two nearest to ``eps^(1/(n+p)) * max(1, |x|)`` for a stencil of accuracy
        p (p = 2 central, 1 one-sided by default); with ``richardson=True`` the largest step
        h0 of the sequence, default ``max(1, |x|)`` rounded to a power of two; with
        ``method="complex"`` the complex step h.
      method: ``"central"``, ``"forward"``, ``"backward"`` or ``"complex"`` (the complex step).
      accuracy: with ``richardson=False``, the accuracy order p of the stencil (its truncation
        error is O(h^p)): 2, 4, 6 or 8 for central, 1 to 8 for one-sided differences. Default
        (None): 2 (central) and 1 (one-sided) on power-of-two points (the same stencils for
        n <= 2, and for n <= 4 centrally).
      richardson: extrapolate over a sequence of steps (accurate to about 1e-13 to 1e-15 for
        smooth first derivatives in float64) instead of one step (about eps^(p/(n+p))).
      return_error: also return an error estimate. Without Richardson extrapolation this
        evaluates the step 2h too and estimates the error from the two differences (a rough
        guide: two differences can agree by accident).

    Returns:
      A function of x (a point or an array of points) and keyword arguments of f, returning
      f^(n) at each point, with x's shape; or ``(value, error)`` with ``return_error=True``. A
      complex x is stepped along the real axis, which gives the complex derivative f'(z) of a
      holomorphic f (as ``jax.grad(f, holomorphic=True)``). Where no step gives a finite value
      the result and the error are NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad import numerical
      >>> print(numerical.derivative(jnp.sin)(jnp.array([0.0, jnp.pi])).round(5))
      [ 1. -1.]
      >>> value, error = numerical.derivative(jnp.abs, method="backward", return_error=True)(0.5)
      >>> float(value), bool(error < 1e-5)
      (1.0, True)
      >>> float(numerical.derivative(lambda x: x**3, method="complex")(2.0))  # exact: 3 x^2
      12.0
      >>> d = numerical.derivative(jnp.exp, accuracy=4, richardson=False)  # error O(h^4)
      >>> bool(abs(float(d(0.0)) - 1.0) < 1e-5)  # float32: about eps^(4/5) = 3e-6
      True
      >>> float(numerical.derivative(lambda x, c: c * x**2)(3.0, c=2.0).round(6))  # c held fixed
      12.0
    """
    name = "mlgrad.numerical.derivative"
    check_order(order, name)
    check_method(method, name)
    richardson, return_error = bool(richardson), bool(return_error)
    check_options(name, method, order, accuracy, richardson, return_error)

    def compute(x: jax.Array, g: Callable[[jax.Array], jax.Array]) -> Any:
        ax = jnp.abs(x)
        points_of = jax.vmap(g)

        def evaluate(t: jax.Array) -> jax.Array:
            points = x + t
            return points_of(points.reshape(points.size)).reshape(points.shape)

        if method == COMPLEX:
            h = complex_step_size(ax) if step is None else jnp.broadcast_to(step, x.shape)
            h = h.astype(x.dtype)
            return jnp.imag(evaluate(1j * h)) / h
        key = make_key(order, method, richardson, return_error, ax.dtype, accuracy)
        h0 = first_step(ax, key, step)
        value, error = differentiate_lines(evaluate, h0, key, origin=ax)
        return (value, error) if return_error else value

    def nth_derivative(x: jax.typing.ArrayLike, **kwargs: Any) -> Any:
        x = jnp.asarray(as_float(x, "x"))
        g = functools.partial(f, **kwargs) if kwargs else f
        out = jax.eval_shape(g, jax.ShapeDtypeStruct((), x.dtype))
        shape = getattr(out, "shape", None)
        if shape != ():
            raise TypeError(NOT_SCALAR_TO_SCALAR.format(shape=shape or type(out).__name__))
        if method == COMPLEX:
            if is_complex(x):
                raise TypeError(
                    COMPLEX_STEP_AT_COMPLEX_X.format(name=name, what="x", dtype=x.dtype)
                )
            check_complex_safe(g, g, jax.ShapeDtypeStruct((), x.dtype), name)
        # one program per call, f traced afresh (a new function object: jit caches traces
        # by function), as under jax.grad: see compiled()
        return jax.jit(lambda x: compute(x, g))(x)

    return nth_derivative


def check_complex_safe(
    g: Callable[[Any], Any], g_complex: Callable[[Any], Any], like: Any, name: str
) -> None:
    """f real-valued at real points (g at `like`), complex-valued with no error at complex ones
    (g_complex at `like` made complex): what the complex step needs, as far as shapes and dtypes
    can tell (jnp.abs(x) * x passes and is still wrong; see derivative)."""
    real_out = jax.tree_util.tree_leaves(jax.eval_shape(g, like))
    for leaf in real_out:
        if is_complex(leaf):
            raise TypeError(COMPLEX_STEP_COMPLEX_F.format(name=name, dtype=leaf.dtype))

    def complexified(a: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(a.shape, jnp.result_type(a.dtype, 1j))

    at_complex = jax.tree_util.tree_map(complexified, jax.eval_shape(lambda t: t, like))
    try:
        complex_out = jax.tree_util.tree_leaves(jax.eval_shape(g_complex, at_complex))
    except (TypeError, ValueError, NotImplementedError) as error:  # it ran at real points
        problem = f"f raised on a complex argument ({type(error).__name__}: {error})"
        raise TypeError(NOT_COMPLEX_SAFE.format(name=name, problem=problem)) from error
    for leaf in complex_out:
        if not is_complex(leaf):
            problem = (
                f"f returned the real dtype {leaf.dtype} for a complex argument: it discards "
                "the imaginary part (jnp.abs, jnp.real, ...)"
            )
            raise TypeError(NOT_COMPLEX_SAFE.format(name=name, problem=problem))


# --------------------------------------------------------------------------------------------
# Functions of several variables: gradient, Jacobian, Hessian
# --------------------------------------------------------------------------------------------


class _Options(NamedTuple):
    """How gradient and jacobian differentiate along each coordinate."""

    method: str
    step: Any
    accuracy: int | None
    richardson: bool
    return_error: bool


def _options(
    name: str,
    method: str,
    step: Any,
    accuracy: int | None,
    richardson: bool,
    return_error: bool,
) -> _Options:
    check_method(method, name)
    richardson, return_error = bool(richardson), bool(return_error)
    check_options(name, method, 1, accuracy, richardson, return_error)
    return _Options(method, step, accuracy, richardson, return_error)


def _coordinate_derivatives(
    g: Callable[[jax.Array], jax.Array],
    g_complex: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    options: _Options,
    name: str,
) -> tuple[jax.Array, jax.Array | None]:
    """Partial derivatives of g (flat real input x) along each coordinate: shape (n, *out).
    The complex step evaluates g_complex, g at complex points."""
    eye = jnp.eye(x.size, dtype=x.dtype)
    if options.method == COMPLEX:
        check_complex_safe(g, g_complex, jax.ShapeDtypeStruct(x.shape, x.dtype), name)
        if options.step is None:
            h = complex_step_size(jnp.abs(x))
        else:
            h = jnp.full(x.shape, options.step, x.dtype)
        return complex_step_lines(g_complex, x, eye, h), None
    o = options
    key = make_key(1, o.method, o.richardson, o.return_error, x.dtype, o.accuracy)
    h0 = first_step(x, key, options.step)
    return along_lines(g, x, eye, h0, key)


def _real_point(sel: Selected, name: str) -> None:
    """The complex step starts from real arguments."""
    parts = (sel.like,) if sel.single else sel.like
    for i, part in zip(sel.nums, parts, strict=True):
        for leaf in jax.tree_util.tree_leaves(part):
            if is_complex(leaf):
                what = f"argument {i}"
                dtype = jnp.result_type(leaf)
                raise TypeError(COMPLEX_STEP_AT_COMPLEX_X.format(name=name, what=what, dtype=dtype))


def gradient(
    f: Callable[..., jax.Array],
    argnums: int | Sequence[int] = 0,
    *,
    step: float | None = None,
    method: Method = "central",
    accuracy: int | None = None,
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[..., Any]:
    """The gradient of a scalar function by finite differences, called like ``jax.grad``.

    .. math:: \\nabla f(x)_i \\approx \\text{derivative of } t \\mapsto f(x + t e_i)
        \\text{ at } t = 0,

    one :func:`derivative` (with Richardson extrapolation by default) per input entry, i.e.
    :func:`num_evaluations` ``(1)`` evaluations of f per entry. For a complex entry
    z = a + ib of a real-valued f it is JAX's convention df/da - i df/db (two real
    derivatives). With ``method="complex"`` each entry is Im f(x + ih e_i) / h, one evaluation
    per entry, exact to rounding for real-analytic f (see :func:`derivative`).

    Args:
      f: a function of positional arguments returning a scalar.
      argnums: which argument(s) to differentiate with respect to (int or tuple of ints, as in
        ``jax.grad``; negative ones count from the end); each may be any pytree of float (or
        complex) arrays, Python numbers among them promoted to floats.
      step: the (largest) step for every entry; default per entry, as in :func:`derivative`.
      method: ``"central"``, ``"forward"``, ``"backward"`` or ``"complex"`` (the complex
        step, for real inputs and a real-analytic f).
      accuracy: the accuracy order of the stencil with ``richardson=False``, as in
        :func:`derivative`.
      richardson: extrapolate over a sequence of steps.
      return_error: also return an error estimate with the gradient's structure.

    Returns:
      A function of ``*args, **kwargs`` returning the gradient with the structure of the
      differentiated argument (a tuple of them for tuple argnums); or ``(gradient, error)``.
      Keyword arguments are passed to f as they are and not differentiated (as ``jax.grad``
      does).

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
    name = "mlgrad.numerical.gradient"
    options = _options(name, method, step, accuracy, richardson, return_error)

    def compute(like: Any, sel: Selected) -> Any:
        flat = flatten(f, sel, like)
        out = jax.eval_shape(flat.g, flat.x)
        check_scalar_output(out, name, "mlgrad.numerical.jacobian")
        if is_complex(out) and any(map(is_complex, jax.tree_util.tree_leaves(like))):
            raise TypeError(COMPLEX_GRADIENT)
        value, error = _coordinate_derivatives(flat.g, flat.g_complex, flat.x, options, name)
        if options.return_error:
            assert error is not None  # estimated when asked for
            return complex_gradient(flat, value), complex_gradient(flat, error, error=True)
        return complex_gradient(flat, value)

    run = compiled(compute)

    def grad_f(*args: Any, **kwargs: Any) -> Any:
        sel = select_args(args, argnums, name, kwargs)
        if method == COMPLEX:
            _real_point(sel, name)
        return run(sel)

    return grad_f


def jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    step: float | None = None,
    method: Method = "central",
    accuracy: int | None = None,
    richardson: bool = True,
    return_error: bool = False,
) -> Callable[..., Any]:
    """The Jacobian by finite differences, called like ``jax.jacfwd``.

    .. math:: J_{ij} = \\frac{\\partial f_i}{\\partial x_j} \\approx \\text{derivative of }
        t \\mapsto f_i(x + t e_j) \\text{ at } t = 0.

    With ``method="complex"`` column j is Im f(x + ih e_j) / h: one evaluation per input entry,
    exact to rounding for a real-analytic f (see :func:`derivative`).

    Args:
      f: a function of positional arguments returning an array or a pytree of arrays (real
        or complex).
      argnums: which argument(s) to differentiate with respect to (int or tuple of ints;
        negative ones count from the end); float arrays (for complex inputs see
        :func:`derivative` and :func:`gradient`).
      step: the (largest) step for every input entry; default per entry.
      method: ``"central"``, ``"forward"``, ``"backward"`` or ``"complex"`` (the complex
        step, for a real-analytic f).
      accuracy: the accuracy order of the stencil with ``richardson=False``, as in
        :func:`derivative`.
      richardson: extrapolate over a sequence of steps.
      return_error: also return an error estimate with the Jacobian's structure.

    Returns:
      A function of ``*args, **kwargs`` returning the Jacobian in ``jax.jacfwd``'s layout:
      output dims then input dims (for pytrees, the output's structure holding the input's
      structure); or ``(jacobian, error)``. Keyword arguments are passed to f as they are and
      not differentiated.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad import numerical
      >>> f = lambda x: jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])
      >>> print(numerical.jacobian(f)(jnp.array([3.0, 1.0])).round(4))
      [[6. 0.]
       [2. 1.]]
    """
    name = "mlgrad.numerical.jacobian"
    options = _options(name, method, step, accuracy, richardson, return_error)

    def compute(like: Any, sel: Selected) -> Any:
        flat = flatten(f, sel, like)
        out_like = jax.eval_shape(flat.g, flat.x)

        def g_flat(v: jax.Array) -> jax.Array:
            return ravel_pytree(flat.g(v))[0]

        def g_flat_complex(z: jax.Array) -> jax.Array:
            return ravel_pytree(flat.g_complex(z))[0]

        value, error = _coordinate_derivatives(g_flat, g_flat_complex, flat.x, options, name)
        n, m = flat.x.size, sum(math.prod(o.shape) for o in jax.tree_util.tree_leaves(out_like))
        jac = unflatten_matrix(value.reshape(n, m).T, out_like, like)
        if options.return_error:
            assert error is not None  # estimated when asked for
            return jac, unflatten_matrix(error.reshape(n, m).T, out_like, like)
        return jac

    run = compiled(compute)

    def jac_f(*args: Any, **kwargs: Any) -> Any:
        sel = select_args(args, argnums, name, kwargs)
        if method == COMPLEX:
            _real_point(sel, name)
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
    steps = hessian_scheme(key.spacing, richardson, return_error).steps
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
      A function of ``*args, **kwargs`` returning the Hessian in ``jax.hessian``'s layout
      (``x.shape + x.shape`` for an array x); or ``(hessian, error)``. Keyword arguments are
      passed to f as they are and not differentiated.

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
            assert error is not None  # estimated when asked for
            return hess, unflatten_matrix(error, like, like)
        return hess

    run = compiled(compute)

    def hess_f(*args: Any, **kwargs: Any) -> Any:
        sel = select_args(args, argnums, name, kwargs)
        real_only(sel.like, "an input", name, "The Hessian")
        return run(sel)

    return hess_f
