"""The Hessian's extreme eigenpairs and its spectral density, from matrix-vector products only."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlgrad.curvature._lanczos import (
    Which,
    dense_eigenpairs,
    extreme_eigenpairs,
    lanczos_quadrature,
)
from mlgrad.curvature._operators import (
    FlatOperator,
    Matrix,
    check_positive_int,
    chunked_map,
    compiled,
    curvature_operator,
    default_key,
    matvec_operator,
)

_WHICH = ("largest", "smallest", "both")
#: Krylov dimension per restart cycle of the eigenvalue solver (at least 8 blocks); a cycle
#: ends early once the predicted residuals are within the tolerance.
KRYLOV_DIM = 32
#: Restart cycles by default.
DEFAULT_CYCLES = 30
#: Bound on the entries of the Lanczos bases held at once by the spectral density (n x steps).
_DENSITY_CHUNK_ENTRIES = 2**24


class Eigenpairs(NamedTuple):
    """Extreme eigenvalues of a curvature matrix with their eigenvectors.

    Attributes:
      values: the eigenvalues, ascending, shape ``(k,)`` (``(2k,)`` for ``which="both"``: the
        ``k`` smallest, then the ``k`` largest).
      vectors: the unit eigenvectors, a pytree like the differentiated argument with a leading
        axis: ``vectors[i]`` (leaf by leaf) belongs to ``values[i]``.
      residuals: ``||M v_i - lambda_i v_i||`` for each pair, computed from a fresh product.
        Some eigenvalue of ``M`` lies within ``residuals[i]`` of ``values[i]``.
      converged: whether every residual is at most ``tol`` times the largest ``|lambda|`` seen.
      num_matvecs: the number of matrix-vector products used.
    """

    values: jax.Array
    vectors: Any
    residuals: jax.Array
    converged: jax.Array
    num_matvecs: jax.Array


class SpectralDensity(NamedTuple):
    r"""The eigenvalue density of a curvature matrix by stochastic Lanczos quadrature.

    For each probe :math:`q` (a unit Rademacher vector) Lanczos gives Gauss quadrature nodes
    :math:`\theta_l` and weights :math:`w_l` (summing to 1) with
    :math:`\sum_l w_l g(\theta_l) \approx q^\top g(M) q`, whose mean over :math:`q` is
    :math:`\operatorname{tr} g(M) / n`: the spectral measure
    :math:`\frac1n \sum_i \delta(t - \lambda_i)` is estimated by the average of the probes'
    weighted nodes, and smoothed with a Gaussian of width ``sigma`` for plotting.

    Attributes:
      grid: the points ``t`` (ascending) where the density is evaluated.
      density: the smoothed density at ``grid``; it integrates to about 1
        (``plt.plot(sd.grid, sd.density)``).
      nodes: ``(num_probes, num_iters)`` quadrature nodes (Ritz values), per probe.
      weights: their weights, each row summing to 1.
      sigma: the width of the Gaussian smoothing.
    """

    grid: jax.Array
    density: jax.Array
    nodes: jax.Array
    weights: jax.Array
    sigma: jax.Array

    def moment(self, j: int) -> tuple[jax.Array, jax.Array]:
        r"""The ``j``-th moment :math:`\frac1n \operatorname{tr} M^j` estimated from the
        quadrature (exact per probe for ``j < 2 num_iters``): the mean over the probes and its
        standard error, ``(estimate, stderr)``."""
        per_probe = jnp.sum(self.weights * self.nodes**j, axis=1)
        p = per_probe.shape[0]
        stderr = jnp.std(per_probe, ddof=1) / math.sqrt(p) if p > 1 else jnp.nan
        return jnp.mean(per_probe), jnp.asarray(stderr)


def _check_which(which: Any, k: Any, n: int, name: str) -> int:
    if which not in _WHICH:
        raise ValueError(f"{name}: which must be one of {_WHICH}, got {which!r}.")
    check_positive_int(k, "k", name)
    wanted = 2 * k if which == "both" else k
    if wanted > n:
        raise ValueError(
            f"{name}: asked for {wanted} eigenvalue{'s' if wanted > 1 else ''} "
            f"(k={k}{', from each end' if which == 'both' else ''}) of a {n} x {n} matrix; "
            f"k can be at most {n // 2 if which == 'both' else n}."
        )
    return wanted


def _start_block(v0: Any, op: FlatOperator, random: jax.Array, name: str) -> jax.Array:
    """The ``(b, n)`` start block: ``v0``'s vectors (one, or a stack of them along a leading
    axis), then the rows of the random block."""
    b = random.shape[0]
    if v0 is None:
        return random
    like = op.unravel(jnp.zeros(op.size, op.dtype))
    shapes = [jnp.shape(a) for a in jax.tree_util.tree_leaves(like)]
    leaves = jax.tree_util.tree_leaves(v0)
    same = jax.tree_util.tree_structure(v0) == jax.tree_util.tree_structure(like)
    v0_shapes = [jnp.shape(a) for a in leaves]
    if same and v0_shapes == shapes:
        rows = ravel_pytree(v0)[0][None, :]
    elif (
        same
        and all(len(s) == len(t) + 1 for s, t in zip(v0_shapes, shapes, strict=True))
        and len({s[0] for s in v0_shapes}) == 1
        and [s[1:] for s in v0_shapes] == shapes
    ):
        rows = jax.vmap(lambda t: ravel_pytree(t)[0])(v0)
    else:
        raise ValueError(
            f"{name}: v0 must be shaped like the differentiated argument "
            f"({jax.tree_util.tree_map(jnp.shape, like)}), or be a stack of such vectors along "
            f"a leading axis; got {jax.tree_util.tree_map(jnp.shape, v0)}."
        )
    if rows.shape[0] > b:
        raise ValueError(
            f"{name}: v0 holds {rows.shape[0]} start vectors, more than the {b} eigenvectors "
            "sought; give at most that many."
        )
    return random.at[: rows.shape[0]].set(rows.astype(op.dtype))


def default_tol(dtype: Any) -> float:
    """``eps ** 0.6``: about 4e-10 in float64, 7e-5 in float32."""
    return float(jnp.finfo(dtype).eps) ** 0.6


def _eigenpairs(
    op: FlatOperator,
    k: int,
    which: Which,
    key: Any,
    num_iters: int | None,
    tol: float | None,
    v0: Any,
    name: str,
) -> Eigenpairs:
    b = _check_which(which, k, op.size, name)
    blocks = max(8, math.ceil(KRYLOV_DIM / b))
    if num_iters is not None:
        check_positive_int(num_iters, "num_iters", name)
    if tol is not None and not (isinstance(tol, int | float) and tol >= 0):
        raise ValueError(f"{name}: tol must be a number >= 0, got {tol!r}.")
    tol = default_tol(op.dtype) if tol is None else float(tol)
    key = default_key(key)
    if op.size <= blocks * b:  # the whole space is no larger than one Krylov cycle
        eig = dense_eigenpairs(op.matmat, op.size, op.dtype, which, k)
    else:
        if num_iters is not None:
            blocks = max(2, min(blocks, num_iters))
        cycles = DEFAULT_CYCLES if num_iters is None else max(1, num_iters // blocks)
        random = jax.random.normal(key, ((blocks + 1) * b, op.size), op.dtype)
        x0 = _start_block(v0, op, random[:b], name)
        eig = extreme_eigenpairs(op.matmat, x0, which, k, blocks, cycles, tol, random[b:])
    vectors = jax.vmap(op.unravel)(eig.vectors)
    return Eigenpairs(eig.values, vectors, eig.residuals, eig.converged, eig.num_matvecs)


def hessian_eigenvalues(
    f: Any,
    *args: Any,
    k: int = 1,
    which: Which = "largest",
    argnums: int | tuple[int, ...] = 0,
    matrix: Matrix = "hessian",
    key: jax.Array | None = None,
    num_iters: int | None = None,
    tol: float | None = None,
    v0: Any = None,
) -> Eigenpairs:
    r"""The ``k`` extreme eigenvalues and eigenvectors of the Hessian, from Hessian-vector
    products only: the Hessian is never built.

    .. math:: H v_i = \lambda_i v_i, \qquad \|v_i\| = 1, \qquad
              H = \nabla^2 f(x) \quad\text{(or } G = J^\top H_\ell J\text{)}

    All eigenvalues positive: the function is a cup (a strict local minimum) at ``x``; some
    negative: a saddle. The largest, :math:`\lambda_{\max}`, is the sharpness: gradient descent
    with step size :math:`\eta` is stable near a minimum only if :math:`\eta < 2/\lambda_{\max}`.

    Args:
      f: a scalar function, called as ``f(*args)``; or the pair ``(model_fn, loss_fn)``
        standing for ``loss_fn(model_fn(params, x), y)``, with ``args = (params, x, y)`` (as
        :func:`mlgrad.gnvp`); bind keyword arguments with ``functools.partial``.
      *args: the point: ``f``'s positional arguments; ``args[argnums]`` is differentiated (an
        array or a pytree, e.g. a dict of parameters), the others are held fixed (data).
      k: how many eigenvalues, counted with multiplicity (from each end for ``"both"``).
      which: ``"largest"`` (default), ``"smallest"`` (the most negative) or ``"both"``.
      argnums: which positional argument the Hessian is over (a tuple: over all of them
        together).
      matrix: ``"hessian"`` (default) or ``"ggn"``: the generalized Gauss-Newton matrix
        :math:`J^\top H_\ell J` of ``f = (model_fn, loss_fn)``, positive semi-definite for a
        convex loss.
      key: a ``jax.random`` key for the start vectors (default ``PRNGKey(0)``, so that repeated
        calls agree).
      num_iters: the most block Lanczos steps, over all restarts (each step is one product per
        sought eigenvalue; one more step gives the final residuals); default 30 restart cycles
        of up to 32 products (at least 8 steps) each. A NaN or infinite product stops the solver
        (``converged`` False).
      tol: stop when every pair has :math:`\|H v - \lambda v\| \le` ``tol`` :math:`\cdot
        \max|\lambda|`; default ``eps ** 0.6`` of the dtype (4e-10 in float64, 7e-5 in
        float32). The eigenvalue error is at most the residual, and usually about its square
        divided by the gap to the next eigenvalue.
      v0: start vector(s), shaped like the differentiated argument (or a stack of up to
        ``k`` of them along a leading axis), e.g. the previous call's eigenvectors to
        warm-start a call at nearby parameters; the rest are random.

    Returns:
      :class:`Eigenpairs` ``(values, vectors, residuals, converged, num_matvecs)``, values
      ascending; ``converged`` is False when ``num_iters`` ran out first.

    Example (the saddle :math:`x^2 - y^2` of the notes, and a cup):
      >>> import jax.numpy as jnp, mlgrad
      >>> saddle = mlgrad.hessian_eigenvalues(lambda p: p[0] ** 2 - p[1] ** 2,
      ...                                     jnp.array([1.0, 1.0]), which="both")
      >>> saddle.values
      Array([-2.,  2.], dtype=float32)
      >>> loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2)   # H = 2 x^T x / n
      >>> x = jnp.array([[1.0, 0.0], [0.0, 3.0]])
      >>> mlgrad.hessian_eigenvalues(loss, jnp.zeros(2), x, jnp.zeros(2), k=2).values
      Array([1., 9.], dtype=float32)

    Algorithm: restarted block Lanczos with full reorthogonalisation (blocks of ``b = k``
    vectors, or ``2k`` for ``"both"``, so that an eigenvalue of multiplicity up to ``k`` is
    found that many times; a Krylov space of up to ``max(32, 8b)`` vectors per cycle, ended
    early once the residuals the Lanczos relation predicts are within ``tol``; a breakdown
    such as :math:`H = 2I`'s is continued with random directions); a matrix no larger than one
    cycle's Krylov space (``n <= max(32, 8b)``) is built from ``n`` products and diagonalised
    exactly.
    Each product is forward over reverse mode through a linearisation of the gradient taken
    once (:func:`mlgrad.hvp`'s product). jit-able and vmap-able: ``k``, ``which``,
    ``num_iters``, ``tol`` and ``matrix`` are static. Not differentiable (the solver is a
    while loop); for the derivative of a simple eigenvalue use its eigenvector,
    :math:`d\lambda = v^\top (dH) v`, e.g. ``jax.grad`` of ``v . hvp(f, x, v)`` with ``v``
    held fixed (``jax.lax.stop_gradient``).
    """
    name = "hessian_eigenvalues"

    def run(args: tuple, key: Any, v0: Any) -> Eigenpairs:
        op = curvature_operator(f, args, argnums, matrix, name)
        return _eigenpairs(op, k, which, key, num_iters, tol, v0, name)

    return compiled(run, args, key, v0)


def eigenvalues_of(
    matvec: Callable[[Any], Any],
    like: Any,
    *,
    k: int = 1,
    which: Which = "largest",
    key: jax.Array | None = None,
    num_iters: int | None = None,
    tol: float | None = None,
    v0: Any = None,
) -> Eigenpairs:
    r""":func:`hessian_eigenvalues` for any symmetric matrix given by its product.

    Args:
      matvec: ``v -> M v`` for a symmetric ``M``, on pytrees like ``like`` (e.g. a
        preconditioned Hessian :math:`P^{-1/2} H P^{-1/2}`, a Fisher matrix).
      like: a pytree with the shapes and dtypes of the vectors (e.g. the parameters).
      k, which, key, num_iters, tol, v0: as :func:`hessian_eigenvalues`.

    Returns:
      :class:`Eigenpairs`.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad.curvature import eigenvalues_of
      >>> d = jnp.arange(1.0, 101.0)                     # diag(1, 2, ..., 100)
      >>> top = eigenvalues_of(lambda v: d * v, jnp.zeros(100), k=3)
      >>> [round(float(v), 3) for v in top.values], bool(top.converged)
      ([98.0, 99.0, 100.0], True)
    """

    def run(like: Any, key: Any, v0: Any) -> Eigenpairs:
        op = matvec_operator(matvec, like, "eigenvalues_of")
        return _eigenpairs(op, k, which, key, num_iters, tol, v0, "eigenvalues_of")

    return compiled(run, like, key, v0)


def _density(
    op: FlatOperator,
    num_probes: int,
    num_iters: int,
    key: Any,
    grid: Any,
    sigma: float | None,
    batch_size: int | None,
    name: str,
) -> SpectralDensity:
    check_positive_int(num_probes, "num_probes", name)
    steps = min(check_positive_int(num_iters, "num_iters", name), op.size)
    n = op.size
    if batch_size is None:
        batch = max(1, min(num_probes, _DENSITY_CHUNK_ENTRIES // (n * steps)))
    else:
        batch = min(check_positive_int(batch_size, "batch_size", name), num_probes)

    def one_probe(probe_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        # one draw: the signs of the first row are the Rademacher probe (each +-1 with
        # probability 1/2, independently), the others fill breakdowns
        random = jax.random.normal(probe_key, (steps + 1, n), op.dtype)
        q = jnp.where(random[0] < 0, -1.0, 1.0).astype(op.dtype) / jnp.sqrt(float(n))
        return lanczos_quadrature(op.matvec, q, steps, random[1:])

    keys = jax.random.split(default_key(key), num_probes)
    nodes, weights = chunked_map(one_probe, keys, batch)
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    if sigma is None:
        width = jnp.maximum(hi - lo, jnp.maximum(jnp.abs(lo), jnp.abs(hi)) * 1e-3)
        sig = 0.01 * jnp.where(width > 0, width, 1.0)
    else:
        if not (isinstance(sigma, int | float) and sigma > 0):
            raise ValueError(f"{name}: sigma must be a number > 0, got {sigma!r}.")
        sig = jnp.asarray(sigma, op.dtype)
    if isinstance(grid, int) and not isinstance(grid, bool):
        check_positive_int(grid, "grid", name, minimum=2)
        t = jnp.linspace(lo - 5 * sig, hi + 5 * sig, grid)
    else:
        t = jnp.asarray(grid, op.dtype)
        if t.ndim != 1:
            raise ValueError(
                f"{name}: grid must be a number of points or a 1-D array of them, got shape "
                f"{t.shape}."
            )
    z = (t[:, None, None] - nodes[None]) / sig
    kernel = jnp.exp(-0.5 * z**2) / (sig * jnp.sqrt(2 * jnp.pi))
    density = jnp.sum(kernel * weights[None], axis=(1, 2)) / num_probes
    return SpectralDensity(t, density, nodes, weights, sig)


def spectral_density(
    f: Any,
    *args: Any,
    argnums: int | tuple[int, ...] = 0,
    matrix: Matrix = "hessian",
    num_probes: int = 8,
    num_iters: int = 64,
    key: jax.Array | None = None,
    grid: Any = 512,
    sigma: float | None = None,
    batch_size: int | None = None,
) -> SpectralDensity:
    r"""The eigenvalue density of the Hessian by stochastic Lanczos quadrature (SLQ).

    .. math:: \phi(t) = \frac1n \sum_{i=1}^n \delta(t - \lambda_i)
              \approx \frac{1}{P} \sum_{p=1}^{P} \sum_{l=1}^{m} w_{pl}\,
              \mathcal{N}(t;\, \theta_{pl}, \sigma^2)

    where :math:`\theta_{pl}, w_{pl}` are the Gauss quadrature nodes and weights that ``m``
    Lanczos steps from the unit Rademacher probe :math:`q_p` give (Ghorbani et al. 2019,
    PyHessian's ``density``). Each probe's quadrature integrates polynomials of degree below
    ``2m`` exactly: ``moment(j)`` estimates :math:`\operatorname{tr}(H^j)/n` without bias.

    Args:
      f, *args, argnums, matrix: as :func:`hessian_eigenvalues`.
      num_probes: independent probes ``P`` (each costs ``num_iters`` products).
      num_iters: Lanczos steps ``m`` per probe (at most ``n``).
      key: a ``jax.random`` key for the probes (default ``PRNGKey(0)``).
      grid: the number of evenly spaced points spanning the nodes (default 512), or the
        points themselves (a 1-D array).
      sigma: the width of the Gaussian smoothing; default 1% of the spread of the nodes.
      batch_size: probes run at once (default: as many as keep the Lanczos bases to about
        16 million entries).

    Returns:
      :class:`SpectralDensity` ``(grid, density, nodes, weights, sigma)``; plot
      ``density`` against ``grid``.

    Example (:math:`H = \mathrm{diag}(1, 2, 3)`: the moment :math:`\operatorname{tr}(H^2)/3`):
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: 0.5 * jnp.sum(jnp.array([1.0, 2.0, 3.0]) * x ** 2)
      >>> sd = mlgrad.spectral_density(f, jnp.zeros(3))
      >>> round(float(sd.moment(2)[0]), 4), sd.grid.shape
      (4.6667, (512,))
    """
    name = "spectral_density"

    def run(args: tuple, key: Any, grid: Any) -> SpectralDensity:
        op = curvature_operator(f, args, argnums, matrix, name)
        return _density(op, num_probes, num_iters, key, grid, sigma, batch_size, name)

    return compiled(run, args, key, grid)


def spectral_density_of(
    matvec: Callable[[Any], Any],
    like: Any,
    *,
    num_probes: int = 8,
    num_iters: int = 64,
    key: jax.Array | None = None,
    grid: Any = 512,
    sigma: float | None = None,
    batch_size: int | None = None,
) -> SpectralDensity:
    """:func:`spectral_density` for any symmetric matrix given by its product ``matvec``
    on pytrees like ``like``.

    Example:
      >>> import jax.numpy as jnp
      >>> from mlgrad.curvature import spectral_density_of
      >>> sd = spectral_density_of(lambda v: 2.0 * v, jnp.zeros(50))   # 2 I
      >>> round(float(sd.moment(1)[0]), 4), round(float(sd.moment(2)[0]), 4)
      (2.0, 4.0)
    """
    name = "spectral_density_of"

    def run(like: Any, key: Any, grid: Any) -> SpectralDensity:
        op = matvec_operator(matvec, like, name)
        return _density(op, num_probes, num_iters, key, grid, sigma, batch_size, name)

    return compiled(run, like, key, grid)
