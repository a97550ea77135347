"""Jacobians, Hessians and the chain rule: derivatives of vector- and matrix-valued maps.

* Jacobian     J_ij = df_i / dx_j, an m x n matrix for f: R^n -> R^m  (``jacfwd`` / ``jacrev``)
* matrix by matrix  dK/dB for K = f(B): a 4-D tensor, or its (mn) x (pq) matrix (``flatten=True``)
* Hessian      H_ij = d^2 f / dx_i dx_j, the Jacobian of the gradient     (forward over reverse)
* products     H v, u^T J and the Gauss-Newton J^T H J v, never building H or J
                                                       (``jvp`` of ``grad``, ``vjp``, ``linearize``)
* chain rule   d(f o g)/dx = (df/dg)(dg/dx): a product of stage Jacobians
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float, as_float_args, check_argnums, flat_size
from mlgrad.derivatives import (
    _describe_argnums,
    _differentiated,
    _matching_tangent,
    _normalized_argnums,
    _pair_checked,
    _point_and_function,
    _scalar_checked,
    _with_differentiated,
)

Mode = Literal["auto", "forward", "reverse"]
_MODES = ("auto", "forward", "reverse")


def _value_and_jacobian(
    f: Callable,
    args: tuple,
    kwargs: dict,
    argnums: Any,
    mode: Mode,
    flatten: bool,
    has_aux: bool,
    holomorphic: bool = False,
) -> tuple[Any, Any, Any]:
    """(f(args), its Jacobian, aux) from one forward-or-reverse pass."""

    def split(out: Any) -> tuple[Any, Any]:
        return out if has_aux else (out, None)

    x = _differentiated(args, argnums)
    if mode == "auto":
        out_shape = jax.eval_shape(lambda *a: split(f(*a, **kwargs))[0], *args)
        mode = "forward" if flat_size(x) <= flat_size(out_shape) else "reverse"
    jac_transform = functools.partial(
        jax.jacfwd if mode == "forward" else jax.jacrev, holomorphic=holomorphic
    )

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
    holomorphic: bool = False,
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
      holomorphic: ``f`` is complex-analytic in complex inputs; the entries are the complex
        derivatives :math:`\partial f_i / \partial z_j` (``jax.jacfwd``/``jacrev``'s flag).

    Returns:
      A function of the same arguments as ``f``. The Jacobian's shape is the output shape
      followed by the input shape (JAX's convention), e.g. ``(2, 2, 2, 3)`` for a 2 x 2
      function of a 2 x 3 matrix, or ``(4, 6)`` with ``flatten=True``. Keyword arguments it
      is called with go to ``f`` and are not differentiated.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])
      >>> mlgrad.jacobian(f)(jnp.array([3.0, 1.0]))
      Array([[6., 0.],
             [2., 1.]], dtype=float32)
    """
    _checked_mode(mode)

    @functools.wraps(f)
    def jacobian_of_f(*args: Any, **kwargs: Any) -> Any:
        check_argnums(argnums, len(args), "jacobian")
        nums = _normalized_argnums(argnums, len(args))
        args = as_float_args(args, nums)
        _, jac, aux = _value_and_jacobian(
            f, args, kwargs, nums, mode, flatten, has_aux, holomorphic
        )
        return (jac, aux) if has_aux else jac

    return jacobian_of_f


def value_and_jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    mode: Mode = "auto",
    flatten: bool = False,
    has_aux: bool = False,
    holomorphic: bool = False,
) -> Callable[..., Any]:
    """Like :func:`jacobian`, but returns ``(f(x), J)`` from the same single pass.

    With ``has_aux=True`` the result is ``((value, aux), jacobian)``, as ``jax.value_and_grad``.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> y, J = mlgrad.value_and_jacobian(jnp.sin)(jnp.array([0.0, 1.0]))
    """
    _checked_mode(mode)

    @functools.wraps(f)
    def value_and_jacobian_of_f(*args: Any, **kwargs: Any) -> Any:
        check_argnums(argnums, len(args), "value_and_jacobian")
        nums = _normalized_argnums(argnums, len(args))
        args = as_float_args(args, nums)
        y, jac, aux = _value_and_jacobian(
            f, args, kwargs, nums, mode, flatten, has_aux, holomorphic
        )
        return ((y, aux), jac) if has_aux else (y, jac)

    return value_and_jacobian_of_f


