"""Jacobians, Hessians and the chain rule: derivatives of vector- and matrix-valued maps.

* Jacobian     J_ij = df_i / dx_j, an m x n matrix for f: R^n -> R^m  (``jacfwd`` / ``jacrev``)
* matrix by matrix  dK/dB for K = f(B): a 4-D tensor, or its (mn) x (pq) matrix (``flatten=True``)
* Hessian      H_ij = d^2 f / dx_i dx_j, the Jacobian of the gradient     (forward over reverse)
* chain rule   d(f o g)/dx = (df/dg)(dg/dx): a product of stage Jacobians
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float, as_float_args, check_argnums, flat_size
from mlgrad.derivatives import _scalar_checked

Mode = Literal["auto", "forward", "reverse"]
_MODES = ("auto", "forward", "reverse")


def _differentiated(args: tuple, argnums: int | Sequence[int]) -> Any:
    return args[argnums] if isinstance(argnums, int) else tuple(args[i] for i in argnums)


def _with_differentiated(args: tuple, argnums: int | Sequence[int], new: Any) -> tuple:
    out = list(args)
    if isinstance(argnums, int):
        out[argnums] = new
    else:
        for i, a in zip(argnums, new, strict=True):
            out[i] = a
    return tuple(out)


def _value_and_jacobian(
    f: Callable, args: tuple, kwargs: dict, argnums: Any, mode: Mode, flatten: bool, has_aux: bool
) -> tuple[Any, Any, Any]:
    """(f(args), its Jacobian, aux) from one forward-or-reverse pass."""

    def split(out: Any) -> tuple[Any, Any]:
        return out if has_aux else (out, None)

    x = _differentiated(args, argnums)
    if mode == "auto":
        out_shape = jax.eval_shape(lambda *a: split(f(*a, **kwargs))[0], *args)
        mode = "forward" if flat_size(x) <= flat_size(out_shape) else "reverse"
    jac_transform = jax.jacfwd if mode == "forward" else jax.jacrev

    if flatten:
        flat_x, unravel = ravel_pytree(x)

        def flat_f(flat: jax.Array) -> tuple[jax.Array, Any]:
            y, aux = split(f(*_with_differentiated(args, argnums, unravel(flat)), **kwargs))
            return ravel_pytree(y)[0], (y, aux)

        jac, (y, aux) = jac_transform(flat_f, has_aux=True)(flat_x)
        return y, jac, aux

    def f_with_value(*a: Any) -> tuple[Any, Any]:
        y, aux = split(f(*a, **kwargs))
        return y, (y, aux)

    jac, (y, aux) = jac_transform(f_with_value, argnums, has_aux=True)(*args)
    return y, jac, aux


def _checked_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"jacobian: mode must be one of {_MODES}, got {mode!r}.")


def jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    mode: Mode = "auto",
    flatten: bool = False,
    has_aux: bool = False,
) -> Callable[..., Any]:
    r"""The Jacobian: all first-order partial derivatives of a vector-valued function.

    .. math:: J = \frac{df}{dx} = \begin{bmatrix}
        \partial f_1/\partial x_1 & \cdots & \partial f_1/\partial x_n \\
        \vdots & & \vdots \\
        \partial f_m/\partial x_1 & \cdots & \partial f_m/\partial x_n \end{bmatrix}

    Args:
      f: any function of arrays or pytrees.
      argnums: which positional argument(s) to differentiate.
      mode: ``"forward"`` (``jax.jacfwd``: one JVP per input entry), ``"reverse"``
        (``jax.jacrev``: one VJP per output entry) or ``"auto"`` (default): forward when
        the input has at most as many entries as the output, reverse otherwise.
      flatten: return the 2-D matrix of the flattened output by the flattened input(s),
        as the notes do when they view a matrix in R^{m x n} as a vector in R^{mn}.
      has_aux: ``f`` returns ``(value, aux)``; the result is then ``(jacobian, aux)``.

    Returns:
      A function of the same arguments as ``f``. The Jacobian's shape is the output shape
      followed by the input shape (JAX's convention), e.g. ``(2, 2, 2, 3)`` for a 2 x 2
      function of a 2 x 3 matrix, or ``(4, 6)`` with ``flatten=True``.

    Example:
      >>> f = lambda x: jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])
      >>> mlgrad.jacobian(f)(jnp.array([3.0, 1.0]))
      Array([[6., 0.],
             [2., 1.]], dtype=float32)
    """
    _checked_mode(mode)

    @functools.wraps(f)
    def jacobian_of_f(*args: Any, **kwargs: Any) -> Any:
        check_argnums(argnums, len(args), "jacobian")
        args = as_float_args(args, argnums)
        _, jac, aux = _value_and_jacobian(f, args, kwargs, argnums, mode, flatten, has_aux)
        return (jac, aux) if has_aux else jac

    return jacobian_of_f


def value_and_jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    mode: Mode = "auto",
    flatten: bool = False,
    has_aux: bool = False,
) -> Callable[..., Any]:
    """Like :func:`jacobian`, but returns ``(f(x), J)`` from the same single pass.

    With ``has_aux=True`` the result is ``((value, aux), jacobian)``, as ``jax.value_and_grad``.

    Example:
      >>> y, J = mlgrad.value_and_jacobian(jnp.sin)(jnp.array([0.0, 1.0]))
    """
    _checked_mode(mode)

    @functools.wraps(f)
    def value_and_jacobian_of_f(*args: Any, **kwargs: Any) -> Any:
        check_argnums(argnums, len(args), "value_and_jacobian")
        args = as_float_args(args, argnums)
        y, jac, aux = _value_and_jacobian(f, args, kwargs, argnums, mode, flatten, has_aux)
        return ((y, aux), jac) if has_aux else (y, jac)

    return value_and_jacobian_of_f


def hessian(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, *, flatten: bool = False
) -> Callable[..., Any]:
    r"""The Hessian of a scalar function: the Jacobian of its gradient.

    .. math:: H_{ij} = \frac{\partial^2 f}{\partial x_i \partial x_j}

    Args:
      f: a function returning a scalar.
      argnums: which positional argument(s) to differentiate.
      flatten: return the ``n x n`` matrix over the flattened input(s).

    Returns:
      A function returning an array of shape ``x.shape + x.shape`` (or ``(n, n)``).

    Example:
      >>> mlgrad.hessian(lambda p: p[0] ** 2 - p[1] ** 2)(jnp.array([1.0, 1.0]))
      Array([[ 2.,  0.],
             [ 0., -2.]], dtype=float32)

    Forward over reverse (``jax.jacfwd`` of ``jax.grad``), as ``jax.hessian``.
    """
    grad_f = jax.grad(_scalar_checked(f, "hessian"), argnums)
    return jacobian(grad_f, argnums, mode="forward", flatten=flatten)


def hvp(f: Callable[[Any], Any], x: Any, v: Any) -> Any:
    r"""The Hessian-vector product :math:`H(x) v`, without ever building :math:`H`.

    .. math:: H(x)\,v = \frac{d}{dt} \nabla f(x + t v) \Big|_{t=0}

    Args:
      f: a scalar function of one argument (array or pytree).
      x: the point.
      v: a vector with the same shape (pytree structure) as ``x``.

    Returns:
      :math:`H(x) v`, shaped like ``x``.

    Example:
      >>> mlgrad.hvp(lambda p: p[0] ** 2 - p[1] ** 2, jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0]))
      Array([ 2., -2.], dtype=float32)

    Forward over reverse (one ``jax.jvp`` of ``jax.grad``): about the cost of a gradient.
    """
    x, v = as_float(x, "hvp: x"), as_float(v, "hvp: v")
    x_shapes = jax.tree_util.tree_map(jnp.shape, x)
    v_shapes = jax.tree_util.tree_map(jnp.shape, v)
    if x_shapes != v_shapes:
        raise ValueError(
            f"hvp: the vector v must have the same shape as x, but x has shape {x_shapes} "
            f"and v has shape {v_shapes}."
        )
    grad_f = jax.grad(_scalar_checked(f, "hvp"))
    return jax.jvp(grad_f, (x,), (v,))[1]


class ChainRule(NamedTuple):
    """The chain rule, evaluated: the stage Jacobians and their product.

    Attributes:
      value: the composition's value at the point.
      jacobians: the stage Jacobians as 2-D matrices (flattened output by flattened
        input), outermost stage first, each evaluated at that stage's input point.
      product: their matrix product, equal to ``jacobian(composition, flatten=True)(x)``.
    """

    value: Any
    jacobians: tuple[jax.Array, ...]
    product: jax.Array


def chain_rule(*fs: Callable[[Any], Any]) -> Callable[[Any], ChainRule]:
    r"""The chain rule for :math:`f_1 \circ f_2 \circ \cdots \circ f_k`, stage by stage.

    .. math:: \frac{d}{dx} f_1(f_2(\cdots f_k(x))) =
        \frac{\partial f_1}{\partial f_2} \frac{\partial f_2}{\partial f_3} \cdots
        \frac{\partial f_k}{\partial x}

    Args:
      *fs: the stages, outermost first (as written in ``f_1(f_2(x))``). Each takes one
        argument (an array or a pytree).

    Returns:
      A function ``x -> ChainRule(value, jacobians, product)``.

    Example (the notes' ``df/dt`` for ``f(x) = x_1^2 + 2 x_2``, ``x = (sin t, cos t)``):
      >>> f = lambda x: x[0] ** 2 + 2 * x[1]
      >>> x_of_t = lambda t: jnp.array([jnp.sin(t), jnp.cos(t)])
      >>> steps = mlgrad.chain_rule(f, x_of_t)(1.0)
      >>> steps.jacobians[0].shape, steps.jacobians[1].shape, steps.product.shape
      ((1, 2), (2, 1), (1, 1))
    """
    if not fs:
        raise ValueError("chain_rule: give at least one function, outermost first.")
    for i, f in enumerate(fs):
        if not callable(f):
            raise TypeError(f"chain_rule: stage {i} is a {type(f).__name__}, not a function.")

    def evaluate(x: Any) -> ChainRule:
        value, jacobians = as_float(x, "chain_rule: x"), []
        for f in reversed(fs):
            value, jac = value_and_jacobian(f, flatten=True)(value)
            jacobians.insert(0, jac)
        return ChainRule(value, tuple(jacobians), functools.reduce(jnp.matmul, jacobians))

    return evaluate
