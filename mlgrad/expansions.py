"""Linearization and Taylor polynomials: local polynomial models of a function.

* linearization   f(x) ~ f(x0) + J(x0)(x - x0)                         (``jax.linearize``)
* Taylor          T_n(x) = sum_{k=0}^n f^(k)(x0) / k! (x - x0)^k     (``jax.experimental.jet``)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mlgrad._series import derivatives_along
from mlgrad._validation import as_float


class Linearization:
    r"""The local linear approximation :math:`x \mapsto f(x_0) + J(x_0)(x - x_0)`.

    Attributes:
      point: :math:`x_0`.
      value: :math:`f(x_0)`.
      aux: with ``has_aux=True``, the auxiliary output of ``f`` at :math:`x_0`; else None.
    """

    def __init__(self, f: Callable[[Any], Any], x0: Any, *, has_aux: bool = False) -> None:
        self.point = as_float(x0, "linearization: x0")
        if has_aux:
            linearized = jax.linearize(_pair_checked(f), self.point, has_aux=True)
            self.value, self._jvp, self.aux = linearized
        else:
            (self.value, self._jvp), self.aux = jax.linearize(f, self.point), None
        self._name = getattr(f, "__name__", "f")

    def __call__(self, x: Any) -> Any:
        """Evaluates the linearization at ``x``, or at each point of a batch of points.

        ``x`` has the shape of ``x0``; for an array ``x0``, extra leading axes are a batch.
        """
        x = as_float(x, "linearization: x")
        if isinstance(self.point, jax.Array) and jnp.ndim(x) > self.point.ndim:
            batch = jnp.shape(x)[: jnp.ndim(x) - self.point.ndim]
            flat = jax.vmap(self)(jnp.reshape(x, (-1, *self.point.shape)))
            return jax.tree_util.tree_map(lambda a: a.reshape(batch + a.shape[1:]), flat)
        dx = jax.tree_util.tree_map(
            lambda a, b: jnp.asarray(a - b, jnp.result_type(b)), x, self.point
        )
        return jax.tree_util.tree_map(jnp.add, self.value, self._jvp(dx))

    def __repr__(self) -> str:
        return f"Linearization({self._name} at x0={self.point})"


def linearization(
    f: Callable[..., Any], x0: Any, *, has_aux: bool = False, **kwargs: Any
) -> Linearization | tuple[Linearization, Any]:
    r"""The linearization of ``f`` at ``x0``: its first-order Taylor polynomial.

    .. math:: f(x) \approx f(x_0) + (\nabla_x f)(x_0)\,(x - x_0)

    Args:
      f: a function of one argument (a scalar, an array or a pytree); any output shape.
      x0: the point to linearize at.
      has_aux: ``f`` returns ``(output, aux)``: only ``output`` is linearized, and the
        result is the pair ``(linearization, aux)`` with ``aux`` evaluated at ``x0``
        (also kept as ``linearization.aux``).
      **kwargs: keyword arguments of ``f``, held fixed (never differentiated).

    Returns:
      A callable ``x -> f(x0) + J(x0)(x - x0)`` (a :class:`Linearization`, with
      ``.point`` and ``.value``), or ``(Linearization, aux)`` with ``has_aux=True``.
      ``f`` is evaluated once; each call costs one JVP.

    Example (the notes' :math:`\sqrt{4.001} \approx 2 + 0.001/4`):
      >>> import jax, jax.numpy as jnp, mlgrad
      >>> with jax.enable_x64(True):
      ...     print(round(float(mlgrad.linearization(jnp.sqrt, 4.0)(4.001)), 12))
      2.00025
      >>> lin, aux = mlgrad.linearization(lambda x: (jnp.exp(x), "at x0"), 0.0, has_aux=True)
      >>> round(float(lin(0.1)), 6), aux   # 1 + x
      (1.1, 'at x0')

    Built on ``jax.linearize``.
    """
    f = functools.wraps(f)(functools.partial(f, **kwargs)) if kwargs else f
    lin = Linearization(f, x0, has_aux=has_aux)
    return (lin, lin.aux) if has_aux else lin


def _pair_checked(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(x: Any) -> Any:
        out = f(x)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                "linearization(..., has_aux=True) expects the function to return a pair "
                f"(output, aux), but it returned {type(out).__name__}."
            )
        return out

    return checked


class Taylor:
    r"""A Taylor polynomial of ``f`` at ``x0`` of a given order.

    Attributes:
      point: :math:`x_0`.
      order: the degree :math:`n`.
      coefficients: a list of ``order + 1`` arrays. For a scalar ``x0``:
        :math:`f^{(k)}(x_0) / k!`. For an array ``x0``: the k-th derivative tensor divided
        by :math:`k!`, of shape ``f(x0).shape + x0.shape * k`` (so ``coefficients[1]`` is
        the gradient and ``2 * coefficients[2]`` the Hessian of a scalar ``f``).
    """

    def __init__(self, f: Callable[[Any], Any], x0: Any, order: int) -> None:
        self._f = f
        self.point = as_float(x0, "taylor: x0")
        if not isinstance(self.point, jax.Array):
            raise TypeError("taylor: x0 must be a scalar or an array (not a pytree).")
        self.order = order
        if self.point.ndim == 0:
            derivs = derivatives_along(f, self.point, jnp.ones_like(self.point), order)
        else:
            derivs = _derivative_tensors(f, self.point, order)
        self.coefficients = [d / math.factorial(k) for k, d in enumerate(derivs)]

    def __call__(self, x: Any) -> Any:
        r"""Evaluates :math:`T_n(x) = \sum_k \frac{1}{k!} D^k f(x_0)[x - x_0]^k`.

        For a scalar ``x0``, ``x`` may be an array of points (the polynomial is evaluated at
        each). For an array ``x0``, ``x`` has ``x0``'s shape, possibly with leading batch
        axes; the polynomial is evaluated along ``x - x0`` in one Taylor-mode pass.
        """
        x = jnp.asarray(as_float(x, "taylor: x"), self.point.dtype)
        if self.point.ndim == 0:
            dx = x - self.point
            out_ndim = jnp.ndim(self.coefficients[0])
            dx = dx.reshape(dx.shape + (1,) * out_ndim)
            return sum(c * dx**k for k, c in enumerate(self.coefficients))
        if x.shape[x.ndim - self.point.ndim :] != self.point.shape:
            raise ValueError(
                f"taylor: x has shape {x.shape}, but the expansion point has shape "
                f"{self.point.shape}; pass points of that shape (with optional leading axes)."
            )
        batch = x.shape[: x.ndim - self.point.ndim]
        flat = jax.vmap(self._along)(x.reshape((-1, *self.point.shape)))
        return flat.reshape(batch + flat.shape[1:])

    def _along(self, x: jax.Array) -> Any:
        derivs = derivatives_along(self._f, self.point, x - self.point, self.order)
        return sum(d / math.factorial(k) for k, d in enumerate(derivs))

    def __repr__(self) -> str:
        name = getattr(self._f, "__name__", "f")
        return f"Taylor({name}, x0={self.point}, order={self.order})"


def _derivative_tensors(f: Callable, x0: jax.Array, order: int) -> list[Any]:
    """[f(x0), Df(x0), D^2 f(x0), ...] by nested forward-mode Jacobians."""
    tensors, d = [], f
    for _ in range(order + 1):
        tensors.append(d(x0))
        d = jax.jacfwd(d)
    return tensors


def taylor(f: Callable[..., Any], x0: Any, order: int, **kwargs: Any) -> Taylor:
    r"""The Taylor polynomial of degree ``order`` of ``f`` at ``x0``.

    .. math:: T_n(x) = \sum_{k=0}^{n} \frac{f^{(k)}(x_0)}{k!} (x - x_0)^k

    and, for :math:`f: \mathbb{R}^d \to \mathbb{R}`, the multivariate polynomial
    :math:`\sum_k \frac{1}{k!} D^k f(x_0)[x - x_0, \dots, x - x_0]`.

    Args:
      f: a function of one scalar or one array; any output shape.
      x0: the expansion point.
      order: the degree, any integer ``>= 0``.
      **kwargs: keyword arguments of ``f``, held fixed (never differentiated).

    Returns:
      A :class:`Taylor` with ``.coefficients`` and ``__call__``.

    Example (the notes' :math:`\sin + \cos` at 0):
      >>> import jax.numpy as jnp, mlgrad
      >>> t = mlgrad.taylor(lambda x: jnp.sin(x) + jnp.cos(x), 0.0, 4)
      >>> [round(float(c), 5) for c in t.coefficients]
      [1.0, 1.0, -0.5, -0.16667, 0.04167]
      >>> float(mlgrad.taylor(lambda x, a: jnp.exp(a * x), 0.0, 2, a=2.0)(0.5))   # 1 + 1 + 0.5
      2.5

    Univariate coefficients and every evaluation come from one Taylor-mode pass
    (``jax.experimental.jet``), with nested ``jax.jvp`` where jet has no rule; the
    multivariate coefficient tensors come from nested ``jax.jacfwd``.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"taylor: order must be an integer >= 0, got {order!r}.")
    if kwargs:
        f = functools.wraps(f)(functools.partial(f, **kwargs))
    return Taylor(f, x0, order)
