"""Curvature without the matrix (mlgrad.curvature): eigenvalues, trace, diagonal, spectral
density, Laplacian and divergence, against independent references.

The references never use mlgrad's estimators: ``numpy.linalg.eigvalsh`` of the exact Hessian
(``jax.hessian``) or of a matrix built in NumPy, closed forms, and the regression model's
Hessian 2 Z^T Z / n written from its design matrix. Statistical claims are checked on many
seeds at once (``vmap`` inside one ``jit``), with fixed keys, so every run sees the same draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import mlgrad
from mlgrad.curvature import diagonal_of, eigenvalues_of, spectral_density_of, trace_of


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def quick_jit(fn):
    """``jax.jit(fn)`` compiled without XLA's backend optimisations: these tests are small
    programs whose cost is their compilation (2 to 3 times faster this way), and the numbers
    they check do not depend on how the code is optimised."""

    def run(*args):
        return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})(*args)

    return run


def orthogonal(n: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def with_spectrum(values, seed: int = 0) -> np.ndarray:
    """A dense symmetric matrix with the given eigenvalues in a random basis."""
    q = orthogonal(len(values), seed)
    return (q * np.asarray(values, float)) @ q.T


def quadratic(a) -> tuple:
    """f(x) = x^T A x / 2, whose Hessian is A everywhere."""
    a = jnp.asarray(a)
    return (lambda x: 0.5 * x @ a @ x), jnp.zeros(a.shape[0])


def extremes(values: np.ndarray, k: int, which: str) -> np.ndarray:
    values = np.sort(values)
    if which == "largest":
        return values[-k:]
    if which == "smallest":
        return values[:k]
    return np.concatenate([values[:k], values[-k:]])


# --------------------------------------------------------------------------------------------
# Eigenvalues
# --------------------------------------------------------------------------------------------


def mlp_problem(hidden: int = 14, seed: int = 1):
    """A small tanh network's squared-error loss over a dict of parameters, and the data."""
    rng = np.random.default_rng(seed)  # NumPy draws: no random-number program to compile
    x = jnp.asarray(rng.normal(size=(30, 4)))
    y = jnp.sin(x[:, 0]) + x[:, 1]
    params = {
        "w1": jnp.asarray(rng.normal(size=(4, hidden)) / 2),
        "b1": jnp.full(hidden, 0.1),
        "w2": jnp.asarray(rng.normal(size=hidden) / 2),
        "b2": jnp.zeros(()),
    }

    def model(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def squared_error(z, y):
        return jnp.mean((z - y) ** 2)

    def loss(p, x, y):
        return squared_error(model(p, x), y)

    return loss, model, squared_error, params, x, y


def exact_hessian(loss, params, *rest) -> np.ndarray:
    flat, unravel = ravel_pytree(params)
    return np.asarray(quick_jit(jax.hessian(lambda z: loss(unravel(z), *rest)))(flat))


def test_mlp_loss_extreme_eigenpairs_match_eigvalsh_of_the_exact_hessian():
    loss, _, _, params, x, y = mlp_problem(hidden=8)
    hess = exact_hessian(loss, params, x, y)
    truth = np.linalg.eigvalsh(hess)
    scale = np.abs(truth).max()
    assert truth[0] < 0 < truth[-1]  # a saddle: both ends matter
    n = hess.shape[0]
    assert n > 32  # past the dense shortcut: the restarted block Lanczos path

    eig = quick_jit(lambda p: mlgrad.hessian_eigenvalues(loss, p, x, y, k=2, which="both"))(params)
    np.testing.assert_allclose(eig.values, extremes(truth, 2, "both"), rtol=0, atol=1e-8 * scale)
    assert bool(eig.converged) and eig.residuals.shape == (4,)
    assert int(eig.num_matvecs) < 20 * n  # products only, and not absurdly many
    # the eigenvectors are pytrees like the parameters, unit, and H v = lambda v (checked with
    # the dense Hessian, not with the solver's own products)
    assert eig.vectors["w1"].shape == (4, 4, 8) and eig.vectors["b2"].shape == (4,)
    vecs = np.asarray(jax.vmap(lambda v: ravel_pytree(v)[0])(eig.vectors))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-12)
    true_residuals = np.linalg.norm(vecs @ hess - vecs * np.asarray(eig.values)[:, None], axis=1)
    assert true_residuals.max() <= 1e-7 * scale
    np.testing.assert_allclose(eig.residuals, true_residuals, atol=1e-10 * scale)


