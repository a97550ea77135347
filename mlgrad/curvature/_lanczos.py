"""Block Lanczos with full reorthogonalisation, restarts and breakdown handling (flat arrays).

Both the eigenvalue solver (:func:`extreme_eigenpairs`) and stochastic Lanczos quadrature
(:func:`krylov_cycle`) grow an orthonormal basis ``Q = [Q_0, ..., Q_{m-1}]`` (``b`` columns per
block) of the block Krylov space of a symmetric matrix ``A`` from a start block ``Q_0``, and
Rayleigh-Ritz on the projection ``T = Q^T A Q``. Each calls the product from one place only,
inside its loop, so that the product (a model's forward and backward pass) is compiled once.

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

:func:`extreme_eigenpairs` restarts such cycles from the wanted Ritz vectors (explicit
restarts: each cycle starts from the current best block, whose first product also gives its
residuals) until every one has ``||A x - theta x|| <= tol * max|theta|``.
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


# The basis is stored with its vectors as rows, (d, n): both of its products below then read it
# once, in memory order (with columns, (n, d), XLA on a CPU computes basis^T w 5 to 10 times
# slower at n = 400,000, and the basis's passes are what a large model's Lanczos step costs
# beside its product), and writing a vector is one contiguous row.


def _coefficients(basis: jax.Array, w: jax.Array) -> jax.Array:
    """``(d, b)``: the inner products of the basis rows with the rows of ``w`` ``(b, n)``."""
    return jnp.einsum("dn,bn->db", basis, w, precision=_HIGHEST)


def _combine(coefficients: jax.Array, basis: jax.Array) -> jax.Array:
    """``(b, n)``: the combinations of the basis rows that the ``(d, b)`` coefficients give."""
    return jnp.einsum("db,dn->bn", coefficients, basis, precision=_HIGHEST)


def _breakdown_threshold(d: int, dtype: Any, scale: jax.Array) -> jax.Array:
    return 10.0 * jnp.sqrt(float(d)) * jnp.finfo(dtype).eps * scale


def _append_orthonormal(
    basis: jax.Array,
    start: Any,
    w: jax.Array,
    fill: jax.Array,
    scale: jax.Array,
    coefficients: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``basis`` ``(d, n)`` with rows ``start, start + 1, ...`` set to an orthonormal basis of
    the span of the rows of ``w`` ``(b, n)`` orthogonalised against the basis rows that
    ``mask`` marks (1 for a row in use, 0 for one to ignore; all by default, when the unused
    rows are zero); a row that is numerically in the span already (breakdown) is replaced by
    the same row of ``fill``, orthogonalised. Returns the basis and the new mask.

    Block Gram-Schmidt with reorthogonalisation: one pass of the whole block against the basis
    (with ``coefficients = basis w^T``, masked, when the caller has them already), then row by
    row a pass against the basis and the block's earlier rows, and a second one only where
    that pass removed most of the row (Daniel-Gragg-Kaufman-Stewart's criterion), which in
    Lanczos is rare: about four reads of the basis per row."""
    threshold = _breakdown_threshold(basis.shape[0], w.dtype, scale)
    if mask is None:
        mask = jnp.ones(basis.shape[0], basis.dtype)
    if coefficients is None:
        coefficients = _coefficients(basis, w) * mask[:, None]
    w = w - _combine(coefficients, basis)

    def row(i: Any, state: tuple) -> tuple:
        basis, mask = state

        def project(z: jax.Array) -> jax.Array:
            return z - _mm(mask * _mm(basis, z), basis)

        z = w[i]
        before = jnp.linalg.norm(z)
        z = project(z)
        z = jax.lax.cond(jnp.linalg.norm(z) < 0.7 * before, project, lambda z: z, z)
        z = jax.lax.cond(
            jnp.linalg.norm(z) > threshold,
            lambda z: z,
            lambda _: project(project(fill[i])),
            z,
        )
        z = z / jnp.linalg.norm(z)
        basis = jax.lax.dynamic_update_slice(basis, z[None, :], (start + i, 0))
        return basis, mask.at[start + i].set(1)

    return jax.lax.fori_loop(0, w.shape[0], row, (basis, mask))


def _row_norms(a: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(a * a, axis=-1))


class Cycle(NamedTuple):
    basis: jax.Array  # (m b, n), orthonormal rows
    projection: jax.Array  # (m b, m b), Q A Q^T (Q with the basis vectors as rows)
    scale: jax.Array  # the largest |A q| seen (an estimate of ||A|| from below)


