"""Block Lanczos with full reorthogonalisation, restarts and breakdown handling (flat arrays).

The one building block of the eigenvalue solver and of stochastic Lanczos quadrature:
:func:`krylov_cycle` grows an orthonormal basis ``Q = [Q_0, ..., Q_{m-1}]`` (``b`` columns per
block) of the block Krylov space of a symmetric matrix ``A`` from a start block ``Q_0``, and
returns the projection ``T = Q^T A Q``.

* **Exact projection.** ``T`` is not assembled from the three-term recurrence's coefficients:
  at step ``j`` the column block ``Q^T (A Q_j)`` is computed directly (its rows up to block
  ``j``), and ``T`` is the symmetric matrix with that upper triangle. Rayleigh-Ritz on ``T``
  is therefore exact up to rounding, whatever rounding does to the recurrence.
* **Full reorthogonalisation.** Each new block is orthogonalised against the whole basis, twice
  (classical Gram-Schmidt with reorthogonalisation, "CGS2"), so no ghost copies of converged
  eigenvalues appear.
* **Breakdown.** When the new block is (numerically) rank-deficient, the Krylov space has
  become invariant (``A = 2 I`` breaks down after one step: ``A q = 2 q``). The missing
  directions are replaced by random ones orthogonalised against the basis, so the basis keeps
  growing into the rest of the space; their coupling to the earlier blocks is (numerically)
  zero, which is exactly what the projection records. A direction counts as missing when its
  norm is below ``10 sqrt(d) eps`` times the largest ``|A q|`` seen (``d`` the basis size,
  ``eps`` the dtype's machine epsilon): below the rounding noise of the products.
* **Repeated eigenvalues.** A single start vector's Krylov space holds only one vector of each
  eigenspace; a block of ``b`` start vectors holds ``b``, so an eigenvalue of multiplicity up
  to ``b`` is found that many times.

:func:`extreme_eigenpairs` restarts such cycles from the wanted Ritz vectors until every one
has a residual ``||A x - theta x|| <= tol * max|theta|`` (explicit restarts: each cycle starts
from the current best block).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

Which = Literal["largest", "smallest", "both"]
_HIGHEST = jax.lax.Precision.HIGHEST


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """A matrix product at full precision (a GPU's default TF32 would spoil orthogonality)."""
    return jnp.matmul(a, b, precision=_HIGHEST)


def _breakdown_threshold(d: int, dtype: Any, scale: jax.Array) -> jax.Array:
    return 10.0 * jnp.sqrt(float(d)) * jnp.finfo(dtype).eps * scale


def _append_orthonormal(
    basis: jax.Array, start: Any, w: jax.Array, fill: jax.Array, scale: jax.Array
) -> jax.Array:
    """``basis`` with columns ``start, start + 1, ...`` set to an orthonormal basis of the
    span of ``w``'s columns orthogonalised against ``basis`` (whose columns from ``start`` on
    must be zero), column by column (Gram-Schmidt, twice); a column that is numerically in
    the span already (breakdown) is replaced by the same column of ``fill``, orthogonalised."""
    threshold = _breakdown_threshold(basis.shape[1], w.dtype, scale)

    def orthogonal(basis: jax.Array, z: jax.Array) -> jax.Array:
        z = z - _mm(basis, _mm(z, basis))
        return z - _mm(basis, _mm(z, basis))

    def column(i: Any, basis: jax.Array) -> jax.Array:
        z = orthogonal(basis, w[:, i])
        norm = jnp.linalg.norm(z)
        z = jnp.where(norm > threshold, z, orthogonal(basis, fill[:, i]))
        z = z / jnp.linalg.norm(z)
        return jax.lax.dynamic_update_slice(basis, z[:, None], (0, start + i))

    return jax.lax.fori_loop(0, w.shape[1], column, basis)


def _column_norms(a: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(a * a, axis=0))


class Cycle(NamedTuple):
    basis: jax.Array  # (n, m b), orthonormal columns
    projection: jax.Array  # (m b, m b), Q^T A Q
    scale: jax.Array  # the largest |A q| column norm seen (an estimate of ||A|| from below)


def krylov_cycle(
    matmat: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    num_blocks: int,
    fill: jax.Array,
    scale: jax.Array,
) -> Cycle:
    """``num_blocks`` blocks of block Lanczos from the orthonormal ``(n, b)`` block ``x``.

    Costs ``num_blocks * b`` products, all from one call site of ``matmat`` (a product is
    compiled once). ``num_blocks * b`` must not exceed ``n``. ``fill`` is an
    ``(n, num_blocks * b)`` random normal matrix: block ``j`` of it replaces what step ``j``
    lacks after a breakdown (drawn once, outside the loops, so that no random number generator
    is compiled into them).
    """
    n, b = x.shape
    d = num_blocks * b
    # one spare block: every step appends its successor, the last one's is dropped
    basis = jnp.zeros((n, d + b), x.dtype).at[:, :b].set(x)
    proj = jnp.zeros((d + b, d), x.dtype)
    fill = jnp.concatenate([fill, fill[:, :b]], axis=1)

    def step(j: Any, state: tuple) -> tuple:
        basis, proj, scale = state
        aq = matmat(jax.lax.dynamic_slice_in_dim(basis, j * b, b, axis=1))
        scale = jnp.maximum(scale, jnp.max(_column_norms(aq)))
        proj = jax.lax.dynamic_update_slice(proj, _mm(basis.T, aq), (0, j * b))
        random = jax.lax.dynamic_slice_in_dim(fill, j * b, b, axis=1)
        return _append_orthonormal(basis, (j + 1) * b, aq, random, scale), proj, scale

    basis, proj, scale = jax.lax.fori_loop(0, num_blocks, step, (basis, proj, scale))
    upper = jnp.triu(proj[:d])
    return Cycle(basis[:, :d], upper + jnp.triu(proj[:d], 1).T, scale)


def wanted_indices(which: Which, k: int, d: int) -> jax.Array:
    """Indices of the wanted ones among ``d`` ascending values: k largest/smallest/each end."""
    if which == "largest":
        return jnp.arange(d - k, d)
    if which == "smallest":
        return jnp.arange(k)
    return jnp.concatenate([jnp.arange(k), jnp.arange(d - k, d)])


class Eigen(NamedTuple):
    values: jax.Array
    vectors: jax.Array  # (n, b)
    residuals: jax.Array
    converged: jax.Array
    num_matvecs: jax.Array
    scale: jax.Array


class _Solver(NamedTuple):
    """The state of :func:`extreme_eigenpairs`, one block step at a time."""

    basis: jax.Array  # (n, m b): the current cycle's Krylov basis, filled up to block j
    proj: jax.Array  # (m b, m b): its projection, column blocks up to j - 1
    j: jax.Array  # the block whose product comes next
    cycle: jax.Array  # completed cycles
    steps: jax.Array  # products so far, in blocks
    scale: jax.Array  # largest |A q| or |theta| seen
    values: jax.Array  # the Ritz block's Rayleigh-Ritz values (b,), ascending
    vectors: jax.Array  # and vectors (n, b)
    residuals: jax.Array  # ||A x - theta x|| from a fresh product
    done: jax.Array


def extreme_eigenpairs(
    matmat: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    which: Which,
    k: int,
    num_blocks: int,
    max_cycles: int,
    tol: float,
    fill: jax.Array,
) -> Eigen:
    """Restarted block Lanczos for the ``k`` extreme eigenpairs (``2k`` for ``"both"``).

    ``x0`` is the ``(n, b)`` start block (``b`` = the number wanted), ``fill`` an
    ``(n, num_blocks * b)`` random normal matrix (see :func:`krylov_cycle`). A cycle runs
    ``num_blocks`` block steps from the current Ritz block, whose first product (``A X``) also
    gives the Ritz block's residuals; it then restarts from the new wanted Ritz vectors. The
    solver stops at the start of a cycle (after at least one) when each residual is at most
    ``tol`` times the largest ``|theta|`` seen, or when ``max_cycles`` cycles are done. One
    loop, one product per iteration: the product is compiled once.
    """
    n, b = x0.shape
    m = num_blocks
    d = m * b
    x, _ = jnp.linalg.qr(x0)

    def start_of_cycle(basis: jax.Array, aq: jax.Array) -> tuple:
        """Rayleigh-Ritz within the Ritz block (block 0), from its fresh product."""
        xb = basis[:, :b]
        small = _mm(xb.T, aq)
        theta, z = jnp.linalg.eigh(0.5 * (small + small.T))
        vectors, products = _mm(xb, z), _mm(aq, z)
        return theta, vectors, _column_norms(products - vectors * theta[None, :])

    def next_block(state: _Solver, aq: jax.Array, proj: jax.Array) -> tuple:
        random = jax.lax.dynamic_slice_in_dim(fill, state.j * b, b, axis=1)
        basis = _append_orthonormal(state.basis, (state.j + 1) * b, aq, random, state.scale)
        return basis, proj, state.j + 1, state.cycle, state.scale

    def restart(state: _Solver, aq: jax.Array, proj: jax.Array) -> tuple:
        t = jnp.triu(proj) + jnp.triu(proj, 1).T
        theta, y = jnp.linalg.eigh(t)
        x = _mm(state.basis, y[:, wanted_indices(which, k, d)])  # orthonormal
        basis = jnp.zeros_like(state.basis).at[:, :b].set(x)
        scale = jnp.maximum(state.scale, jnp.max(jnp.abs(theta)))  # ||A|| seen from the ends
        return basis, jnp.zeros_like(proj), jnp.zeros_like(state.j), state.cycle + 1, scale

    def body(state: _Solver) -> _Solver:
        aq = matmat(jax.lax.dynamic_slice_in_dim(state.basis, state.j * b, b, axis=1))
        scale = jnp.maximum(state.scale, jnp.max(_column_norms(aq)))
        values, vectors, residuals = jax.lax.cond(
            state.j == 0,
            start_of_cycle,
            lambda *_: (state.values, state.vectors, state.residuals),
            state.basis,
            aq,
        )
        scale = jnp.maximum(scale, jnp.max(jnp.abs(values)))
        converged = jnp.all(residuals <= tol * scale)
        failed = ~jnp.all(jnp.isfinite(aq))  # a NaN or inf product: stop, nothing will improve
        done = failed | (
            (state.j == 0) & (state.cycle >= 1) & (converged | (state.cycle >= max_cycles))
        )
        proj = jax.lax.dynamic_update_slice(state.proj, _mm(state.basis.T, aq), (0, state.j * b))
        state = state._replace(scale=scale)
        basis, proj, j, cycle, scale = jax.lax.cond(
            state.j < m - 1, next_block, restart, state, aq, proj
        )
        return _Solver(
            basis, proj, j, cycle, state.steps + 1, scale, values, vectors, residuals, done
        )

    init = _Solver(
        basis=jnp.zeros((n, d), x0.dtype).at[:, :b].set(x),
        proj=jnp.zeros((d, d), x0.dtype),
        j=jnp.asarray(0),
        cycle=jnp.asarray(0),
        steps=jnp.asarray(0),
        scale=jnp.asarray(0.0, x0.dtype),
        values=jnp.zeros(b, x0.dtype),
        vectors=x,
        residuals=jnp.full(b, jnp.inf, x0.dtype),
        done=jnp.asarray(False),
    )
    out = jax.lax.while_loop(lambda s: ~s.done, body, init)
    converged = jnp.all(out.residuals <= tol * out.scale)
    return Eigen(out.values, out.vectors, out.residuals, converged, b * out.steps, out.scale)


def dense_eigenpairs(
    matmat: Callable[[jax.Array], jax.Array], n: int, dtype: Any, which: Which, k: int
) -> Eigen:
    """All ``n`` products with the basis vectors, ``eigh``, and the wanted pairs (small ``n``)."""
    a = matmat(jnp.eye(n, dtype=dtype))
    values, vectors = jnp.linalg.eigh(0.5 * (a + a.T))
    idx = wanted_indices(which, k, n)
    values, vectors = values[idx], vectors[:, idx]
    residuals = _column_norms(_mm(a, vectors) - vectors * values[None, :])
    scale = jnp.max(jnp.abs(values))
    converged = jnp.all(jnp.isfinite(residuals))
    return Eigen(values, vectors, residuals, converged, jnp.asarray(n), scale)


def lanczos_quadrature(
    matvec: Callable[[jax.Array], jax.Array], q: jax.Array, num_steps: int, fill: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Gauss quadrature nodes and weights of the spectral measure of ``A`` seen from the unit
    vector ``q``: ``sum_l w_l g(theta_l)`` approximates ``q^T g(A) q`` (exactly for
    polynomials of degree < 2 num_steps). Costs ``num_steps`` products; ``fill`` is an
    ``(n, num_steps)`` random normal matrix for breakdowns."""

    def matmat(v: jax.Array) -> jax.Array:
        return matvec(v[:, 0])[:, None]

    out = krylov_cycle(matmat, q[:, None], num_steps, fill, jnp.asarray(0.0, q.dtype))
    nodes, vectors = jnp.linalg.eigh(out.projection)
    return nodes, vectors[0, :] ** 2