def test_repeated_eigenvalues_of_small_matrices_come_with_their_multiplicity():
    cases = [
        ([5, 5, 5, 1, 1], 3, "largest", [5, 5, 5]),
        ([5, 5, 5, 1, 1], 2, "smallest", [1, 1]),
        ([5, 5, 5, 1, 1], 2, "both", [1, 1, 5, 5]),
        ([2, 2], 1, "both", [2, 2]),
    ]

    @quick_jit
    def solve_all():
        out = []
        for spectrum, k, which, _ in cases:
            f, x = quadratic(with_spectrum(spectrum, seed=3))
            out.append(mlgrad.hessian_eigenvalues(f, x, k=k, which=which))
        return out

    for (_, _, _, expected), eig in zip(cases, solve_all(), strict=True):
        np.testing.assert_allclose(eig.values, expected, rtol=0, atol=1e-12)
        assert eig.residuals.max() < 1e-12 and bool(eig.converged)


def test_block_lanczos_finds_multiplicities_and_survives_breakdown():
    """The iterative path (n = 48 > one Krylov cycle) on 2 I (a breakdown after one step), a
    spectrum with a triple top and a double bottom inside a continuum, and a random indefinite
    one: all at once, vmapped over the matrices in one compiled program."""
    n = 48
    spectra = np.stack(
        [
            np.full(n, 2.0),
            np.concatenate([[5.0, 5.0, 5.0], np.linspace(1.5, 4.5, n - 5), [1.0, 1.0]]),
            np.random.default_rng(4).normal(size=n),
        ]
    )
    mats = np.stack([with_spectrum(s, seed=i) for i, s in enumerate(spectra)])

    @quick_jit
    @jax.vmap
    def solve(a):
        return eigenvalues_of(lambda v: a @ v, jnp.zeros(n), k=3, which="both")

    eig = solve(jnp.asarray(mats))
    for i, s in enumerate(spectra):
        scale = np.abs(s).max()
        np.testing.assert_allclose(eig.values[i], extremes(s, 3, "both"), atol=1e-8 * scale)
        vecs = np.asarray(eig.vectors[i])  # (6, n)
        resid = np.linalg.norm(vecs @ mats[i] - vecs * np.asarray(eig.values[i])[:, None], axis=1)
        assert resid.max() <= 1e-7 * scale, (i, resid)
        # the copies of a repeated eigenvalue are distinct (orthonormal) eigenvectors
        np.testing.assert_allclose(vecs @ vecs.T, np.eye(6), atol=1e-10)
    assert bool(jnp.all(eig.converged))


def test_regression_hessian_spectrum_is_that_of_2_ZtZ_over_n():
    """The shipped ice-cream data and the notes' regression models: over the coefficients of the
    standardised features, the loss is quadratic with Hessian 2 Z^T Z / n (Z the standardised
    design with its column of ones): 2 I for one feature."""
    import mlgrad.models.linear_regression as lr

    from mlgrad.data import load

    for features in (["temp"], ["temp", "price", "income"]):
        data = load("ice_cream", features=features, dtype=np.float64)
        model = lr.build(lr.Config(), data)
        params = model.init(None)
        x = np.asarray(data.x_train, np.float64)
        z = np.column_stack([(x - x.mean(0)) / x.std(0), np.ones(len(x))])
        truth = np.linalg.eigvalsh(2 * z.T @ z / len(x))
        n = truth.size
        eig = mlgrad.hessian_eigenvalues(
            model.loss, params, (data.x_train, data.y_train), k=n // 2, which="both"
        )
        np.testing.assert_allclose(eig.values, truth, rtol=0, atol=1e-10 * truth.max())
        if len(features) == 1:
            np.testing.assert_allclose(eig.values, [2.0, 2.0], atol=1e-12)
        assert set(eig.vectors) == {"w", "b"}