def hessian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    flatten: bool = False,
    has_aux: bool = False,
    holomorphic: bool = False,
) -> Callable[..., Any]:
    r"""The Hessian: all second-order partial derivatives, the Jacobian of the gradient.

    .. math:: H_{ij} = \frac{\partial^2 f}{\partial x_i \partial x_j}, \qquad
              \text{and for } f: \mathbb{R}^n \to \mathbb{R}^m: \quad
              H_{kij} = \frac{\partial^2 f_k}{\partial x_i \partial x_j}

    Args:
      f: a function of arrays or pytrees; a scalar output gives the usual Hessian, a
        vector- or matrix-valued one gives one Hessian per output entry (as ``jax.hessian``).
      argnums: which positional argument(s) to differentiate; for a tuple the result is
        the nested tuple of blocks ``H[i][j]`` (d/d arg i, then d/d arg j), as
        ``jax.hessian``.
      flatten: return the ``n x n`` matrix over the flattened input(s); for a non-scalar
        output, the ``m x n x n`` stack of them over the flattened output.
      has_aux: ``f`` returns ``(output, aux)``; the result is then ``(hessian, aux)``.
      holomorphic: ``f`` is complex-analytic in complex inputs (complex second derivatives).

    Returns:
      A function of the same arguments as ``f`` returning an array of shape
      ``f(x).shape + x.shape + x.shape`` (``x.shape + x.shape`` for a scalar ``f``), or
      ``(n, n)`` / ``(m, n, n)`` with ``flatten=True``. Keyword arguments it is called with
      go to ``f`` and are not differentiated.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> mlgrad.hessian(lambda p: p[0] ** 2 - p[1] ** 2)(jnp.array([1.0, 1.0]))
      Array([[ 2.,  0.],
             [ 0., -2.]], dtype=float32)
      >>> mlgrad.hessian(lambda p: jnp.array([p[0] * p[1], p[1] ** 3]))(jnp.array([1.0, 2.0]))
      Array([[[ 0.,  1.],
              [ 1.,  0.]],
      <BLANKLINE>
             [[ 0.,  0.],
              [ 0., 12.]]], dtype=float32)

    Forward over reverse (``jax.jacfwd`` of ``jax.jacrev``), as ``jax.hessian``.
    """

    @functools.wraps(f)
    def hessian_of_f(*args: Any, **kwargs: Any) -> Any:
        x, g, _ = _point_and_function(f, args, argnums, kwargs, "hessian")

        def output_and_aux(p: Any) -> tuple[Any, Any]:
            out = _pair_checked(g, "hessian")(p) if has_aux else (g(p), None)
            _check_differentiable_output(out[0], "hessian")
            return out

        if flatten:
            x, unravel = ravel_pytree(x)
            unflat = output_and_aux

            def output_and_aux(p: Any) -> tuple[Any, Any]:
                y, aux = unflat(unravel(p))
                return (y if _is_scalar(y) else ravel_pytree(y)[0]), aux

        jac = jax.jacrev(output_and_aux, has_aux=True, holomorphic=holomorphic)
        hess, aux = jax.jacfwd(jac, has_aux=True, holomorphic=holomorphic)(x)
        return (hess, aux) if has_aux else hess

    return hessian_of_f


def _is_scalar(y: Any) -> bool:
    """A single scalar (not a pytree holding one)."""
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(y)) and jnp.ndim(y) == 0


def _check_differentiable_output(y: Any, name: str) -> None:
    """Raises when ``f`` returned something that has no derivative (non-arrays, integers)."""
    for leaf in jax.tree_util.tree_leaves(y):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic | float | complex | int):
            raise TypeError(
                f"{name}: the function returned a {type(leaf).__name__}; it must return an "
                "array (or a pytree of arrays)."
            )
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) or isinstance(leaf, int):
            raise TypeError(
                f"{name}: the function returned an output of dtype {jnp.result_type(leaf)}; "
                "derivatives are only defined for floating-point (or complex) outputs. Cast "
                "it, e.g. jnp.asarray(y, jnp.float32)."
            )