def krylov_cycle(
    matmat: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    num_blocks: int,
    fill: jax.Array,
    scale: jax.Array,
) -> Cycle:
    """``num_blocks`` blocks of block Lanczos from the orthonormal rows of ``x`` ``(b, n)``;
    ``matmat`` maps ``(b, n)`` rows to their products.

    Costs ``num_blocks * b`` products, all from one call site of ``matmat`` (a product is
    compiled once). ``num_blocks * b`` must not exceed ``n``. ``fill`` is a
    ``(num_blocks * b, n)`` random normal matrix: block ``j`` of it replaces what step ``j``
    lacks after a breakdown (drawn once, outside the loops, so that no random number generator
    is compiled into them).
    """
    b, n = x.shape
    d = num_blocks * b
    # one spare block: every step appends its successor, the last one's is dropped
    basis = jnp.zeros((d + b, n), x.dtype).at[:b].set(x)
    proj = jnp.zeros((d + b, d), x.dtype)
    fill = jnp.concatenate([fill, fill[:b]])

    def step(j: Any, state: tuple) -> tuple:
        basis, proj, scale = state
        aq = matmat(jax.lax.dynamic_slice_in_dim(basis, j * b, b))
        scale = jnp.maximum(scale, jnp.max(_row_norms(aq)))
        coefficients = _coefficients(basis, aq)
        proj = jax.lax.dynamic_update_slice(proj, coefficients, (0, j * b))
        random = jax.lax.dynamic_slice_in_dim(fill, j * b, b)
        basis, _ = _append_orthonormal(basis, (j + 1) * b, aq, random, scale, coefficients)
        return basis, proj, scale

    basis, proj, scale = jax.lax.fori_loop(0, num_blocks, step, (basis, proj, scale))
    upper = jnp.triu(proj[:d])
    return Cycle(basis[:d], upper + jnp.triu(proj[:d], 1).T, scale)


def wanted_indices(which: Which, k: int, d: int) -> jax.Array:
    """Indices of the wanted ones among ``d`` ascending values: k largest/smallest/each end."""
    if which == "largest":
        return jnp.arange(d - k, d)
    if which == "smallest":
        return jnp.arange(k)
    return jnp.concatenate([jnp.arange(k), jnp.arange(d - k, d)])


class Eigen(NamedTuple):
    values: jax.Array
    vectors: jax.Array  # (b, n): one eigenvector per row
    residuals: jax.Array
    converged: jax.Array
    num_matvecs: jax.Array
    scale: jax.Array