def test_gauss_newton_matrix_from_model_and_loss():
    _, model, squared_error, params, x, y = mlp_problem(hidden=3)
    ggn_v = mlgrad.gnvp(model, squared_error)
    flat, unravel = ravel_pytree(params)
    column = quick_jit(jax.vmap(lambda e: ravel_pytree(ggn_v(params, unravel(e), x, y))[0]))
    dense = np.asarray(column(jnp.eye(flat.size)))
    truth = np.linalg.eigvalsh(dense)
    eig = mlgrad.hessian_eigenvalues((model, squared_error), params, x, y, k=2, matrix="ggn")
    np.testing.assert_allclose(eig.values, truth[-2:], atol=1e-10 * truth.max())


@pytest.mark.slow  # another compiled solver
def test_a_nan_product_stops_the_solver_unconverged():
    eig = eigenvalues_of(lambda v: v * jnp.nan, jnp.zeros(50))
    assert not bool(eig.converged) and int(eig.num_matvecs) == 1


@pytest.mark.slow  # two more compiled solvers
def test_warm_start_from_the_previous_eigenvector_converges_in_one_short_cycle():
    n = 64
    s = np.concatenate([[10.0], np.linspace(0.0, 5.0, n - 1)])
    a = jnp.asarray(with_spectrum(s, seed=5))
    cold = eigenvalues_of(lambda v: a @ v, jnp.zeros(n))
    warm = eigenvalues_of(lambda v: a @ v, jnp.zeros(n), v0=cold.vectors[0], num_iters=3)
    assert abs(float(warm.values[0]) - 10.0) < 1e-10 and int(warm.num_matvecs) <= 4


def test_several_differentiated_arguments_form_one_hessian():
    def f(a, b, c):
        return 1.5 * jnp.sum(a**2) + jnp.sum(jnp.array([1.0, 2.0, 3.0]) * b**2) + a[0] * b[0] + c

    hess = np.diag([3.0, 3.0, 2.0, 4.0, 6.0])
    hess[0, 2] = hess[2, 0] = 1.0
    args = (jnp.zeros(2), jnp.zeros(3), 1.0)
    eig = mlgrad.hessian_eigenvalues(f, *args, argnums=(0, 1), k=2, which="both")
    np.testing.assert_allclose(eig.values, extremes(np.linalg.eigvalsh(hess), 2, "both"))
    assert [v.shape for v in eig.vectors] == [(4, 2), (4, 3)]
    diag = mlgrad.hessian_diagonal(f, *args, argnums=(0, 1)).value
    np.testing.assert_allclose(np.concatenate(diag), np.diag(hess))
    assert float(mlgrad.laplacian(f, argnums=(0, 1))(*args)) == pytest.approx(np.trace(hess))


def test_eigenvalue_arguments_are_checked_with_clear_errors():
    f, x = quadratic(np.eye(3))
    with pytest.raises(ValueError, match=r"k=2, from each end.*at most 1"):
        mlgrad.hessian_eigenvalues(f, x, k=2, which="both")
    with pytest.raises(ValueError, match="which must be one of"):
        mlgrad.hessian_eigenvalues(f, x, which="top")
    with pytest.raises(ValueError, match=r"pass f as the pair \(model_fn, loss_fn\)"):
        mlgrad.hessian_eigenvalues(f, x, matrix="ggn")
    with pytest.raises(ValueError, match="v0 must be shaped like"):
        eigenvalues_of(lambda v: v, jnp.zeros(40), v0=jnp.zeros(3))
    with pytest.raises(TypeError, match="scalar"):
        mlgrad.hessian_eigenvalues(lambda x: x, x)


