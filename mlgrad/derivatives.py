"""Derivatives of scalar functions: f', f^(n), partial derivatives, gradients, D_v f.

Each operator is a thin wrapper over one JAX transformation and reads like the definition
in the lecture notes (``../shared/seeds``):

* derivative           df/dx = lim_{h->0} (f(x + h) - f(x)) / h           (``jax.grad``, ``jet``)
* partial derivative   df/dx_i: the derivative along the i-th coordinate axis  (``jax.jvp``)
* gradient             [df/dx_1 ... df/dx_n], a 1 x n row vector in the notes  (``jax.grad``)
* directional deriv.   (D_v f)(x) = lim_{t->0} (f(x + t v) - f(x)) / t = grad f(x) . v
                                                                           (``jax.jvp``)

Keyword arguments given to the returned functions (or after the point and direction) go to
``f`` unchanged and are never differentiated, as with ``jax.grad``.
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


def _normalized_argnums(argnums: int | Sequence[int], nargs: int) -> int | tuple[int, ...]:
    """argnums with negative indices counted from the end (after :func:`check_argnums`)."""
    if isinstance(argnums, int):
        return argnums % nargs
    return tuple(i % nargs for i in argnums)


def _differentiated(args: tuple, argnums: int | Sequence[int]) -> Any:
    """The differentiated argument, or the tuple of them for a tuple ``argnums``."""
    return args[argnums] if isinstance(argnums, int) else tuple(args[i] for i in argnums)


def _with_differentiated(args: tuple, argnums: int | Sequence[int], new: Any) -> tuple:
    """``args`` with the differentiated argument(s) replaced by ``new``."""
    out = list(args)
    if isinstance(argnums, int):
        out[argnums] = new
    else:
        for i, a in zip(argnums, new, strict=True):
            out[i] = a
    return tuple(out)


def _point_and_function(
    f: Callable, args: tuple, argnums: int | Sequence[int], kwargs: dict, name: str
) -> tuple[Any, Callable[[Any], Any], int | tuple[int, ...]]:
    """Splits ``f(*args, **kwargs)`` into the point ``p = args[argnums]`` and ``g(p)``.

    The other arguments and the keyword arguments are held fixed (not differentiated).
    The differentiated argument(s) are promoted to floats; the first is called ``x``.
    """
    check_argnums(argnums, len(args), name)
    nums = _normalized_argnums(argnums, len(args))
    args = tuple(
        as_float(a, f"{name}: " + ("x" if i == 0 else f"argument {i}"))
        if i in ((nums,) if isinstance(nums, int) else nums)
        else a
        for i, a in enumerate(args)
    )

    def g(p: Any) -> Any:
        return f(*_with_differentiated(args, nums, p), **kwargs)

    return _differentiated(args, nums), g, nums


def _describe_argnums(argnums: int | tuple[int, ...]) -> str:
    if argnums == 0:
        return "x"
    if isinstance(argnums, int):
        return f"argument {argnums}"
    return f"the tuple of arguments {argnums}"


def _matching_tangent(p: Any, v: Any, name: str, what: str, target: str) -> Any:
    """``v`` checked to have the pytree structure and shapes of ``p``, cast to its dtypes."""
    v = as_float(v, f"{name}: {what}")
    p_struct, v_struct = jax.tree_util.tree_structure(p), jax.tree_util.tree_structure(v)
    shapes = [jnp.shape(a) for a in jax.tree_util.tree_leaves(p)]
    v_shapes = [jnp.shape(a) for a in jax.tree_util.tree_leaves(v)]
    if p_struct != v_struct or shapes != v_shapes:
        raise ValueError(
            f"{name}: the {what} must have the same shape as {target}, but {target} has shape "
            f"{_describe(shapes, p_struct)} and {what.split()[-1]} has shape "
            f"{_describe(v_shapes, v_struct)}."
            + (" Give one entry per differentiated argument." if "tuple" in target else "")
        )
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(b, jnp.result_type(a)), p, v)


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
    holomorphic: bool = False,
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
      holomorphic: ``f`` is complex-analytic in complex inputs; the result is the complex
        derivative :math:`f'(z)` (no conjugation), as ``jax.grad(..., holomorphic=True)``.

    Returns:
      A function of the same arguments as ``f`` returning the gradient. Keyword arguments
      it is called with go to ``f`` and are not differentiated.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: x[0] ** 2 * x[1] + x[0] * x[1] ** 3
      >>> mlgrad.gradient(f, layout="row")(jnp.array([1.0, 2.0]))
      Array([[12., 13.]], dtype=float32)

    Built on ``jax.grad`` (reverse mode: about the cost of a few evaluations of ``f``).
    """
    value_and_gradient_of_f = _value_and_gradient(
        f, argnums, layout, has_aux, holomorphic, "gradient"
    )

    @functools.wraps(f)
    def gradient_of_f(*args: Any, **kwargs: Any) -> Any:
        value, grad = value_and_gradient_of_f(*args, **kwargs)
        return (grad, value[1]) if has_aux else grad

    return gradient_of_f


