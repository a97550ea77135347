"""Derivatives of scalar functions: f', f^(n), partial derivatives, gradients, D_v f.

Each operator is a thin wrapper over one JAX transformation and reads like the definition
in the lecture notes (``../shared/seeds``):

* derivative           df/dx = lim_{h->0} (f(x + h) - f(x)) / h           (``jax.grad``, ``jet``)
* partial derivative   df/dx_i: the derivative along the i-th coordinate axis  (``jax.jvp``)
* gradient             [df/dx_1 ... df/dx_n], a 1 x n row vector in the notes  (``jax.grad``)
* directional deriv.   (D_v f)(x) = lim_{t->0} (f(x + t v) - f(x)) / t = grad f(x) . v
                                                                           (``jax.jvp``)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from mlgrad._series import derivatives_along
from mlgrad._validation import as_float, as_float_args, check_argnums, check_scalar_output

Layout = Literal["same", "row", "column"]
#: ``derivative`` nests ``jax.jvp`` up to this order and uses Taylor-mode AD (jet) above it.
NESTED_JVP_MAX_ORDER = 3
_LAYOUTS = ("same", "row", "column")


def _scalar_checked(f: Callable, name: str, has_aux: bool = False) -> Callable:
    """Wraps ``f`` so that a non-scalar output raises a clear TypeError at trace time."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        out = f(*args, **kwargs)
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(
                    f"{name}(..., has_aux=True) expects the function to return a pair "
                    f"(value, aux), but it returned {type(out).__name__}."
                )
            check_scalar_output(out[0], name)
        else:
            check_scalar_output(out, name)
        return out

    return checked


def _apply_layout(g: Any, layout: Layout) -> Any:
    if layout == "same":
        return g
    if not isinstance(g, jax.Array):
        raise ValueError(
            f"layout={layout!r} applies to a single array argument, but the gradient is a "
            f"{type(g).__name__} (a pytree or several arguments). Use layout='same' and "
            "flatten it yourself, e.g. with jax.flatten_util.ravel_pytree."
        )
    return g.reshape(1, -1) if layout == "row" else g.reshape(-1, 1)


def gradient(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    layout: Layout = "same",
    has_aux: bool = False,
) -> Callable[..., Any]:
    r"""The gradient of a scalar function: all its partial derivatives.

    .. math:: \nabla_x f = \frac{df}{dx} =
        \left[\frac{\partial f}{\partial x_1} \; \cdots \; \frac{\partial f}{\partial x_n}\right]

    Args:
      f: a function returning a scalar. It may take pytrees (dicts, tuples of arrays).
      argnums: which positional argument(s) to differentiate (an int or a tuple of ints).
      layout: ``"same"`` (default) returns the gradient shaped like the input, as
        ``jax.grad`` does (works on pytrees); ``"row"`` returns the notes' ``1 x n`` row
        vector and ``"column"`` an ``n x 1`` column (both for a single array argument).
      has_aux: ``f`` returns ``(value, aux)``; the result is then ``(gradient, aux)``.

    Returns:
      A function of the same arguments as ``f`` returning the gradient.

    Example:
      >>> import mlgrad
      >>> f = lambda x: x[0] ** 2 * x[1] + x[0] * x[1] ** 3
      >>> mlgrad.gradient(f, layout="row")(jnp.array([1.0, 2.0]))
      Array([[12., 13.]], dtype=float32)

    Built on ``jax.grad`` (reverse mode: about the cost of a few evaluations of ``f``).
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"gradient: layout must be one of {_LAYOUTS}, got {layout!r}.")
    grad_f = jax.grad(_scalar_checked(f, "gradient", has_aux), argnums, has_aux=has_aux)

    @functools.wraps(f)
    def gradient_of_f(*args: Any, **kwargs: Any) -> Any:
        check_argnums(argnums, len(args), "gradient")
        out = grad_f(*as_float_args(args, argnums), **kwargs)
        if has_aux:
            return _apply_layout(out[0], layout), out[1]
        return _apply_layout(out, layout)

    return gradient_of_f


def derivative(f: Callable[[Any], Any], order: int = 1) -> Callable[[Any], Any]:
    r"""The ``order``-th derivative of a function of one real variable.

    .. math:: f'(x) = \lim_{h \to 0} \frac{f(x + h) - f(x)}{h}, \qquad
              f^{(n)} = (f^{(n-1)})'

    Args:
      f: a function of one scalar. It may return a scalar or an array.
      order: any integer ``n >= 1``.

    Returns:
      A function ``x -> f^(n)(x)``, vectorised over an array of points: for ``x`` of shape
      ``s`` the result has shape ``s + f(x_i).shape``.

    Example:
      >>> mlgrad.derivative(lambda x: (2 + x**2) ** 2)(1.0)   # 8x + 4x^3
      Array(12., dtype=float32, weak_type=True)
      >>> mlgrad.derivative(jnp.sin, order=3)(jnp.array([0.0, jnp.pi]))   # -cos
      Array([-1.,  1.], dtype=float32)

    Orders up to 3 use nested forward-mode ``jax.jvp``; higher orders use Taylor-mode AD
    (``jax.experimental.jet``, one pass), falling back to nested ``jax.jvp`` for the
    primitives ``jet`` has no rule for (``tan``, ``arctan``, ``custom_jvp`` functions).
    Nesting is exact but its program grows like ``2**order``, so it gets expensive to
    compile: jet compiles faster from order 4 on, nested ``jvp`` at order 3 and below
    (``benchmarks/calculus.py`` prints the compile times side by side).
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"derivative: order must be an integer >= 1, got {order!r}.")

    def at_point(x: jax.Array) -> Any:
        if order <= NESTED_JVP_MAX_ORDER:
            d = f
            for _ in range(order):
                d = _univariate_derivative(d)
            return d(x)
        return derivatives_along(f, x, jnp.ones_like(x), order)[order]

    @functools.wraps(f)
    def nth_derivative(x: Any) -> Any:
        x = as_float(x, "derivative: the point x")
        if jnp.ndim(x) == 0:
            return at_point(x)
        flat = jax.vmap(at_point)(jnp.ravel(x))
        return flat.reshape(jnp.shape(x) + flat.shape[1:])

    return nth_derivative