# --------------------------------------------------------------------------------------------
# Trace and diagonal
# --------------------------------------------------------------------------------------------

SEEDS = 4000


def check_unbiased_and_calibrated(values, stderrs, exact: float) -> None:
    values, stderrs = np.asarray(values), np.asarray(stderrs)
    spread = values.std(ddof=1)
    # unbiased: the mean over the seeds within 3 of its standard errors of the exact value
    assert abs(values.mean() - exact) <= 3 * spread / np.sqrt(values.size), (values.mean(), exact)
    # the reported standard error matches the spread of the estimates over the seeds
    ratio = np.mean(stderrs**2) / spread**2
    assert 0.8 <= ratio <= 1.25, ratio


def test_trace_and_diagonal_estimators_unbiased_calibrated_and_hutchpp_better():
    """Over SEEDS keys, in one compiled program: Hutchinson and Hutch++ traces and the
    Hutchinson diagonal of a low-rank-plus-noise matrix (unbiased, with standard errors that
    match their spread; Hutch++ far less spread at the same 15 products), and of a diagonal
    matrix (Rademacher probes: no spread at all)."""
    n = 40
    rng = np.random.default_rng(7)
    u = orthogonal(n, 7)[:, :3]
    noise = with_spectrum(rng.normal(size=n), seed=8)
    a = (u * [30.0, 20.0, -10.0]) @ u.T + noise
    d = np.linspace(-3.0, 7.0, n)

    @quick_jit
    def estimates(mats, keys):
        def three(m, key):
            def est(fn, **options):
                return fn(lambda v: m @ v, jnp.zeros(n), key=key, num_matvecs=15, **options)

            return {
                "hutchinson": est(trace_of, method="hutchinson"),
                "hutch++": est(trace_of, method="hutch++"),
                "diagonal": est(diagonal_of),
            }

        return jax.vmap(jax.vmap(three, (None, 0)), (0, None))(mats, keys)

    both = estimates(
        jnp.asarray(np.stack([a, np.diag(d)])), jax.random.split(jax.random.key(11), SEEDS)
    )
    out = jax.tree.map(lambda leaf: leaf[0], both)
    for method in ("hutchinson", "hutch++"):
        check_unbiased_and_calibrated(out[method].value, out[method].stderr, np.trace(a))
        assert np.all(np.asarray(out[method].num_matvecs) == 15)
    plain, plus = np.var(out["hutchinson"].value), np.var(out["hutch++"].value)
    assert plus < plain / 20, (plus, plain)

    # the diagonal, entry by entry: z-scores of the mean over the seeds, and the errors' size
    values, stderrs = np.asarray(out["diagonal"].value), np.asarray(out["diagonal"].stderr)
    spread = values.std(axis=0, ddof=1)
    z = (values.mean(axis=0) - np.diag(a)) / (spread / np.sqrt(SEEDS))
    assert np.abs(z).max() <= 4.0 and 0.4 <= np.mean(z**2) <= 1.8, z
    ratio = np.mean(stderrs**2, axis=0) / spread**2
    assert 0.8 <= np.median(ratio) <= 1.25 and ratio.min() > 0.6, ratio

    # Rademacher probes: v^T D v = tr D and v * D v = diag D for every probe
    diagonal = jax.tree.map(lambda leaf: leaf[1], both)
    np.testing.assert_allclose(diagonal["hutchinson"].value, d.sum(), rtol=1e-13)
    np.testing.assert_allclose(diagonal["hutchinson"].stderr, 0.0, atol=1e-12)
    np.testing.assert_allclose(diagonal["diagonal"].value, np.broadcast_to(d, (SEEDS, n)))
    np.testing.assert_allclose(diagonal["diagonal"].stderr, 0.0, atol=1e-12)


