"""The Hessian's trace and diagonal: exact from basis products, or Hutchinson / Hutch++."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from mlgrad.curvature._operators import (
    FlatOperator,
    Matrix,
    check_positive_int,
    chunked_map,
    chunked_sum,
    compiled,
    curvature_operator,
    default_key,
    direction_batch,
    matvec_operator,
    probe_batch,
    rademacher_bits,
    rademacher_signs,
    sample_moments,
)

TraceMethod = Literal["hutch++", "hutchinson", "exact"]
DiagonalMethod = Literal["hutchinson", "exact"]
_TRACE_METHODS = ("hutch++", "hutchinson", "exact")
_DIAGONAL_METHODS = ("hutchinson", "exact")


class Estimate(NamedTuple):
    """An estimate with its standard error.

    Attributes:
      value: the estimate (an array, or a pytree like the differentiated argument).
      stderr: its standard error, shaped like ``value``: the sample standard deviation of the
        independent terms averaged, over the square root of their number (0 when exact). An
        unbiased estimate lies within 2 standard errors of the truth about 95% of the time.
      num_matvecs: the number of matrix-vector products used.
    """

    value: Any
    stderr: Any
    num_matvecs: jax.Array


def _basis_product_entry(op: FlatOperator) -> Callable[[jax.Array], jax.Array]:
    """i -> (M e_i)_i, the i-th diagonal entry from one product."""

    def entry(i: jax.Array) -> jax.Array:
        return op.matvec(jax.nn.one_hot(i, op.size, dtype=op.dtype))[i]

    return entry


def _trace(
    op: FlatOperator,
    method: Any,
    num_matvecs: Any,
    key: Any,
    batch_size: int | None,
    name: str,
) -> Estimate:
    if method not in _TRACE_METHODS:
        raise ValueError(f"{name}: method must be one of {_TRACE_METHODS}, got {method!r}.")
    n = op.size
    if method != "exact":
        check_positive_int(
            num_matvecs, "num_matvecs", name, minimum=4 if method == "hutch++" else 2
        )
    if method == "exact" or num_matvecs >= n:
        value = chunked_sum(_basis_product_entry(op), n, direction_batch(n, batch_size, name))
        return Estimate(value, jnp.zeros_like(value), jnp.asarray(n))
    key = default_key(key)
    if method == "hutchinson":

        def quadratic_form(v: jax.Array) -> jax.Array:
            return jnp.dot(v, op.matvec(v))

        mean, stderr = sample_moments(
            quadratic_form,
            rademacher_bits(key, num_matvecs, n),
            n,
            op.dtype,
            probe_batch(num_matvecs, batch_size, name),
        )
        return Estimate(mean, stderr, jnp.asarray(num_matvecs))
    # Hutch++ (Meyer, Musco, Musco & Woodruff 2021): the trace of the top of the range exactly,
    # Hutchinson on the rest. tr(M) = tr(Q^T M Q) + tr(P M P) for any orthonormal Q, P = I - QQ^T,
    # so the estimate is unbiased and its error is the Hutchinson part's alone.
    s = num_matvecs // 3
    rest = num_matvecs - 2 * s
    bits = rademacher_bits(key, s + rest, n)
    batch = probe_batch(s, batch_size, name)
    sketch = rademacher_signs(bits[:s], n, op.dtype)
    q, _ = jnp.linalg.qr(chunked_map(op.matvec, sketch, batch).T)  # (n, s)
    top = jnp.sum(q * chunked_map(op.matvec, q.T, batch).T)

    def projected_form(g: jax.Array) -> jax.Array:
        g = g - q @ (g @ q)
        return jnp.dot(g, op.matvec(g))

    mean, stderr = sample_moments(
        projected_form, bits[s:], n, op.dtype, probe_batch(rest, batch_size, name)
    )
    return Estimate(top + mean, stderr, jnp.asarray(num_matvecs))


def hessian_trace(
    f: Any,
    *args: Any,
    argnums: int | tuple[int, ...] = 0,
    matrix: Matrix = "hessian",
    method: TraceMethod = "hutch++",
    num_matvecs: int = 99,
    key: jax.Array | None = None,
    batch_size: int | None = None,
) -> Estimate:
    r"""The trace of the Hessian (the sum of its eigenvalues) from Hessian-vector products.

    .. math:: \operatorname{tr} H = \sum_i H_{ii} = \sum_i \lambda_i
              = \mathbb{E}_v[v^\top H v] \quad (v_j = \pm 1 \text{ independently})

    * ``"hutchinson"``: the mean of :math:`v^\top H v` over ``num_matvecs`` Rademacher
      probes; exact (zero variance) when :math:`H` is diagonal.
    * ``"hutch++"`` (default; Meyer et al. 2021): a third of the products sketch the range of
      :math:`H`, a third take the exact trace of :math:`Q^\top H Q` on it, and the last third
      run Hutchinson on the rest :math:`(I - QQ^\top) H (I - QQ^\top)`. Far smaller error when
      a few eigenvalues dominate (as in trained networks); unbiased in every case.
    * ``"exact"``: :math:`\sum_i (H e_i)_i` from ``n`` products; also what any method returns
      when ``n <= num_matvecs`` (no more products, no error).

    Args:
      f, *args, argnums, matrix: as :func:`hessian_eigenvalues`.
      method: ``"hutch++"``, ``"hutchinson"`` or ``"exact"``.
      num_matvecs: the number of Hessian-vector products (the probes).
      key: a ``jax.random`` key for the probes (default ``PRNGKey(0)``).
      batch_size: products computed at once (memory); default 32 probes, or as many basis
        vectors as keep a chunk to about 4 million entries.

    Returns:
      :class:`Estimate` ``(value, stderr, num_matvecs)``: the trace and its standard error
      (0 when exact). The stochastic ones are unbiased.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: jnp.sum(jnp.arange(1.0, 201.0) * x ** 2)   # H = diag(2, 4, ..., 400)
      >>> est = mlgrad.hessian_trace(f, jnp.zeros(200), method="hutchinson", num_matvecs=10)
      >>> float(est.value), float(est.stderr)     # tr H = 40200, exactly: H is diagonal
      (40200.0, 0.0)
    """
    name = "hessian_trace"

    def run(args: tuple, key: Any) -> Estimate:
        op = curvature_operator(f, args, argnums, matrix, name)
        return _trace(op, method, num_matvecs, key, batch_size, name)

    return compiled(run, args, key)


def trace_of(
    matvec: Callable[[Any], Any],
    like: Any,
    *,
    method: TraceMethod = "hutch++",
    num_matvecs: int = 99,
    key: jax.Array | None = None,
    batch_size: int | None = None,
) -> Estimate:
    """:func:`hessian_trace` for any square matrix given by its product ``matvec`` on pytrees
    like ``like``.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad.curvature import trace_of
      >>> float(trace_of(lambda v: 3.0 * v, jnp.zeros(5)).value)   # n <= num_matvecs: exact
      15.0
    """

    def run(like: Any, key: Any) -> Estimate:
        op = matvec_operator(matvec, like, "trace_of")
        return _trace(op, method, num_matvecs, key, batch_size, "trace_of")

    return compiled(run, like, key)


def _diagonal(
    op: FlatOperator,
    method: Any,
    num_matvecs: Any,
    key: Any,
    batch_size: int | None,
    name: str,
) -> Estimate:
    if method not in _DIAGONAL_METHODS:
        raise ValueError(f"{name}: method must be one of {_DIAGONAL_METHODS}, got {method!r}.")
    n = op.size
    if method != "exact":
        check_positive_int(num_matvecs, "num_matvecs", name, minimum=2)
    if method == "exact" or num_matvecs >= n:
        entries = chunked_map(
            _basis_product_entry(op), jnp.arange(n), direction_batch(n, batch_size, name)
        )
        return Estimate(op.unravel(entries), op.unravel(jnp.zeros_like(entries)), jnp.asarray(n))

    def product(v: jax.Array) -> jax.Array:
        return v * op.matvec(v)

    mean, stderr = sample_moments(
        product,
        rademacher_bits(default_key(key), num_matvecs, n),
        n,
        op.dtype,
        probe_batch(num_matvecs, batch_size, name),
    )
    return Estimate(op.unravel(mean), op.unravel(stderr), jnp.asarray(num_matvecs))


def hessian_diagonal(
    f: Any,
    *args: Any,
    argnums: int | tuple[int, ...] = 0,
    matrix: Matrix = "hessian",
    method: DiagonalMethod = "hutchinson",
    num_matvecs: int = 100,
    key: jax.Array | None = None,
    batch_size: int | None = None,
) -> Estimate:
    r"""The diagonal of the Hessian, :math:`H_{ii} = \partial^2 f / \partial x_i^2`, shaped like
    the differentiated argument, from Hessian-vector products.

    .. math:: \operatorname{diag} H = \mathbb{E}_v[v \odot H v]
              \quad (v_j = \pm 1 \text{ independently; Bekas et al. 2007})

    * ``"exact"``: :math:`(H e_i)_i` from one product per entry (``n`` in all); also what
      ``"hutchinson"`` returns when ``n <= num_matvecs``.
    * ``"hutchinson"`` (default, for large ``n``): the mean of :math:`v \odot Hv` over
      ``num_matvecs`` Rademacher probes, with a standard error per entry. Entry ``i``'s error
      comes from the off-diagonal entries of row ``i`` only: it is exact for a diagonal
      Hessian.

    Args:
      f, *args, argnums, matrix: as :func:`hessian_eigenvalues`.
      method: ``"hutchinson"`` or ``"exact"``.
      num_matvecs: the number of probes (Hessian-vector products).
      key: a ``jax.random`` key for the probes (default ``PRNGKey(0)``).
      batch_size: products computed at once (memory), as :func:`hessian_trace`.

    Returns:
      :class:`Estimate` ``(value, stderr, num_matvecs)`` with ``value`` and ``stderr`` pytrees
      like the differentiated argument.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda p: p["a"] ** 2 * p["b"] + p["b"] ** 3
      >>> diag = mlgrad.hessian_diagonal(f, {"a": 1.0, "b": 2.0}).value
      >>> float(diag["a"]), float(diag["b"])     # 2b, 6b
      (4.0, 12.0)
    """
    name = "hessian_diagonal"

    def run(args: tuple, key: Any) -> Estimate:
        op = curvature_operator(f, args, argnums, matrix, name)
        return _diagonal(op, method, num_matvecs, key, batch_size, name)

    return compiled(run, args, key)


def diagonal_of(
    matvec: Callable[[Any], Any],
    like: Any,
    *,
    method: DiagonalMethod = "hutchinson",
    num_matvecs: int = 100,
    key: jax.Array | None = None,
    batch_size: int | None = None,
) -> Estimate:
    """:func:`hessian_diagonal` for any square matrix given by its product ``matvec`` on
    pytrees like ``like``.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad.curvature import diagonal_of
      >>> diagonal_of(lambda v: jnp.array([2 * v[0] + v[1], v[0] + 5 * v[1]]), jnp.zeros(2)).value
      Array([2., 5.], dtype=float32)
    """

    def run(like: Any, key: Any) -> Estimate:
        op = matvec_operator(matvec, like, "diagonal_of")
        return _diagonal(op, method, num_matvecs, key, batch_size, "diagonal_of")

    return compiled(run, like, key)