def _univariate_derivative(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """x -> f'(x) for scalar x and any output shape (a forward-mode JVP along 1)."""
    return lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),))[1]


def partial_derivative(
    f: Callable[..., Any], argnum: int = 0, *, index: int | tuple[int, ...] | None = None
) -> Callable[..., Any]:
    r"""The partial derivative with respect to one scalar variable, all others held fixed.

    .. math:: \frac{\partial f}{\partial x_i} = \lim_{h \to 0}
        \frac{f(x_1, \dots, x_i + h, \dots, x_n) - f(x)}{h}

    The variable is either a whole scalar argument (``f(x, g) = 2x + 3g``: ``argnum=1``)
    or one component of an array argument (``index=i``, or a tuple index for a matrix).

    Args:
      f: any function; for a vector-valued ``f`` the result is the column
        :math:`\partial f / \partial x_i` (shaped like the output).
      argnum: the positional argument holding the variable.
      index: the component of that argument, when it is an array.

    Returns:
      A function of the same arguments as ``f``.

    Example:
      >>> f = lambda x, g: 2 * x + 3 * g
      >>> mlgrad.partial_derivative(f, 1)(1.0, 5.0)
      Array(3., dtype=float32, weak_type=True)
      >>> h = lambda v: (v[0] + 2 * v[1] ** 3) ** 2
      >>> mlgrad.partial_derivative(h, index=1)(jnp.array([1.0, 1.0]))   # 12 y^2 (x + 2y^3)
      Array(36., dtype=float32)

    Built on one ``jax.jvp`` along the unit vector :math:`e_i` (forward mode, about the
    cost of two evaluations of ``f``, whatever the number of variables).
    """
    if isinstance(argnum, bool) or not isinstance(argnum, int):
        raise TypeError(f"partial_derivative: argnum must be an int, got {argnum!r}.")

    @functools.wraps(f)
    def partial_of_f(*args: Any) -> Any:
        check_argnums(argnum, len(args), "partial_derivative")
        x = as_float(args[argnum], f"partial_derivative: argument {argnum}")
        if not isinstance(x, jax.Array):
            raise TypeError(
                f"partial_derivative: argument {argnum} is a {type(x).__name__}; it must be a "
                "scalar or an array. For a pytree argument use mlgrad.gradient."
            )
        if index is None:
            if x.ndim != 0:
                raise ValueError(
                    f"partial_derivative: argument {argnum} has shape {x.shape}; say which "
                    f"component to differentiate by, e.g. index=0 (valid: 0 to {x.size - 1})."
                )
            direction = jnp.ones_like(x)
        else:
            direction = jnp.zeros_like(x).at[_checked_index(index, x.shape)].set(1)

        def along(xi: jax.Array) -> Any:
            return f(*args[:argnum], xi, *args[argnum + 1 :])

        return jax.jvp(along, (x,), (direction,))[1]

    return partial_of_f


def _checked_index(index: int | tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    idx = (index,) if isinstance(index, int) else tuple(index)
    if len(idx) != len(shape) or any(
        isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n
        for i, n in zip(idx, shape, strict=False)
    ):
        raise ValueError(
            f"partial_derivative: index={index!r} does not name one component of an argument "
            f"of shape {shape} (give {len(shape)} integer(s), each within the shape)."
        )
    return idx


def directional_derivative(f: Callable[[Any], Any], x: Any, v: Any) -> Any:
    r"""The derivative of ``f`` at ``x`` along the direction ``v``.

    .. math:: (D_v f)(x) = \lim_{t \to 0} \frac{f(x + t v) - f(x)}{t} = \nabla f(x) \cdot v

    ``v`` is used as given (not normalised), as in the notes.

    Args:
      f: a function of one argument (an array or a pytree).
      x: the point.
      v: the direction, with the same shape (same pytree structure) as ``x``.

    Returns:
      :math:`(D_v f)(x)`, shaped like ``f(x)``.

    Example:
      >>> f = lambda p: p[0] ** 2 + p[1] ** 2
      >>> mlgrad.directional_derivative(f, jnp.array([2.0, 0.0]), jnp.array([1.0, 0.0]))
      Array(4., dtype=float32)

    Built on one ``jax.jvp``: the gradient is never materialised.
    """
    x = as_float(x, "directional_derivative: x")
    v = as_float(v, "directional_derivative: v")
    x_struct, v_struct = jax.tree_util.tree_structure(x), jax.tree_util.tree_structure(v)
    shapes = [jnp.shape(a) for a in jax.tree_util.tree_leaves(x)]
    v_shapes = [jnp.shape(a) for a in jax.tree_util.tree_leaves(v)]
    if x_struct != v_struct or shapes != v_shapes:
        raise ValueError(
            "directional_derivative: the direction v must have the same shape as x, but x has "
            f"shape {_describe(shapes, x_struct)} and v has shape {_describe(v_shapes, v_struct)}."
        )
    v = jax.tree_util.tree_map(lambda a, b: jnp.asarray(b, jnp.result_type(a)), x, v)
    return jax.jvp(f, (x,), (v,))[1]


def _describe(shapes: list[tuple[int, ...]], struct: Any) -> str:
    return str(shapes[0]) if struct.num_leaves == 1 and shapes else f"{struct} with {shapes}"