def test_exact_trace_and_diagonal_on_a_pytree_mlp_loss():
    loss, model, squared_error, params, x, y = mlp_problem(hidden=5)
    hess = exact_hessian(loss, params, x, y)
    n = hess.shape[0]

    @quick_jit
    def exact(p):
        return (
            mlgrad.hessian_trace(loss, p, x, y, num_matvecs=n),  # n <= num_matvecs: exact
            mlgrad.hessian_diagonal(loss, p, x, y, method="exact"),
            # the pair (model_fn, loss_fn) with matrix="hessian": the composed loss's Hessian
            mlgrad.hessian_trace((model, squared_error), p, x, y, method="exact"),
        )

    tr, diag, pair = exact(params)
    np.testing.assert_allclose(pair.value, np.trace(hess), rtol=1e-12)
    np.testing.assert_allclose(tr.value, np.trace(hess), rtol=1e-12)
    assert float(tr.stderr) == 0.0 and int(tr.num_matvecs) == n
    np.testing.assert_allclose(ravel_pytree(diag.value)[0], np.diag(hess), rtol=1e-12, atol=1e-14)
    assert diag.value["w1"].shape == (4, 5)


# --------------------------------------------------------------------------------------------
# Spectral density
# --------------------------------------------------------------------------------------------


def test_spectral_density_moments_are_the_normalised_traces_of_powers():
    """Known spectra: one with a double top, and 2 I (a Lanczos breakdown after one step in
    every probe), both in one compiled program."""
    n = 40
    s = np.concatenate([np.linspace(-1.0, 2.0, n - 2), [6.0, 6.0]])
    spectra = np.stack([s, np.full(n, 2.0)])
    mats = np.stack([with_spectrum(s, seed=9), 2.0 * np.eye(n)])

    @quick_jit
    @jax.vmap
    def density(a):
        return spectral_density_of(lambda v: a @ v, jnp.zeros(n), num_probes=200, num_iters=6)

    both = density(jnp.asarray(mats))
    for i, spectrum in enumerate(spectra):
        sd = jax.tree.map(lambda leaf, i=i: leaf[i], both)
        assert sd.nodes.shape == (200, 6) and not bool(jnp.any(jnp.isnan(sd.density)))
        np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
        for j in range(1, 6):  # exact per probe up to degree 2 * 6 - 1
            mean, stderr = sd.moment(j)
            exact = np.sum(spectrum**j) / n
            assert abs(float(mean) - exact) <= 3 * float(stderr) + 1e-12 * exact, (i, j, mean)
        # the smoothed density is a density over the spectrum's range
        assert float(jnp.trapezoid(sd.density, sd.grid)) == pytest.approx(1.0, abs=1e-3)
        assert sd.grid[0] < spectrum.min() and sd.grid[-1] > spectrum.max()
    # 2 I: every probe sees exactly 2^j, and the density peaks at 2
    sd = jax.tree.map(lambda leaf: leaf[1], both)
    np.testing.assert_allclose(sd.moment(4)[0], 16.0, rtol=1e-12)
    assert abs(float(sd.grid[jnp.argmax(sd.density)]) - 2.0) < 1e-2


# --------------------------------------------------------------------------------------------
# Laplacian and divergence
# --------------------------------------------------------------------------------------------


def test_laplacian_closed_forms():
    saddle = mlgrad.laplacian(lambda p: p[0] ** 2 - p[1] ** 2)
    bump = mlgrad.laplacian(lambda x: jnp.exp(-jnp.sum(x**2)))
    d = 4
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(5, d)))
    saddles, bumps = quick_jit(lambda xs: (jax.vmap(saddle)(xs[:, :2]), jax.vmap(bump)(xs)))(xs)
    np.testing.assert_allclose(saddles, 0.0, atol=1e-12)
    r2 = np.sum(np.asarray(xs) ** 2, axis=1)
    np.testing.assert_allclose(bumps, (4 * r2 - 2 * d) * np.exp(-r2), rtol=1e-12, atol=1e-15)