class _Solver(NamedTuple):
    """The state of :func:`extreme_eigenpairs`, one block step at a time."""

    basis: jax.Array  # ((m + 1) b, n): the current cycle's Krylov basis, then a spare block
    mask: jax.Array  # ((m + 1) b,): 1 for the rows of this cycle filled so far, else 0
    proj: jax.Array  # (m b, m b): the projection, column blocks up to j - 1
    j: jax.Array  # the block whose product comes next
    cycle: jax.Array  # completed cycles
    steps: jax.Array  # products so far, in blocks
    scale: jax.Array  # largest |A q| or |theta| seen
    values: jax.Array  # the Ritz block's Rayleigh-Ritz values (b,), ascending
    vectors: jax.Array  # and vectors (b, n)
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

    ``x0`` is the ``(b, n)`` start block (``b`` = the number wanted, one vector per row),
    ``fill`` a ``(num_blocks * b, n)`` random normal matrix (see :func:`krylov_cycle`). A
    cycle grows the Krylov space of the current Ritz block by up to ``num_blocks`` blocks; the
    first product of a cycle (``A X``) gives the Ritz block's true residuals. The cycle ends,
    and the solver restarts from the new wanted Ritz vectors, after its last block or as soon
    as (from the second block on) the residuals that the Lanczos relation predicts,
    ``||B_j y_last||``, are within the tolerance. The solver stops at the start of a cycle
    (after at least one) when each true residual is at most ``tol`` times the largest
    ``|theta|`` seen, or when ``max_cycles`` cycles are done: an easy problem costs the steps
    it needs and one block more, not whole cycles.

    One loop, one product per iteration (the product is compiled once), and the basis is only
    ever updated in place: a restart writes the Ritz block over block 0 and marks the other
    rows unused (``mask``) instead of clearing them, so no step copies the basis.
    """
    b, n = x0.shape
    m = num_blocks
    d = m * b
    q, _ = jnp.linalg.qr(x0.T)
    x = q.T
    fill = jnp.concatenate([fill, fill[:b]])  # the spare block's too

    def start_of_cycle(xb: jax.Array, aq: jax.Array) -> tuple:
        """Rayleigh-Ritz within the Ritz block (block 0), from its fresh product."""
        small = _coefficients(xb, aq)
        theta, z = jnp.linalg.eigh(0.5 * (small + small.T))
        vectors, products = _combine(z, xb), _combine(z, aq)
        return theta, vectors, _row_norms(products - theta[:, None] * vectors)

    def ritz(proj: jax.Array, filled: jax.Array) -> tuple:
        """The wanted Ritz pairs of the filled part of the projection: ``(theta, y)`` with
        ``y`` the ``(d, b)`` coordinates (zero outside the filled part). The unfilled part's
        diagonal is set beyond the filled part's spectrum (its Frobenius norm bounds it) on
        the side away from the wanted end, so that it decouples."""
        t = jnp.triu(proj) + jnp.triu(proj, 1).T
        far = 2.0 * jnp.linalg.norm(t) + 1.0
        parts = []
        for end in ("smallest", "largest"):
            if which not in (end, "both"):
                continue
            shift = far if end == "smallest" else -far
            theta, y = jnp.linalg.eigh(t + jnp.diag(jnp.where(filled, 0.0, shift)))
            idx = wanted_indices(end, k, d)
            parts.append((theta[idx], jnp.where(filled[:, None], y[:, idx], 0.0)))
        return jnp.concatenate([p[0] for p in parts]), jnp.concatenate([p[1] for p in parts], 1)

    def body(state: _Solver) -> _Solver:
        block = jax.lax.dynamic_slice_in_dim(state.basis, state.j * b, b)
        aq = matmat(block)
        scale = jnp.maximum(state.scale, jnp.max(_row_norms(aq)))
        values, vectors, residuals = jax.lax.cond(
            state.j == 0,
            start_of_cycle,
            lambda *_: (state.values, state.vectors, state.residuals),
            block,
            aq,
        )
        scale = jnp.maximum(scale, jnp.max(jnp.abs(values)))
        converged = jnp.all(residuals <= tol * scale)
        failed = ~jnp.all(jnp.isfinite(aq))  # a NaN or inf product: stop, nothing will improve
        done = failed | (
            (state.j == 0) & (state.cycle >= 1) & (converged | (state.cycle >= max_cycles))
        )
        c = _coefficients(state.basis, aq) * state.mask[:, None]
        proj = jax.lax.dynamic_update_slice(state.proj, c[:d], (0, state.j * b))
        random = jax.lax.dynamic_slice_in_dim(fill, state.j * b, b)
        # the successor of block j (into the spare block at a cycle's end, where it is unused)
        basis, mask = _append_orthonormal(
            state.basis, (state.j + 1) * b, aq, random, scale, c, state.mask
        )
        # the Ritz pairs of the space so far, and the residuals the Lanczos relation predicts:
        # A Q^T y - theta Q^T y = Q_{j+1}^T B y_j, B the coupling of block j to block j + 1
        filled = jnp.arange(d) < (state.j + 1) * b
        theta, y = ritz(proj, filled)
        successor = jax.lax.dynamic_slice_in_dim(basis, (state.j + 1) * b, b)
        coupling = _coefficients(successor, aq)  # (b, b): new rows against the products
        predicted = _row_norms((coupling @ jax.lax.dynamic_slice_in_dim(y, state.j * b, b)).T)
        early = (state.j >= 1) & jnp.all(predicted <= tol * scale)
        restart = (state.j == m - 1) | early

        def new_ritz_block(basis: jax.Array) -> jax.Array:
            padded = jnp.concatenate([y, jnp.zeros((b, y.shape[1]), y.dtype)])
            q, _ = jnp.linalg.qr(_combine(padded, basis).T)  # orthonormal ("both": two sets)
            return q.T

        first = jax.lax.cond(restart, new_ritz_block, lambda basis: basis[:b], basis)
        basis = jax.lax.dynamic_update_slice(basis, first, (0, 0))
        return _Solver(
            basis=basis,
            mask=jnp.where(restart, (jnp.arange(d + b) < b).astype(mask.dtype), mask),
            proj=jnp.where(restart, 0.0, proj),
            j=jnp.where(restart, 0, state.j + 1),
            cycle=state.cycle + restart,
            steps=state.steps + 1,
            scale=jnp.maximum(scale, jnp.max(jnp.abs(theta))),
            values=values,
            vectors=vectors,
            residuals=residuals,
            done=done,
        )

    init = _Solver(
        basis=jnp.zeros((d + b, n), x0.dtype).at[:b].set(x),
        mask=(jnp.arange(d + b) < b).astype(x0.dtype),
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
    a = matmat(jnp.eye(n, dtype=dtype))  # rows A e_i: A^T = A
    values, vectors = jnp.linalg.eigh(0.5 * (a + a.T))
    idx = wanted_indices(which, k, n)
    values, vectors = values[idx], vectors[:, idx].T
    residuals = _row_norms(_mm(vectors, a) - values[:, None] * vectors)
    scale = jnp.max(jnp.abs(values))
    converged = jnp.all(jnp.isfinite(residuals))
    return Eigen(values, vectors, residuals, converged, jnp.asarray(n), scale)


def lanczos_quadrature(
    matvec: Callable[[jax.Array], jax.Array], q: jax.Array, num_steps: int, fill: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Gauss quadrature nodes and weights of the spectral measure of ``A`` seen from the unit
    vector ``q``: ``sum_l w_l g(theta_l)`` approximates ``q^T g(A) q`` (exactly for
    polynomials of degree < 2 num_steps). Costs ``num_steps`` products; ``fill`` is a
    ``(num_steps, n)`` random normal matrix for breakdowns."""
    out = krylov_cycle(jax.vmap(matvec), q[None, :], num_steps, fill, jnp.asarray(0.0, q.dtype))
    nodes, vectors = jnp.linalg.eigh(out.projection)
    return nodes, vectors[0, :] ** 2
