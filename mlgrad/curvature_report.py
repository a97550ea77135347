"""Is it a cup? The curvature of a loss at trained parameters, read the lecture notes' way.

"The second-order derivative tells us whether the function looks like a cup or an upside-down
cup." For a trained model the second derivative is the Hessian :math:`H` of the training loss
over the parameters, and the pieces here answer the notes' question about it, and the
question every optimizer asks (is my step size stable here?):

* :func:`hessian_spectrum`          the eigenvalues of :math:`H`: all of them from the dense
                                    matrix for a small model, the extremes (block Lanczos) and
                                    the spectral density (stochastic Lanczos quadrature) for a
                                    large one; :func:`eigenvalue_density` smooths exact ones
* :func:`verdict`                   cup, upside-down cup, saddle or flat, with a tolerance
                                    relative to :math:`\\max|\\lambda|` (:data:`FLAT_RTOL`)
* :func:`condition_number`          :math:`\\lambda_{\\max} / \\lambda_{\\min}` of a cup
* :func:`stability_limit`           the largest sharpness the optimizer's step tolerates:
                                    :math:`2/\\eta`, :math:`2(1+\\beta)/\\eta`, Nesterov's,
                                    Adam's :math:`(2+2\\beta_1)/((1-\\beta_1)\\eta)`
* :func:`adam_preconditioner`,      Adam's frozen preconditioner :math:`P` from its state, and
  :func:`preconditioned_sharpness`  :math:`\\lambda_{\\max}(P^{-1}H)` (Cohen et al. 2022)
* :func:`standing`                  where a sharpness stands against its limit
* :func:`filter_normalized`,        the loss landscape (Li et al. 2018): filter-normalised
  :func:`loss_along`,               random directions, the loss along directions and over
  :func:`loss_plane`                a plane of two
* :func:`least_squares_hessian`     the closed form :math:`2 Z^\\top Z / n` of linear
                                    regression, to check the others against

Everything works on flat parameter vectors (``jax.flatten_util.ravel_pytree``) and a loss
``f(flat) -> scalar``; call it inside ``jax.enable_x64(True)`` for float64 answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlgrad.curvature import eigenvalues_of, hessian_eigenvalues, spectral_density

__all__ = [
    "DENSE_MAX",
    "FLAT_RTOL",
    "Density",
    "Spectrum",
    "StabilityLimit",
    "Standing",
    "Verdict",
    "adam_preconditioner",
    "condition_number",
    "eigenvalue_density",
    "filter_normalized",
    "hessian_spectrum",
    "least_squares_hessian",
    "loss_along",
    "loss_plane",
    "preconditioned_sharpness",
    "stability_limit",
    "standing",
    "verdict",
]

#: Eigenvalues within this fraction of :math:`\max|\lambda|` of zero count as flat. Far above
#: what rounding and the eigen-solvers leave in float64 (1e-13 and 4e-10 of the largest), and
#: far below any curvature that training feels: near the stability limit a direction of
#: curvature :math:`10^{-5}\lambda_{\max}` shrinks by :math:`1/e` only every 50,000 steps.
FLAT_RTOL = 1e-5
#: Up to this many parameters the Hessian is built densely and diagonalised exactly.
DENSE_MAX = 2000
#: The most Hessian-vector products spent on the smallest eigenvalue (Lanczos).
BOTTOM_PRODUCTS = 1200
#: Directions whose Hessian products are computed at once while building a dense Hessian.
_DENSE_BATCH = 64
#: Loss evaluations computed at once along a line or over a plane.
_LANDSCAPE_BATCH = 32


# --------------------------------------------------------------------------------------------
# The spectrum
# --------------------------------------------------------------------------------------------


class Density(NamedTuple):
    """An eigenvalue density :math:`\\phi(t) \\approx \\frac1n \\sum_i \\delta(t - \\lambda_i)`,
    smoothed by a Gaussian of width ``sigma``.

    Attributes:
        grid: the points ``t``, ascending.
        density: :math:`\\phi` at ``grid`` (integrates to about 1).
        sigma: the Gaussian's width.
        method: ``"exact"`` (smoothed exact eigenvalues) or ``"slq"`` (stochastic Lanczos
            quadrature).
    """

    grid: np.ndarray
    density: np.ndarray
    sigma: float
    method: str


class Spectrum(NamedTuple):
    """The Hessian's eigenvalues at a point, as :func:`hessian_spectrum` found them.

    Attributes:
        method: ``"dense"`` (every eigenvalue, ``numpy.linalg.eigh`` of the built Hessian) or
            ``"lanczos"`` (the extremes only, from Hessian-vector products).
        size: ``n``, the number of parameters.
        values: the eigenvalues found, ascending: all ``n`` (dense) or the smallest then
            the ``k`` largest (Lanczos).
        residuals: :math:`\\|Hv - \\lambda v\\|` of each: some eigenvalue of :math:`H` lies
            within it of the value.
        top_vectors: ``(k, n)`` unit eigenvectors of the ``k`` largest, the largest first.
        bottom_vector: ``(n,)`` the unit eigenvector of the smallest.
        converged: every residual is within the solver's tolerance.
        products: Hessian-vector products used (extremes and density).
        hessian: the ``(n, n)`` matrix (dense), else None.
        density: the eigenvalue :class:`Density`.
        smallest_found: how many of ``values`` come from the bottom end (all ``n``, dense;
            1, Lanczos): ``values[:smallest_found]`` are the smallest eigenvalues.
    """

    method: str
    size: int
    values: np.ndarray
    residuals: np.ndarray
    top_vectors: np.ndarray
    bottom_vector: np.ndarray
    converged: bool
    products: int
    hessian: np.ndarray | None
    density: Density
    smallest_found: int


def _hvp(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """``v -> H(x) v`` for the flat loss ``f``: forward over reverse, linearised once."""
    _, product = jax.linearize(jax.grad(f), x)
    return product


def dense_hessian(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> np.ndarray:
    """The Hessian :math:`H_{ij} = \\partial^2 f / \\partial x_i \\partial x_j` of a loss of a
    flat vector, built from its products with the unit vectors, ``_DENSE_BATCH`` at a time,
    and symmetrised.

    Args:
        f: ``f(x) -> scalar``.
        x: the point, shape ``(n,)``.

    Returns:
        ``(n, n)`` NumPy array (the dtype of ``x``).

    Example:
        >>> import jax.numpy as jnp
        >>> dense_hessian(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2))
        array([[ 2.,  0.],
               [ 0., -2.]], dtype=float32)
    """

    def build(x: jax.Array) -> jax.Array:
        product = _hvp(f, x)
        eye = jnp.eye(x.size, dtype=x.dtype)
        return jax.lax.map(product, eye, batch_size=min(_DENSE_BATCH, x.size))

    h = np.asarray(jax.jit(build)(x))
    return (h + h.T) / 2


def _smoothing_width(values: np.ndarray) -> float:
    """1% of the spread of ``values`` (at least 0.1% of their largest magnitude): the width
    :func:`mlgrad.spectral_density` smooths with by default."""
    lo, hi = float(np.min(values)), float(np.max(values))
    width = max(hi - lo, max(abs(lo), abs(hi)) * 1e-3)
    return 0.01 * (width if width > 0 else 1.0)


def eigenvalue_density(values: np.ndarray, *, points: int = 256) -> Density:
    """The density of known eigenvalues, each smoothed by a Gaussian:
    :math:`\\phi(t) = \\frac1n \\sum_i \\mathcal N(t; \\lambda_i, \\sigma^2)`, with
    :math:`\\sigma` 1% of their spread, as :func:`mlgrad.spectral_density` smooths its
    estimate.

    Args:
        values: the eigenvalues (all of them).
        points: grid points, spanning the values and 5 sigma either side.

    Returns:
        :class:`Density` with ``method="exact"``.

    Example:
        >>> d = eigenvalue_density(np.array([1.0, 2.0, 3.0]))
        >>> round(float(np.trapezoid(d.density, d.grid)), 3), d.method
        (1.0, 'exact')
    """
    values = np.asarray(values, np.float64)
    sigma = _smoothing_width(values)
    grid = np.linspace(values.min() - 5 * sigma, values.max() + 5 * sigma, points)
    z = (grid[:, None] - values[None, :]) / sigma
    density = np.exp(-0.5 * z**2).sum(axis=1) / (len(values) * sigma * math.sqrt(2 * math.pi))
    return Density(grid, density, sigma, "exact")


def hessian_spectrum(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    k: int = 5,
    dense_max: int = DENSE_MAX,
    key: jax.Array | None = None,
) -> Spectrum:
    """The eigenvalues of the Hessian of ``f`` at ``x``: every one for a small model, the
    extremes and the density for a large one.

    .. math:: H v_i = \\lambda_i v_i, \\qquad H = \\nabla^2 f(x)

    Up to ``dense_max`` parameters :math:`H` is built from ``n`` Hessian-vector products and
    diagonalised exactly (``numpy.linalg.eigh``); beyond, the ``k`` largest and the smallest
    come from restarted block Lanczos (:func:`mlgrad.hessian_eigenvalues`, which never
    builds :math:`H`) and the density from stochastic Lanczos quadrature
    (:func:`mlgrad.spectral_density`, 8 probes of 64 steps). A trained network's smallest
    eigenvalues sit in a dense cluster near zero, where Lanczos converges slowly: the bottom
    end gets one eigenvalue, :data:`BOTTOM_PRODUCTS` products at most, and its residual is
    its error bar (on the 18,760-parameter autoencoder: ``-4.0235e-4`` to ``1e-8``, where
    five at once stay ``2e-4`` wide for the same products).

    Args:
        f: the loss of a flat parameter vector, ``f(x) -> scalar``.
        x: the point, shape ``(n,)``.
        k: how many eigenvalues from each end (Lanczos), and top eigenvectors kept.
        dense_max: the largest ``n`` built densely.
        key: a ``jax.random`` key for the Lanczos start vectors and probes.

    Returns:
        :class:`Spectrum`.

    Example:
        >>> import jax.numpy as jnp
        >>> s = hessian_spectrum(lambda p: p[0] ** 2 + 3 * p[1] ** 2, jnp.zeros(2))
        >>> s.method, s.values.tolist()
        ('dense', [2.0, 6.0])
    """
    n = int(x.size)
    if n <= dense_max:
        return _dense_spectrum(f, x, k)
    return _lanczos_spectrum(f, x, k, key)


def _dense_spectrum(f: Callable[[jax.Array], jax.Array], x: jax.Array, k: int) -> Spectrum:
    h = dense_hessian(f, x)
    values, vectors = np.linalg.eigh(h)
    residuals = np.linalg.norm(h @ vectors - vectors * values, axis=0)
    top = vectors[:, ::-1][:, : min(k, len(values))].T
    return Spectrum(
        "dense",
        len(values),
        values,
        residuals,
        top,
        vectors[:, 0],
        True,
        len(values),
        h,
        eigenvalue_density(values),
        len(values),
    )


def _lanczos_spectrum(
    f: Callable[[jax.Array], jax.Array], x: jax.Array, k: int, key: jax.Array | None
) -> Spectrum:
    top = hessian_eigenvalues(f, x, k=k, which="largest", key=key)
    bottom = hessian_eigenvalues(f, x, k=1, which="smallest", key=key, num_iters=BOTTOM_PRODUCTS)
    sd = spectral_density(f, x, num_probes=8, num_iters=min(64, int(x.size)), key=key, grid=256)
    values = np.concatenate([np.asarray(bottom.values), np.asarray(top.values)])
    residuals = np.concatenate([np.asarray(bottom.residuals), np.asarray(top.residuals)])
    products = int(top.num_matvecs) + int(bottom.num_matvecs) + 8 * int(sd.nodes.shape[1])
    return Spectrum(
        "lanczos",
        int(x.size),
        values,
        residuals,
        np.asarray(top.vectors)[::-1],
        np.asarray(bottom.vectors)[0],
        bool(top.converged) and bool(bottom.converged),
        products,
        None,
        Density(np.asarray(sd.grid), np.asarray(sd.density), float(sd.sigma), "slq"),
        1,
    )


# --------------------------------------------------------------------------------------------
# The verdict and the condition number
# --------------------------------------------------------------------------------------------


class Verdict(NamedTuple):
    """The notes' reading of the Hessian's eigenvalues.

    Attributes:
        kind: ``"cup"`` (every eigenvalue above the tolerance), ``"upside-down cup"`` (every
            one below minus it), ``"saddle"`` (some below minus it, some above it) or
            ``"flat"`` (none below minus it, some within it of zero).
        tolerance: the absolute tolerance, ``rtol`` times :math:`\\max|\\lambda|`.
        rtol: the relative tolerance.
        negative, flat, positive: how many of the eigenvalues given are below
            ``-tolerance``, within it, above it (each counted by its whole error bar: one
            whose residual reaches across a boundary counts as flat).
        text: one sentence that says so with the numbers.
    """

    kind: str
    tolerance: float
    rtol: float
    negative: int
    flat: int
    positive: int
    text: str


_KIND_TEXT = {
    "cup": "the loss curves upward in every direction",
    "upside-down cup": "the loss curves downward in every direction (a maximum)",
    "saddle": "the loss curves upward along some directions and downward along others",
    "flat": "the loss is flat, to second order, along some directions: a valley floor rather "
    "than a strict cup",
}


def verdict(
    eigenvalues: Any,
    residuals: Any = 0.0,
    *,
    rtol: float = FLAT_RTOL,
    complete: bool = True,
) -> Verdict:
    """Cup, upside-down cup, saddle or flat: the notes' reading of the Hessian, with a
    tolerance so that rounding never turns a cup into a saddle.

    With :math:`\\tau = \\text{rtol} \\cdot \\max_i |\\lambda_i|` and :math:`r_i` the error
    bar of :math:`\\lambda_i`: a cup when every :math:`\\lambda_i - r_i > \\tau`; a saddle
    when some :math:`\\lambda_i + r_i < -\\tau` and some :math:`\\lambda_j - r_j > \\tau`; an
    upside-down cup when every :math:`\\lambda_i + r_i < -\\tau`; otherwise flat.

    Args:
        eigenvalues: the eigenvalues known: all of them, or (``complete=False``) the
            smallest and largest few, which decide the verdict just the same.
        residuals: each eigenvalue's error bar (a number, or one per eigenvalue):
            :attr:`Spectrum.residuals`.
        rtol: the tolerance relative to :math:`\\max|\\lambda|` (:data:`FLAT_RTOL`).
        complete: whether ``eigenvalues`` is the whole spectrum (the text counts them all).

    Returns:
        :class:`Verdict`.

    Example:
        >>> verdict([2.0, 2.0]).kind, verdict([-2.0, 2.0]).kind
        ('cup', 'saddle')
        >>> verdict([1e-9, 1.0]).kind, verdict([-1e-9, 1.0]).kind
        ('flat', 'flat')
    """
    values = np.asarray(eigenvalues, np.float64).ravel()
    bars = np.broadcast_to(np.asarray(residuals, np.float64), values.shape)
    tol = rtol * float(np.abs(values).max())
    below, above = values + bars < -tol, values - bars > tol
    negative, positive = int(below.sum()), int(above.sum())
    flat = len(values) - negative - positive
    if positive == len(values):
        kind = "cup"
    elif negative == len(values):
        kind = "upside-down cup"
    elif negative and positive:
        kind = "saddle"
    else:
        kind = "flat"
    return Verdict(
        kind,
        tol,
        rtol,
        negative,
        flat,
        positive,
        _verdict_text(kind, values, bars, tol, rtol, complete, negative, flat),
    )


def _verdict_text(
    kind: str,
    values: np.ndarray,
    bars: np.ndarray,
    tol: float,
    rtol: float,
    complete: bool,
    negative: int,
    flat: int,
) -> str:
    band = f"the flat band |λ| <= {tol:.3g} = {rtol:g} max|λ|"
    low = int(np.argmin(values))
    smallest = f"{values[low]:.4g}" + (f" ± {bars[low]:.2g}" if bars[low] > 0 else "")
    n = len(values)
    if not complete:
        where = {
            "cup": f"positive, above {band}",
            "upside-down cup": "negative, and so is the largest",
            "saddle": "negative, the largest positive",
            "flat": f"in {band}",
        }[kind]
        detail = f"the smallest eigenvalue, {smallest}, is {where}"
    elif kind == "cup":
        detail = f"all {n} eigenvalues are positive (the smallest, {smallest}, is above {band})"
    elif kind == "upside-down cup":
        detail = f"all {n} eigenvalues are negative"
    elif kind == "saddle":
        detail = f"{negative} of the {n} eigenvalues are negative (the smallest is {smallest})"
    else:
        detail = f"none of the {n} eigenvalues is clearly negative, and {flat} lie in {band}"
    return f"{kind}: {detail}; {_KIND_TEXT[kind]}."


def condition_number(eigenvalues: Any) -> float | None:
    """The condition number of a cup's Hessian, :math:`\\kappa = \\lambda_{\\max} /
    \\lambda_{\\min}`: how much slower gradient descent shrinks the flattest direction than
    the sharpest at the largest stable step. None unless every eigenvalue is positive.

    Args:
        eigenvalues: the eigenvalues (at least the smallest and the largest).

    Returns:
        :math:`\\kappa \\ge 1`, or None.

    Example:
        >>> condition_number([0.5, 2.0]), condition_number([-1.0, 2.0])
        (4.0, None)
    """
    values = np.asarray(eigenvalues, np.float64)
    lo, hi = float(values.min()), float(values.max())
    return hi / lo if lo > 0 else None


# --------------------------------------------------------------------------------------------
# Stability limits
# --------------------------------------------------------------------------------------------


class StabilityLimit(NamedTuple):
    """The largest sharpness an optimizer's step tolerates on a quadratic.

    Attributes:
        rule: the update rule in words (``"gradient descent"``, ``"heavy-ball momentum"``,
            ``"Nesterov momentum"``, ``"Adam"``).
        formula: the limit as a formula (``"2/η"``).
        learning_rate: :math:`\\eta`.
        limit: the formula's value.
        quantity: the sharpness it bounds: ``"λ_max(H)"``, or ``"λ_max(P⁻¹H)"`` for Adam.
    """

    rule: str
    formula: str
    learning_rate: float
    limit: float
    quantity: str


def stability_limit(
    optimizer: str,
    learning_rate: float,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    b1: float = 0.9,
) -> StabilityLimit:
    """The stability limit of an optimizer's step on a quadratic with Hessian :math:`H`.

    Along an eigenvector of :math:`H` with eigenvalue :math:`\\lambda` each rule is a linear
    recurrence, stable exactly when the sharpness stays below the limit:

    * gradient descent, :math:`x \\leftarrow x - \\eta g`: :math:`\\lambda < 2/\\eta`;
    * heavy-ball momentum (``optax.sgd(momentum=β)``: :math:`m \\leftarrow g + \\beta m`,
      :math:`x \\leftarrow x - \\eta m`): :math:`\\lambda < 2(1+\\beta)/\\eta`;
    * Nesterov momentum (``nesterov=True``: the step :math:`\\eta(g + \\beta m)`):
      :math:`\\lambda < 2(1+\\beta)/((1+2\\beta)\\eta)`;
    * Adam with the preconditioner frozen (Cohen et al. 2022, "Adaptive gradient methods at
      the edge of stability"): the preconditioned sharpness
      :math:`\\lambda_{\\max}(P^{-1}H) < (2+2\\beta_1)/((1-\\beta_1)\\eta)`, 38/η for
      :math:`\\beta_1 = 0.9` (:func:`adam_preconditioner` gives :math:`P`).

    Args:
        optimizer: ``"sgd"`` or ``"adam"`` (optax's names).
        learning_rate: :math:`\\eta` (for a schedule: its value at the step in question).
        momentum: sgd's :math:`\\beta` (None or 0: plain gradient descent).
        nesterov: sgd's Nesterov flag.
        b1: Adam's :math:`\\beta_1`.

    Returns:
        :class:`StabilityLimit`.

    Raises:
        ValueError: another optimizer (no limit is known here), or a learning rate <= 0.

    Example:
        >>> stability_limit("sgd", 0.1).limit
        20.0
        >>> round(stability_limit("sgd", 0.2, momentum=0.5).limit, 6)
        15.0
        >>> round(stability_limit("adam", 0.001).limit, 6)
        38000.0
    """
    eta = float(learning_rate)
    if not eta > 0:
        raise ValueError(f"stability_limit: the learning rate must be > 0, got {eta!r}.")
    if optimizer == "adam":
        return StabilityLimit(
            "Adam", "(2+2β₁)/((1-β₁)η)", eta, (2 + 2 * b1) / ((1 - b1) * eta), "λ_max(P⁻¹H)"
        )
    if optimizer != "sgd":
        raise ValueError(
            f"stability_limit: no stability limit is known here for optax.{optimizer}; the "
            "rules known are sgd (plain, heavy-ball or Nesterov momentum) and adam."
        )
    beta = float(momentum or 0.0)
    if beta == 0.0:
        return StabilityLimit("gradient descent", "2/η", eta, 2 / eta, "λ_max(H)")
    if nesterov:
        limit = 2 * (1 + beta) / ((1 + 2 * beta) * eta)
        return StabilityLimit("Nesterov momentum", "2(1+β)/((1+2β)η)", eta, limit, "λ_max(H)")
    return StabilityLimit("heavy-ball momentum", "2(1+β)/η", eta, 2 * (1 + beta) / eta, "λ_max(H)")


def adam_preconditioner(
    nu: Any,
    count: Any,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> Any:
    """Adam's preconditioner as Cohen et al. (2022) freeze it, from optax's Adam state.

    .. math:: P = (1 - \\beta_1^t)\\,\\operatorname{diag}\\big(\\sqrt{\\hat v_t +
              \\epsilon_{\\text{root}}} + \\epsilon\\big), \\qquad \\hat v_t = \\nu_t / (1 -
              \\beta_2^t)

    With :math:`P` held fixed, Adam's step :math:`\\eta \\hat m_t / (\\sqrt{\\hat v_t} +
    \\epsilon)` is heavy-ball momentum (an exponential average, :math:`\\beta_1`) on the
    preconditioned gradient :math:`P^{-1} g`, so its sharpness is
    :math:`\\lambda_{\\max}(P^{-1}H)` (:func:`preconditioned_sharpness`).

    Args:
        nu: the second-moment estimate :math:`\\nu_t` (``ScaleByAdamState.nu``, a pytree).
        count: :math:`t`, the updates taken (``ScaleByAdamState.count``, at least 1).
        b1, b2, eps, eps_root: Adam's hyperparameters (optax's names).

    Returns:
        The diagonal of :math:`P`, a pytree like ``nu``.

    Example:
        >>> p = adam_preconditioner(np.array([4.0]), 1, b1=0.5, b2=0.5, eps=0.0)
        >>> p.tolist()   # (1 - 0.5) * sqrt(4 / (1 - 0.5))
        [1.4142135623730951]
    """
    t = max(int(count), 1)
    bias1, bias2 = 1 - b1**t, 1 - b2**t
    return jax.tree.map(lambda v: bias1 * (np.sqrt(np.asarray(v) / bias2 + eps_root) + eps), nu)


def preconditioned_sharpness(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    p: jax.Array,
    *,
    hessian: np.ndarray | None = None,
    key: jax.Array | None = None,
) -> tuple[float, float]:
    """The preconditioned sharpness :math:`\\lambda_{\\max}(P^{-1}H)` for a diagonal
    :math:`P`, as the largest eigenvalue of the symmetric :math:`P^{-1/2} H P^{-1/2}` (the
    same eigenvalues).

    Args:
        f: the loss of a flat parameter vector.
        x: the point, ``(n,)``.
        p: the diagonal of :math:`P`, ``(n,)``, positive.
        hessian: the dense Hessian, when built already (then diagonalised exactly);
            otherwise block Lanczos on Hessian-vector products.
        key: a ``jax.random`` key for Lanczos.

    Returns:
        ``(sharpness, residual)``: the eigenvalue and its error bar.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda z: z[0] ** 2 + 4 * z[1] ** 2          # H = diag(2, 8)
        >>> preconditioned_sharpness(f, jnp.zeros(2), jnp.array([1.0, 4.0]))[0]
        2.0
    """
    s = 1.0 / np.sqrt(np.asarray(p, np.float64))
    if hessian is not None:
        return float(np.linalg.eigvalsh(s[:, None] * hessian * s[None, :])[-1]), 0.0
    s_jax = jnp.asarray(s, x.dtype)
    product = _hvp(f, x)
    top = eigenvalues_of(lambda v: s_jax * product(s_jax * v), x, k=1, key=key)
    return float(top.values[-1]), float(top.residuals[-1])


class Standing(NamedTuple):
    """Where a sharpness stands against its stability limit.

    Attributes:
        sharpness: the sharpness (the limit's ``quantity``).
        ratio: sharpness / limit.
        kind: ``"stable"`` (ratio below 0.95), ``"edge of stability"`` (0.95 to 1.05) or
            ``"unstable"`` (above 1.05).
        text: one sentence with the numbers.
    """

    sharpness: float
    ratio: float
    kind: str
    text: str


def standing(limit: StabilityLimit, sharpness: float) -> Standing:
    """Where ``sharpness`` stands against ``limit``: stable below it, at the edge of
    stability within 5% of it, unstable above (a quadratic with this curvature would make
    the step grow along the top eigenvector: the run oscillates there, as at the edge of
    stability of Cohen et al. 2021, or diverges).

    Args:
        limit: the optimizer's :class:`StabilityLimit`.
        sharpness: its ``quantity`` at the point.

    Returns:
        :class:`Standing`.

    Example:
        >>> standing(stability_limit("sgd", 0.1), 2.0).text
        'λ_max(H) = 2 is 10% of the gradient descent limit 2/η = 20 (η = 0.1): stable.'
    """
    ratio = float(sharpness) / limit.limit
    kind = "stable" if ratio < 0.95 else "edge of stability" if ratio <= 1.05 else "unstable"
    text = (
        f"{limit.quantity} = {sharpness:.4g} is {ratio:.0%} of the {limit.rule} limit "
        f"{limit.formula} = {limit.limit:.4g} (η = {limit.learning_rate:.4g}): {kind}."
    )
    return Standing(float(sharpness), ratio, kind, text)


# --------------------------------------------------------------------------------------------
# The landscape
# --------------------------------------------------------------------------------------------


def filter_normalized(key: jax.Array, params: Any) -> Any:
    """A random direction in parameter space, normalised filter by filter (Li et al. 2018,
    "Visualizing the loss landscape of neural nets").

    .. math:: d_j \\leftarrow \\frac{d_j}{\\|d_j\\|} \\|\\theta_j\\|, \\qquad d \\sim
              \\mathcal N(0, I)

    for each filter :math:`j`: each output unit's weights (the last axis of an array of two
    or more dimensions, as in ``x @ W``), and each vector or scalar (a bias, the weight
    vector of a linear model) as one filter. A step :math:`\\alpha d` then moves every unit
    by :math:`|\\alpha|` times its own size, so that the picture does not depend on how each
    layer happens to be scaled.

    Args:
        key: a ``jax.random`` key.
        params: the parameters (a pytree of arrays).

    Returns:
        A pytree like ``params``.

    Example:
        >>> import jax
        >>> d = filter_normalized(jax.random.PRNGKey(0), {"w": np.array([[3.0, 0.0], [4.0, 1.0]])})
        >>> np.linalg.norm(np.asarray(d["w"]), axis=0).round(6).tolist()   # the columns' norms
        [5.0, 1.0]
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf, k in zip(leaves, keys, strict=True):
        theta = np.asarray(leaf, np.float64)
        d = np.asarray(jax.random.normal(k, theta.shape), np.float64)
        axes = tuple(range(theta.ndim - 1)) if theta.ndim >= 2 else None
        d_norm = np.sqrt((d * d).sum(axis=axes, keepdims=axes is not None))
        theta_norm = np.sqrt((theta * theta).sum(axis=axes, keepdims=axes is not None))
        out.append((d / np.where(d_norm > 0, d_norm, 1.0) * theta_norm).astype(theta.dtype))
    return jax.tree.unflatten(treedef, out)


def loss_along(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    directions: Any,
    alphas: Any,
) -> np.ndarray:
    """The loss along lines through ``x``: :math:`f(x + \\alpha d)` for each direction
    :math:`d` and each :math:`\\alpha`.

    Args:
        f: the loss of a flat parameter vector.
        x: the point, ``(n,)``.
        directions: ``(m, n)``.
        alphas: ``(a,)`` the steps along each direction.

    Returns:
        ``(m, a)`` NumPy array.

    Example:
        >>> import jax.numpy as jnp
        >>> loss_along(lambda z: jnp.sum(z**2), jnp.zeros(2), jnp.eye(2), jnp.array([-1.0, 2.0]))
        array([[1., 4.],
               [1., 4.]], dtype=float32)
    """
    d = jnp.asarray(directions, x.dtype)
    a = jnp.asarray(alphas, x.dtype)
    points = x + a[None, :, None] * d[:, None, :]
    return _losses(f, points.reshape(-1, x.size)).reshape(d.shape[0], a.shape[0])


def loss_plane(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    d1: Any,
    d2: Any,
    alphas: Any,
) -> np.ndarray:
    """The loss over the plane through ``x`` spanned by two directions:
    :math:`f(x + \\alpha d_1 + \\beta d_2)` for :math:`\\alpha, \\beta` in ``alphas``.

    Args:
        f: the loss of a flat parameter vector.
        x: the point, ``(n,)``.
        d1, d2: the directions, ``(n,)`` each.
        alphas: ``(a,)`` the steps along each.

    Returns:
        ``(a, a)`` NumPy array, row ``i`` at :math:`\\beta_i`, column ``j`` at
        :math:`\\alpha_j` (as ``numpy.meshgrid`` and ``contour`` expect).

    Example:
        >>> import jax.numpy as jnp
        >>> g = loss_plane(lambda z: z[0] ** 2 + 2 * z[1] ** 2, jnp.zeros(2),
        ...                jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0]))
        >>> g.tolist()
        [[0.0, 1.0], [2.0, 3.0]]
    """
    a = jnp.asarray(alphas, x.dtype)
    u, v = jnp.asarray(d1, x.dtype), jnp.asarray(d2, x.dtype)
    points = x + a[None, :, None] * u + a[:, None, None] * v
    return _losses(f, points.reshape(-1, x.size)).reshape(a.shape[0], a.shape[0])


def _losses(f: Callable[[jax.Array], jax.Array], points: jax.Array) -> np.ndarray:
    """``f`` at each row of ``points``, ``_LANDSCAPE_BATCH`` rows at a time (one program)."""
    batch = min(_LANDSCAPE_BATCH, points.shape[0])
    return np.asarray(jax.jit(lambda p: jax.lax.map(f, p, batch_size=batch))(points))


# --------------------------------------------------------------------------------------------
# Linear regression's closed form
# --------------------------------------------------------------------------------------------


def least_squares_hessian(x: Any, *, standardize: bool = True) -> np.ndarray:
    """The Hessian of linear regression's mean squared error, in closed form.

    .. math:: L(b, w) = \\frac1n \\|Z \\begin{bmatrix} b \\\\ w \\end{bmatrix} - y\\|^2,
              \\qquad H = \\frac{2}{n} Z^\\top Z, \\qquad Z = [\\mathbf 1, \\; z]

    with :math:`z = (x - \\bar x)/s` the standardised features (training mean and population
    standard deviation; a constant feature keeps scale 1), or :math:`z = x` without
    standardisation. :math:`H` does not depend on :math:`(b, w)` or on :math:`y`: the loss is
    a quadratic, one cup everywhere. Standardised, :math:`Z^\\top Z / n` has a 1 and the
    features' correlation matrix on its diagonal blocks and zeros between them.

    Args:
        x: the ``(n, d)`` training features, in data units.
        standardize: whether the model standardises them (``model.standardize``).

    Returns:
        ``(d + 1, d + 1)``: the intercept first, then the coefficients (the order in which
        ``ravel_pytree`` flattens ``{"b": ..., "w": ...}``).

    Example:
        >>> least_squares_hessian(np.array([[1.0], [3.0]]))
        array([[2., 0.],
               [0., 2.]])
    """
    x = np.asarray(x, np.float64)
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    z = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)
    return 2.0 * z.T @ z / x.shape[0]


def top_and_bottom(spectrum: Spectrum, k: int) -> tuple[list[float], list[float]]:
    """The ``k`` largest (largest first) and ``k`` smallest (smallest first) eigenvalues of
    a :class:`Spectrum`.

    Example:
        >>> import jax.numpy as jnp
        >>> top_and_bottom(hessian_spectrum(lambda p: jnp.sum(p**2), jnp.zeros(3)), 1)
        ([2.0], [2.0])
    """
    values = np.sort(spectrum.values)
    top = values[::-1][: min(k, len(values))]
    bottom = values[: min(k, spectrum.smallest_found)]
    return [float(v) for v in top], [float(v) for v in bottom]


def unit(v: Sequence[float] | np.ndarray) -> np.ndarray:
    """``v / ||v||`` (a zero vector stays zero)."""
    v = np.asarray(v, np.float64)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
