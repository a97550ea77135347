"""Higher-order directional derivatives: Taylor-mode AD with a nested-``jvp`` fallback.

``jax.experimental.jet`` propagates a whole truncated Taylor series through a function
in one pass, at a cost that grows polynomially with the order. It has no rule for some
primitives (``tan``, ``atan``, ``cbrt``, and every ``custom_jvp`` function such as
``jax.nn.relu``, ``softplus`` or ``logaddexp``); for those functions we fall back to
nested ``jax.jvp``, which is exact for any primitive JAX can differentiate but costs
about 2**order evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import jet
from jax.extend.core import ClosedJaxpr, Jaxpr


def _jaxprs_in(value: Any):
    """Yields the jaxprs held by an equation parameter (sub-programs such as jit bodies)."""
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _jaxprs_in(v)


def _jet_can_trace(jaxpr: Jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive not in jet.jet_rules:
            return False
        for param in eqn.params.values():
            if not all(_jet_can_trace(sub) for sub in _jaxprs_in(param)):
                return False
    return True


def jet_supports(f: Callable, x: Any) -> bool:
    """True when ``jet`` has a rule for every primitive ``f`` uses at an input like ``x``."""
    spec = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), x
    )
    return _jet_can_trace(jax.make_jaxpr(f)(spec).jaxpr)


def derivatives_along(f: Callable, x: Any, v: Any, order: int) -> list[Any]:
    r"""The derivatives of :math:`g(t) = f(x + t v)` at :math:`t = 0`, orders 0 to ``order``.

    Returns ``[f(x), D_v f(x), D_v^2 f(x), ..., D_v^order f(x)]`` (derivatives, not yet
    divided by :math:`k!`), each shaped like ``f(x)``. ``x`` and ``v`` are pytrees of the
    same structure.
    """
    if order == 0:
        return [f(x)]
    if jet_supports(f, x):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, v)
        y, series = jet.jet(f, (x,), ([v] + [zeros] * (order - 1),))
        return [y, *series]
    return list(_nested_jvp(f, v, order)(x))


def _nested_jvp(f: Callable, v: Any, order: int) -> Callable[[Any], tuple]:
    """x -> (f(x), D_v f(x), ..., D_v^order f(x)) by ``order`` nested forward passes."""

    def all_orders(k: int) -> Callable[[Any], tuple]:
        if k == 0:
            return lambda x: (f(x),)
        lower = all_orders(k - 1)

        def upto_k(x: Any) -> tuple:
            values, tangents = jax.jvp(lower, (x,), (v,))
            return (values[0], *tangents)

        return upto_k

    return all_orders(order)
