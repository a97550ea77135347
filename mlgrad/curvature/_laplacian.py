"""The Laplacian (trace of the Hessian) and the divergence (trace of the Jacobian), forward mode."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlgrad.curvature._operators import (
    _real_flat,
    check_positive_int,
    chunked_sum,
    compiled,
    default_key,
    direction_batch,
    probe_batch,
    rademacher_bits,
    sample_moments,
)
from mlgrad.derivatives import _point_and_function


def _check_options(num_probes: Any, batch_size: Any, name: str) -> None:
    if num_probes is not None:
        check_positive_int(num_probes, "num_probes", name, minimum=2)
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size", name)


def _trace_by_directions(
    along: Callable[[jax.Array], Any],
    n: int,
    dtype: Any,
    num_probes: int | None,
    key: Any,
    batch_size: int | None,
    name: str,
) -> tuple[Any, Any]:
    """``sum_i along(e_i)`` exactly, or the mean of ``along(v)`` over Rademacher ``v`` with its
    standard error; ``along(v)`` is the quadratic form ``v^T A v`` of the matrix traced."""
    if num_probes is None:
        value = chunked_sum(
            lambda i: along(jax.nn.one_hot(i, n, dtype=dtype)),
            n,
            direction_batch(n, batch_size, name),
        )
        return value, jax.tree_util.tree_map(jnp.zeros_like, value)
    return sample_moments(
        along,
        rademacher_bits(default_key(key), num_probes, n),
        n,
        dtype,
        probe_batch(num_probes, batch_size, name),
    )


def laplacian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    num_probes: int | None = None,
    key: jax.Array | None = None,
    return_error: bool = False,
    batch_size: int | None = None,
) -> Callable[..., Any]:
    r"""The Laplacian: the trace of the Hessian, the sum of the unmixed second derivatives.

    .. math:: \Delta f(x) = \operatorname{tr} \nabla^2 f(x)
              = \sum_{i=1}^n \frac{\partial^2 f}{\partial x_i^2}

    Exact by forward mode, without building the Hessian: one second-order forward pass (a
    JVP of a JVP, :math:`e_i^\top \nabla^2 f\, e_i`) along each basis direction :math:`e_i`,
    vectorised over the directions so that the primal computation is shared (as folx's
    forward Laplacian): about ``n`` forward passes' worth of tangents, no reverse pass and no
    ``n x n`` matrix. (Forward over forward rather than ``jet``: JAX's Taylor-mode rules are
    inexact for some primitives, e.g. ``x ** 2``.)

    Args:
      f: a function of arrays or pytrees; a scalar output gives the Laplacian, an array
        output the Laplacian of each entry.
      argnums: which positional argument(s) the Laplacian is over (a tuple: all of them
        together).
      num_probes: ``None`` (default) for the exact Laplacian; a number of Rademacher probes
        for Hutchinson's unbiased estimate :math:`\frac1P \sum_p v_p^\top \nabla^2 f\, v_p`
        (for large ``n``: ``num_probes`` second-order forward passes).
      key: a ``jax.random`` key for the probes (default ``PRNGKey(0)``: the same probes on
        every call; pass a fresh key per call for independent estimates).
      return_error: also return the standard error (0 when exact).
      batch_size: directions or probes computed at once (memory); default: all probes up to
        32, or as many basis directions as keep a chunk to about 4 million entries.

    Returns:
      A function of the same arguments as ``f`` returning :math:`\Delta f`, shaped like
      ``f``'s output; ``(laplacian, stderr)`` with ``return_error=True``. Keyword arguments
      go to ``f`` and are not differentiated.

    Example (the notes' saddle is harmonic; a Gaussian bump):
      >>> import jax.numpy as jnp, mlgrad
      >>> mlgrad.laplacian(lambda p: p[0] ** 2 - p[1] ** 2)(jnp.array([1.0, 2.0]))
      Array(0., dtype=float32)
      >>> bump = lambda x: jnp.exp(-jnp.sum(x ** 2))    # (4|x|^2 - 2d) exp(-|x|^2)
      >>> mlgrad.laplacian(bump)(jnp.zeros(3))
      Array(-6., dtype=float32)
    """
    _check_options(num_probes, batch_size, "laplacian")

    @functools.wraps(f)
    def laplacian_of_f(*args: Any, **kwargs: Any) -> Any:
        return compiled(_laplacian, args, kwargs, key)

    def _laplacian(args: tuple, kwargs: dict, key: Any) -> Any:
        x, g, _ = _point_and_function(f, args, argnums, kwargs, "laplacian")
        flat, unravel = _real_flat(x, "laplacian", "the differentiated argument")

        def g_flat(z: jax.Array) -> Any:
            return g(unravel(z))

        def first(z: jax.Array, v: jax.Array) -> Any:
            return jax.jvp(g_flat, (z,), (v,))[1]

        def second(v: jax.Array) -> Any:  # v^T (Hessian of each output entry) v
            return jax.jvp(lambda z: first(z, v), (flat,), (v,))[1]

        value, stderr = _trace_by_directions(
            second, flat.size, flat.dtype, num_probes, key, batch_size, "laplacian"
        )
        return (value, stderr) if return_error else value

    return laplacian_of_f


def divergence(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    num_probes: int | None = None,
    key: jax.Array | None = None,
    return_error: bool = False,
    batch_size: int | None = None,
) -> Callable[..., Any]:
    r"""The divergence of a vector field :math:`f: \mathbb{R}^n \to \mathbb{R}^n`: the trace of
    its Jacobian.

    .. math:: \nabla \cdot f(x) = \operatorname{tr} \frac{\partial f}{\partial x}
              = \sum_{i=1}^n \frac{\partial f_i}{\partial x_i}

    Exact by forward mode without building the Jacobian: one JVP along each basis direction,
    vectorised in chunks, keeping only its own entry :math:`(J e_i)_i`.

    Args:
      f: a function whose output has the shape (pytree structure) of the differentiated
        argument, e.g. a score :math:`\nabla \log p` or a velocity field.
      argnums: which positional argument(s) the divergence is over.
      num_probes: ``None`` (default) for the exact divergence; a number of Rademacher probes
        for Hutchinson's unbiased estimate :math:`\frac1P \sum_p v_p^\top J v_p` (one JVP
        each; as in FFJORD's trace estimator).
      key: a ``jax.random`` key for the probes (default ``PRNGKey(0)``).
      return_error: also return the standard error (0 when exact).
      batch_size: directions or probes computed at once (memory), as :func:`laplacian`.

    Returns:
      A function of the same arguments as ``f`` returning the scalar divergence;
      ``(divergence, stderr)`` with ``return_error=True``.

    Example (the divergence of the gradient is the Laplacian):
      >>> import jax.numpy as jnp, mlgrad
      >>> mlgrad.divergence(lambda p: jnp.array([2 * p[0], -2 * p[1]]))(jnp.array([1.0, 2.0]))
      Array(0., dtype=float32)
      >>> mlgrad.divergence(lambda x: x ** 3)(jnp.array([1.0, 2.0, 3.0]))   # 3 (1 + 4 + 9)
      Array(42., dtype=float32)
    """
    _check_options(num_probes, batch_size, "divergence")

    @functools.wraps(f)
    def divergence_of_f(*args: Any, **kwargs: Any) -> Any:
        return compiled(_divergence, args, kwargs, key)

    def _divergence(args: tuple, kwargs: dict, key: Any) -> Any:
        x, g, _ = _point_and_function(f, args, argnums, kwargs, "divergence")
        flat, unravel = _real_flat(x, "divergence", "the differentiated argument")
        out = jax.eval_shape(g, x)
        in_shapes = jax.tree_util.tree_map(jnp.shape, x)
        out_shapes = jax.tree_util.tree_map(lambda a: a.shape, out)
        if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(x) or (
            jax.tree_util.tree_leaves(out_shapes) != jax.tree_util.tree_leaves(in_shapes)
        ):
            raise ValueError(
                "divergence: f must map its input to an output of the same shape (a vector "
                f"field R^n -> R^n), but the input has shape {in_shapes} and the output "
                f"{out_shapes}. For the Laplacian of a scalar function use mlgrad.laplacian; "
                "for the whole Jacobian mlgrad.jacobian."
            )

        def g_flat(z: jax.Array) -> jax.Array:
            return ravel_pytree(g(unravel(z)))[0].astype(flat.dtype)

        def along(v: jax.Array) -> jax.Array:  # v^T J v
            return jnp.dot(v, jax.jvp(g_flat, (flat,), (v,))[1])

        value, stderr = _trace_by_directions(
            along, flat.size, flat.dtype, num_probes, key, batch_size, "divergence"
        )
        return (value, stderr) if return_error else value

    return divergence_of_f