def value_and_gradient(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    layout: Layout = "same",
    has_aux: bool = False,
    holomorphic: bool = False,
) -> Callable[..., Any]:
    r"""Like :func:`gradient`, but returns ``(f(x), gradient)`` from the same single pass.

    The arguments are :func:`gradient`'s (``layout`` included). With ``has_aux=True`` the
    result is ``((value, aux), gradient)``, as ``jax.value_and_grad`` gives.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> mlgrad.value_and_gradient(lambda x: jnp.sum(x**2), layout="row")(jnp.array([1.0, 2.0]))
      (Array(5., dtype=float32), Array([[2., 4.]], dtype=float32))

    Built on ``jax.value_and_grad``: one forward and one backward pass.
    """
    return _value_and_gradient(f, argnums, layout, has_aux, holomorphic, "value_and_gradient")


def _value_and_gradient(
    f: Callable, argnums: Any, layout: Layout, has_aux: bool, holomorphic: bool, name: str
) -> Callable[..., tuple[Any, Any]]:
    if layout not in _LAYOUTS:
        raise ValueError(f"{name}: layout must be one of {_LAYOUTS}, got {layout!r}.")
    value_and_grad_f = jax.value_and_grad(
        _scalar_checked(f, name, has_aux), argnums, has_aux=has_aux, holomorphic=holomorphic
    )

    @functools.wraps(f)
    def value_and_gradient_of_f(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        check_argnums(argnums, len(args), name)
        nums = _normalized_argnums(argnums, len(args))
        value, grad = value_and_grad_f(*as_float_args(args, nums), **kwargs)
        return value, _apply_layout(grad, layout)

    return value_and_gradient_of_f


def derivative(
    f: Callable[..., Any], order: int = 1, *, holomorphic: bool = False
) -> Callable[..., Any]:
    r"""The ``order``-th derivative of a function of one real (or complex) variable.

    .. math:: f'(x) = \lim_{h \to 0} \frac{f(x + h) - f(x)}{h}, \qquad
              f^{(n)} = (f^{(n-1)})'

    Args:
      f: a function of one scalar. It may return a scalar or an array.
      order: any integer ``n >= 1``.
      holomorphic: ``f`` is complex-analytic and the points are complex: the result is the
        complex derivative :math:`f^{(n)}(z)`. Forward mode along :math:`h = 1` computes it
        for a complex point either way; the flag states the intent and rejects real points,
        as ``jax.grad(..., holomorphic=True)`` does.

    Returns:
      A function ``x -> f^(n)(x)``, vectorised over an array of points: for ``x`` of shape
      ``s`` the result has shape ``s + f(x_i).shape``. Keyword arguments it is called with
      go to ``f`` and are not differentiated (``derivative(f)(x, a=2.0)`` is
      :math:`\partial f(x, a) / \partial x`).

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> mlgrad.derivative(lambda x: (2 + x**2) ** 2)(1.0)   # 8x + 4x^3
      Array(12., dtype=float32, weak_type=True)
      >>> mlgrad.derivative(jnp.sin, order=3)(jnp.array([0.0, jnp.pi]))   # -cos
      Array([-1.,  1.], dtype=float32)
      >>> mlgrad.derivative(lambda x, a: a * x**2)(3.0, a=0.5)   # a is held fixed
      Array(3., dtype=float32, weak_type=True)
      >>> mlgrad.derivative(lambda z: z**3, holomorphic=True)(1j)   # 3 z^2
      Array(-3.+0.j, dtype=complex64, weak_type=True)

    Orders up to 3 use nested forward-mode ``jax.jvp``; higher orders use Taylor-mode AD
    (``jax.experimental.jet``, one pass), falling back to nested ``jax.jvp`` for the
    primitives ``jet`` has no rule for (``tan``, ``arctan``, ``custom_jvp`` functions).
    Nesting is exact but its program grows like ``2**order``, so it gets expensive to
    compile: jet compiles faster from order 4 on, nested ``jvp`` at order 3 and below
    (``benchmarks/calculus.py`` prints the compile times side by side).
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"derivative: order must be an integer >= 1, got {order!r}.")

    @functools.wraps(f)
    def nth_derivative(x: Any, **kwargs: Any) -> Any:
        x = as_float(x, "derivative: the point x")
        if holomorphic and not jnp.issubdtype(jnp.result_type(x), jnp.complexfloating):
            raise TypeError(
                f"derivative(..., holomorphic=True) needs a complex point, but x has dtype "
                f"{jnp.result_type(x)}. Pass e.g. jnp.asarray(x, jnp.complex64), or drop "
                "holomorphic=True for a real function."
            )
        g = functools.partial(f, **kwargs) if kwargs else f

        def at_point(x: jax.Array) -> Any:
            if order <= NESTED_JVP_MAX_ORDER:
                d = g
                for _ in range(order):
                    d = _univariate_derivative(d)
                return d(x)
            return derivatives_along(g, x, jnp.ones_like(x), order)[order]

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
      A function of the same arguments as ``f``. Keyword arguments it is called with go to
      ``f`` and are not differentiated.

    Example:
      >>> import jax.numpy as jnp, mlgrad
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
    def partial_of_f(*args: Any, **kwargs: Any) -> Any:
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
            return f(*args[:argnum], xi, *args[argnum + 1 :], **kwargs)

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


def directional_derivative(
    f: Callable[..., Any],
    x: Any,
    v: Any,
    *args: Any,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    **kwargs: Any,
) -> Any:
    r"""The derivative of ``f`` at ``x`` along the direction ``v``.

    .. math:: (D_v f)(x) = \lim_{t \to 0} \frac{f(x + t v) - f(x)}{t} = \nabla f(x) \cdot v

    ``v`` is used as given (not normalised), as in the notes. For a vector-valued ``f`` this
    is the Jacobian-vector product :math:`J(x) v`.

    Args:
      f: a function; it is called as ``f(x, *args, **kwargs)``.
      x: the point (an array or a pytree).
      v: the direction, with the same shape (same pytree structure) as the differentiated
        argument: ``x`` by default; a tuple of directions for a tuple ``argnums``.
      *args: further positional arguments of ``f``, held fixed unless ``argnums`` names them.
      argnums: which of ``f``'s positional arguments ``(x, *args)`` move along ``v``.
      has_aux: ``f`` returns ``(value, aux)``; the result is then ``(D_v f, aux)``, with
        ``aux`` evaluated at ``x``.
      **kwargs: keyword arguments of ``f``, held fixed (never differentiated).

    Returns:
      :math:`(D_v f)(x)`, shaped like ``f(x)``; ``(D_v f(x), aux)`` with ``has_aux=True``.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda p: p[0] ** 2 + p[1] ** 2
      >>> mlgrad.directional_derivative(f, jnp.array([2.0, 0.0]), jnp.array([1.0, 0.0]))
      Array(4., dtype=float32)
      >>> loss = lambda w, x, y: (w @ x - y) ** 2   # along w; x and y held fixed
      >>> mlgrad.directional_derivative(loss, jnp.ones(2), jnp.array([1.0, 0.0]), jnp.ones(2), 0.0)
      Array(4., dtype=float32)

    Built on one ``jax.jvp``: the gradient is never materialised.
    """
    name = "directional_derivative"
    p, g, nums = _point_and_function(f, (x, *args), argnums, kwargs, name)
    v = _matching_tangent(p, v, name, "direction v", _describe_argnums(nums))
    if has_aux:
        g = _pair_checked(g, name)
        _, dv, aux = jax.jvp(g, (p,), (v,), has_aux=True)
        return dv, aux
    return jax.jvp(g, (p,), (v,))[1]


def _pair_checked(f: Callable, name: str) -> Callable:
    """Wraps ``f`` so that a result that is not an ``(output, aux)`` pair raises clearly."""

    def checked(*args: Any) -> Any:
        out = f(*args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                f"{name}(..., has_aux=True) expects the function to return a pair "
                f"(output, aux), but it returned {type(out).__name__}."
            )
        return out

    return checked


def _describe(shapes: list[tuple[int, ...]], struct: Any) -> str:
    """A single array's shape, or a pytree's structure and leaf shapes."""
    if jax.tree_util.treedef_is_leaf(struct) and shapes:
        return str(shapes[0])
    return f"{struct} with {shapes}"