def hvp(
    f: Callable[..., Any],
    x: Any,
    v: Any,
    *args: Any,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    **kwargs: Any,
) -> Any:
    r"""The Hessian-vector product :math:`H(x) v`, without ever building :math:`H`.

    .. math:: H(x)\,v = \frac{d}{dt} \nabla f(x + t v) \Big|_{t=0}

    Args:
      f: a scalar function, called as ``f(x, *args, **kwargs)``.
      x: the point (an array or a pytree, e.g. a dict of parameters).
      v: a vector with the same shape (pytree structure) as the differentiated argument:
        ``x`` by default; a tuple of vectors, one per argument, for a tuple ``argnums``.
      *args: further positional arguments of ``f`` (data, targets), held fixed unless
        ``argnums`` names them: ``hvp(loss, params, v, x, y)`` for ``loss(params, x, y)``.
      argnums: which of ``f``'s positional arguments ``(x, *args)`` the Hessian is over.
      has_aux: ``f`` returns ``(value, aux)``; the result is then ``(H v, aux)``, with
        ``aux`` evaluated at ``x``.
      holomorphic: ``f`` is complex-analytic in complex inputs.
      **kwargs: keyword arguments of ``f``, held fixed (never differentiated).

    Returns:
      :math:`H(x) v`, shaped like ``v`` (a tuple for a tuple ``argnums``: row block ``i`` of
      ``H`` times ``v``); ``(H v, aux)`` with ``has_aux=True``.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> mlgrad.hvp(lambda p: p[0] ** 2 - p[1] ** 2, jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0]))
      Array([ 2., -2.], dtype=float32)
      >>> loss = lambda w, x, y: jnp.sum((x @ w - y) ** 2)   # H = 2 x^T x over w
      >>> x, y = jnp.array([[1.0, 2.0]]), jnp.array([0.0])
      >>> mlgrad.hvp(loss, jnp.zeros(2), jnp.array([1.0, 0.0]), x, y)
      Array([2., 4.], dtype=float32)

    Forward over reverse (one ``jax.jvp`` of ``jax.grad``): about the cost of a gradient.
    """
    p, g, nums = _point_and_function(f, (x, *args), argnums, kwargs, "hvp")
    v = _matching_tangent(p, v, "hvp", "vector v", _describe_argnums(nums))
    grad_g = jax.grad(_scalar_checked(g, "hvp", has_aux), has_aux=has_aux, holomorphic=holomorphic)
    if has_aux:
        _, hv, aux = jax.jvp(grad_g, (p,), (v,), has_aux=True)
        return hv, aux
    return jax.jvp(grad_g, (p,), (v,))[1]


def vector_jacobian_product(
    f: Callable[..., Any],
    x: Any,
    u: Any,
    *args: Any,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    **kwargs: Any,
) -> Any:
    r"""The vector-Jacobian product :math:`u^\top J(x)`, without ever building :math:`J`.

    .. math:: u^\top J(x) = \nabla_x \big(u \cdot f(x)\big), \qquad
              (u^\top J)_j = \sum_i u_i \frac{\partial f_i}{\partial x_j}

    The reverse-mode counterpart of :func:`directional_derivative` (:math:`J v`); a
    gradient is the case of a scalar ``f`` and ``u = 1``.

    Args:
      f: any function, called as ``f(x, *args, **kwargs)``.
      x: the point (an array or a pytree).
      u: a cotangent with the same shape (pytree structure) as ``f``'s output.
      *args: further positional arguments of ``f``, held fixed unless ``argnums`` names them.
      argnums: which of ``f``'s positional arguments ``(x, *args)`` to differentiate.
      has_aux: ``f`` returns ``(output, aux)``; the result is then ``(u^T J, aux)``.
      **kwargs: keyword arguments of ``f``, held fixed (never differentiated).

    Returns:
      :math:`u^\top J(x)`, shaped like the differentiated argument (a tuple of them for a
      tuple ``argnums``); ``(u^T J, aux)`` with ``has_aux=True``. For many ``u`` at one
      point, ``jax.vmap`` over ``u``: ``f`` is evaluated once.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])   # J = [[6, 0], [2, 1]]
      >>> mlgrad.vector_jacobian_product(f, jnp.array([3.0, 1.0]), jnp.array([1.0, 1.0]))
      Array([8., 1.], dtype=float32)

    Built on one ``jax.vjp`` (reverse mode: about the cost of a gradient).
    """
    name = "vector_jacobian_product"
    p, g, _ = _point_and_function(f, (x, *args), argnums, kwargs, name)
    if has_aux:
        y, pullback, aux = jax.vjp(_pair_checked(g, name), p, has_aux=True)
    else:
        y, pullback = jax.vjp(g, p)
    u = _matching_tangent(y, u, name, "cotangent u", "f's output")
    (ut_j,) = pullback(u)
    return (ut_j, aux) if has_aux else ut_j