def mlp_function(n: int, out: int | None = None, seed: int = 3):
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.normal(size=(n, 24)) / np.sqrt(n))
    w2 = jnp.asarray(rng.normal(size=(24, out or 1)) / 5)
    b = jnp.asarray(rng.normal(size=24))

    def f(x):
        y = jnp.tanh(x @ w1 + b) @ w2 + jnp.sin(x[: out or 1])
        return y if out else y[0]

    return f


def test_laplacian_and_divergence_equal_the_traces_of_the_dense_matrices():
    n = 12
    x = jnp.asarray(np.random.default_rng(4).normal(size=n))
    f, field = mlp_function(n), mlp_function(n, out=n)

    @quick_jit
    def both(x):
        return {
            "laplacian": mlgrad.laplacian(f)(x),
            "trace of hessian": jnp.trace(jax.hessian(f)(x)),
            "divergence": mlgrad.divergence(field, batch_size=5)(x),  # chunks with a remainder
            "trace of jacobian": jnp.trace(jax.jacfwd(field)(x)),
            "divergence of gradient": mlgrad.divergence(jax.grad(f))(x),
        }

    out = both(x)
    np.testing.assert_allclose(out["laplacian"], out["trace of hessian"], rtol=1e-12)
    np.testing.assert_allclose(out["divergence"], out["trace of jacobian"], rtol=1e-12)
    np.testing.assert_allclose(out["divergence of gradient"], out["laplacian"], rtol=1e-12)
    # pytree and vector-valued inputs and outputs
    g = lambda p: jnp.sum(p["a"] ** 3) * p["b"]  # noqa: E731
    p = {"a": jnp.array([1.0, 2.0]), "b": jnp.asarray(3.0)}
    assert float(mlgrad.laplacian(g)(p)) == pytest.approx(6 * 3.0 * 3.0)  # 6 a_i b summed
    vec = mlgrad.laplacian(lambda x: jnp.stack([x @ x, jnp.sum(x**3)]))(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(vec, [4.0, 18.0])


@pytest.mark.slow  # two more compiled programs
def test_stochastic_laplacian_and_divergence_are_unbiased_within_their_errors():
    n = 30
    x = jnp.asarray(np.random.default_rng(5).normal(size=n))
    f, field = mlp_function(n), mlp_function(n, out=n)
    lap, lap_err = mlgrad.laplacian(f, num_probes=4000, return_error=True)(x)
    div, div_err = mlgrad.divergence(field, num_probes=4000, return_error=True)(x)
    exact_lap, exact_div = mlgrad.laplacian(f)(x), mlgrad.divergence(field)(x)
    assert abs(float(lap - exact_lap)) <= 3 * float(lap_err) and float(lap_err) > 0
    assert abs(float(div - exact_div)) <= 3 * float(div_err) and float(div_err) > 0


def test_divergence_needs_a_vector_field():
    with pytest.raises(ValueError, match=r"same shape \(a vector field"):
        mlgrad.divergence(lambda x: x[:2])(jnp.zeros(3))
    with pytest.raises(ValueError, match="num_probes must be an integer >= 2"):
        mlgrad.laplacian(jnp.sum, num_probes=1)


# --------------------------------------------------------------------------------------------
# Docstrings
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # compiles a dozen small float32 programs
def test_docstring_examples_run():
    import doctest

    from mlgrad.curvature import _laplacian, _spectrum, _trace

    with jax.enable_x64(False):
        for module in (_spectrum, _trace, _laplacian):
            result = doctest.testmod(module)
            assert result.attempted > 0 and result.failed == 0, module.__name__