def gnvp(
    model_fn: Callable[[Any, Any], Any], loss_fn: Callable[[Any, Any], Any]
) -> Callable[[Any, Any, Any, Any], Any]:
    r"""The Gauss-Newton-vector product :math:`G v = J^\top H_\ell J v`, never building J.

    For a model :math:`z = m(\theta, x)` and a scalar loss :math:`\ell(z, y)`, the
    generalized Gauss-Newton matrix drops the model's own curvature from the Hessian of
    :math:`\ell(m(\theta, x), y)`:

    .. math:: G = J^\top H_\ell J, \qquad J = \frac{\partial z}{\partial \theta}, \qquad
              H_\ell = \frac{\partial^2 \ell}{\partial z^2}

    It equals the Hessian when the model is linear in :math:`\theta`, and is positive
    semi-definite when the loss is convex in :math:`z` (squared error, cross-entropy).

    Args:
      model_fn: ``model_fn(params, x) -> z`` (``z`` an array or a pytree).
      loss_fn: ``loss_fn(z, y) -> scalar``.

    Returns:
      A function ``(params, v, x, y) -> G v``, shaped like ``params``; ``v`` has the same
      pytree structure and shapes as ``params``. It is a pure JAX function: ``jax.jit``
      it, and ``jax.vmap`` it over ``v`` (the model's forward pass is shared) or over data.

    Example (a linear model with squared error: :math:`G = H = 2 x^\top x`):
      >>> import jax.numpy as jnp, mlgrad
      >>> ggn_v = mlgrad.gnvp(lambda w, x: x @ w, lambda z, y: jnp.sum((z - y) ** 2))
      >>> x, y = jnp.array([[1.0, 2.0]]), jnp.array([0.0])
      >>> ggn_v(jnp.zeros(2), jnp.array([1.0, 0.0]), x, y)
      Array([2., 4.], dtype=float32)

    One ``jax.linearize`` of the model (:math:`J v`), one Hessian-vector product of the
    loss in :math:`z` (forward over reverse), and the transpose of the linearized model
    (:math:`J^\top`): about the cost of two gradients, as autograd's ``make_ggnvp``.
    """
    for what, fn in (("model_fn", model_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise TypeError(f"gnvp: {what} is a {type(fn).__name__}, not a function.")

    def loss_of_z(z: Any, y: Any) -> Any:
        loss = loss_fn(z, y)
        if jnp.shape(loss) != () or not jax.tree_util.treedef_is_leaf(
            jax.tree_util.tree_structure(loss)
        ):
            raise TypeError(
                f"gnvp: loss_fn(z, y) must return a scalar, but it returned "
                f"{_shape_or_type(loss)}. Reduce it to one number, e.g. with jnp.mean or jnp.sum."
            )
        return loss

    def gnvp_of(params: Any, v: Any, x: Any, y: Any) -> Any:
        params = as_float(params, "gnvp: params")
        v = _matching_tangent(params, v, "gnvp", "vector v", "params")
        z, model_jvp = jax.linearize(lambda p: model_fn(p, x), params)
        jv = model_jvp(v)
        hjv = jax.jvp(jax.grad(lambda z: loss_of_z(z, y)), (z,), (jv,))[1]
        (gv,) = jax.linear_transpose(model_jvp, params)(hjv)
        return gv

    return gnvp_of


def _shape_or_type(y: Any) -> str:
    shape = getattr(y, "shape", None)
    return f"shape {shape}" if shape is not None else f"a {type(y).__name__}"


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
      >>> import jax.numpy as jnp, mlgrad
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
        value, jacobians = as_float(x, "chain_rule: x"), list[Any]()
        for f in reversed(fs):
            value, jac = value_and_jacobian(f, flatten=True)(value)
            jacobians.insert(0, jac)
        return ChainRule(value, tuple(jacobians), functools.reduce(jnp.matmul, jacobians))

    return evaluate
